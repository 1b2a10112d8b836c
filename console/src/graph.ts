// A flow's source as a graph: its nodes with their kinds and every edge
// with a readable label, laid out top to bottom by dagre.

import dagre from "@dagrejs/dagre";
import { parse } from "yaml";
import { ruleText } from "./jsonlogic";

export interface GNode {
  id: string;
  kind: string;
  title?: string;
  start: boolean;
  /** A screen's action ids, in order. */
  actions: string[];
  /** Its place in the source's `nodes`, as issue paths count it. */
  index: number;
  /** The node as written, for its form. */
  raw: Record<string, unknown>;
}

export interface GEdge {
  id: string;
  from: string;
  to: string;
  label: string;
  /** Where the edge sits in the source, for the editor. */
  kind: "action" | "next" | "error" | "timeout" | "outcome";
}

export interface FlowGraph {
  id?: string;
  title?: string;
  nodes: GNode[];
  edges: GEdge[];
}

type Raw = Record<string, unknown>;

function edgesOf(from: string, next: unknown, prefix: string, out: GEdge[], kind: GEdge["kind"]) {
  if (typeof next === "string") {
    out.push({ id: `${from}:${prefix}:${out.length}`, from, to: next, label: prefix, kind });
  } else if (Array.isArray(next)) {
    for (const e of next as Raw[]) {
      if (!e || typeof e.to !== "string") continue;
      const cond = e.when === undefined ? (next.length > 1 ? "otherwise" : "") : ruleText(e.when);
      const label = [prefix, cond].filter(Boolean).join(": ");
      out.push({ id: `${from}:${prefix}:${out.length}`, from, to: e.to, label, kind });
    }
  }
}

/** The graph of a flow's text; throws on text that is not YAML or has no nodes. */
export function flowGraph(source: string): FlowGraph {
  const doc = parse(source) as Raw | null;
  if (!doc || typeof doc !== "object" || !Array.isArray(doc.nodes)) {
    throw new Error("the source has no `nodes` list");
  }
  const nodes: GNode[] = [];
  const edges: GEdge[] = [];
  for (const [index, n] of (doc.nodes as Raw[]).entries()) {
    if (!n || typeof n.id !== "string") continue;
    const title = typeof n.title === "string" ? n.title : undefined;
    const actions = Array.isArray(n.actions) ? (n.actions as Raw[]) : [];
    nodes.push({
      id: n.id,
      kind: String(n.kind ?? "?"),
      title,
      start: n.id === doc.start,
      actions: actions.map((a) => String(a?.id ?? "action")),
      index,
      raw: n,
    });
    for (const a of actions) edgesOf(n.id, a?.next, String(a?.id ?? "action"), edges, "action");
    edgesOf(n.id, n.next, "", edges, "next");
    if (typeof n.on_error === "string") edgesOf(n.id, n.on_error, "on error", edges, "error");
    if (typeof n.on_timeout === "string") edgesOf(n.id, n.on_timeout, "on timeout", edges, "timeout");
    if (typeof n.on_abandoned === "string") edgesOf(n.id, n.on_abandoned, "on abandoned", edges, "outcome");
    if (typeof n.review === "string") edgesOf(n.id, n.review, "review", edges, "outcome");
    if (n.outcomes && typeof n.outcomes === "object") {
      for (const [outcome, to] of Object.entries(n.outcomes as Raw)) edgesOf(n.id, to, outcome, edges, "outcome");
    }
  }
  return { id: typeof doc.id === "string" ? doc.id : undefined, title: doc.title as string | undefined, nodes, edges };
}

export const NODE_W = 190;
export const NODE_H = 64;

/** Top-left positions by node id. */
export function layout(g: FlowGraph): Map<string, { x: number; y: number }> {
  const d = new dagre.graphlib.Graph({ multigraph: true });
  d.setGraph({ rankdir: "TB", nodesep: 40, ranksep: 70, edgesep: 20 });
  d.setDefaultEdgeLabel(() => ({}));
  const known = new Set(g.nodes.map((n) => n.id));
  for (const n of g.nodes) d.setNode(n.id, { width: NODE_W, height: NODE_H });
  for (const e of g.edges) {
    if (known.has(e.to)) d.setEdge(e.from, e.to, { width: Math.min(e.label.length * 6, 180), height: 16 }, e.id);
  }
  dagre.layout(d);
  const out = new Map<string, { x: number; y: number }>();
  for (const n of g.nodes) {
    const p = d.node(n.id);
    out.set(n.id, { x: (p?.x ?? 0) - NODE_W / 2, y: (p?.y ?? 0) - NODE_H / 2 });
  }
  return out;
}
