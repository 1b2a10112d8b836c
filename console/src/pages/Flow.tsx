// One flow: its graph with a form per node and a condition builder, the
// source editor, saving drafts with issues shown where they are, the live
// preview, the funnel overlay, publishing with diff and compatibility
// report, and the version history with rollback.

import { Background, Controls, Handle, MarkerType, Position, ReactFlow, ReactFlowProvider, useReactFlow, type Edge, type Node, type NodeProps } from "@xyflow/react";
import { useEffect, useMemo, useState } from "react";
import { isMap, isScalar, isSeq, parseDocument, type Document } from "yaml";
import { SUMMARY_FIELDS, VERSION_FIELDS, type FlowSummary, type FlowVersion, type Issue } from "../api";
import { SourceEditor } from "../editor";
import { flowGraph, layout, NODE_H, NODE_W, type FlowGraph, type GNode } from "../graph";
import { buildRule, ruleText, type Condition } from "../jsonlogic";
import { LivePreview } from "../preview";
import { NodeForm, type FormEdits } from "../schemaform";
import { ActionButton, ErrorBox, Loading, useGql, useMay, useQuery, when } from "../ui";
import { FunnelFilters, useFunnel, type FunnelNode } from "./Funnel";
import { PublishPanel } from "./Publish";

const TABS = [
  ["graph", "Graph"],
  ["source", "Source"],
  ["publish", "Publish"],
  ["history", "History"],
] as const;

export function FlowPage({ flowId, tab }: { flowId: string; tab: string }) {
  const flows = useQuery<{ flows: FlowSummary[] }>(`{ flows { ${SUMMARY_FIELDS} } }`);
  const versions = useQuery<{ flowVersions: FlowVersion[] }>(
    `query V($id: ID!) { flowVersions(flowId: $id) { ${VERSION_FIELDS} } }`,
    { id: flowId },
  );
  const summary = flows.data?.flows.find((f) => f.id === flowId) ?? null;
  const list = versions.data?.flowVersions ?? [];
  const newest = list[list.length - 1];
  const [text, setText] = useState<string | null>(null);
  const [issues, setIssues] = useState<Issue[]>([]);
  const [saved, setSaved] = useState<number | null>(null);
  const [selected, setSelected] = useState<string | null>(null);

  useEffect(() => {
    if (text === null && newest) setText(newest.source);
  }, [newest, text]);
  // Every view of the flow reads this one parse of the working text.
  const parsed = useMemo(() => parseGraph(text ?? ""), [text]);

  const reload = () => {
    flows.reload();
    versions.reload();
  };

  if (versions.error || flows.error) return <ErrorBox error={versions.error ?? flows.error} />;
  if (!versions.data || text === null) return <Loading what={`flow ${flowId}`} />;

  return (
    <section>
      <h1>
        {summary?.title ?? flowId} <code>{flowId}</code>
      </h1>
      <p className="muted" data-testid="flow-status">
        Live: {summary?.liveVersion ? `v${summary.liveVersion}` : "not published"}
        {summary?.rollout && ` · rollout v${summary.rollout.version} to ${summary.rollout.percent}%`}
        {summary?.openDraft && ` · open draft v${summary.openDraft}`}
      </p>
      <nav className="tabs" aria-label="Flow">
        {TABS.map(([id, label]) => (
          <a key={id} href={`#/flows/${encodeURIComponent(flowId)}/${id}`} aria-current={tab === id ? "page" : undefined}>
            {label}
          </a>
        ))}
      </nav>
      {(tab === "graph" || tab === "source") && (
        <div className="workbench">
          <div className="main-pane">
            {tab === "graph" ? (
              <ReactFlowProvider>
                <GraphView flowId={flowId} parsed={parsed} issues={issues} selected={selected} onSelect={setSelected} />
              </ReactFlowProvider>
            ) : (
              <SourceEditor value={text} onChange={setText} issues={issues} />
            )}
            <SaveBar flowId={flowId} text={text} issues={issues} onIssues={setIssues}
              onSaved={(v) => { reload(); setSaved(v); }} onShowNode={setSelected} />
          </div>
          <aside className="side-pane">
            {tab === "graph" && selected && parsed.graph && (
              <NodePanel text={text} graph={parsed.graph} nodeId={selected} issues={issues.filter((i) => i.node === selected)} onChange={setText} />
            )}
            <LivePreview flowId={flowId} nodes={parsed.graph?.nodes.map((n) => n.id) ?? []} saved={saved} />
          </aside>
        </div>
      )}
      {tab === "publish" && <PublishPanel flowId={flowId} summary={summary} versions={list} onChanged={reload} />}
      {tab === "history" && <History flowId={flowId} summary={summary} versions={list} onChanged={reload} />}
    </section>
  );
}

interface Parsed {
  graph: FlowGraph | null;
  /** Why the text has no graph. */
  error: string | null;
}

function parseGraph(text: string): Parsed {
  try {
    return { graph: flowGraph(text), error: null };
  } catch (e) {
    return { graph: null, error: String(e) };
  }
}

/** Validation issues with their code, hint and place; `onShowNode` makes the node a link. */
function IssueList({ issues, onShowNode, testid }: { issues: Issue[]; onShowNode?: (node: string) => void; testid: string }) {
  if (issues.length === 0) return null;
  return (
    <ul className="issues" data-testid={testid}>
      {issues.map((i, n) => (
        <li key={n} className={i.severity.toLowerCase()} data-code={i.code}>
          <strong>{i.code}</strong> {i.message}
          {i.node && onShowNode && (
            <> at <button type="button" className="link" onClick={() => onShowNode(i.node!)}>{i.node}</button></>
          )}
          {i.line && <> (line {i.line})</>} <code>{i.path}</code>
          {i.hint && <div className="hint">Hint: {i.hint}</div>}
        </li>
      ))}
    </ul>
  );
}

function SaveBar(props: {
  flowId: string;
  text: string;
  issues: Issue[];
  onIssues: (i: Issue[]) => void;
  onSaved: (version: number) => void;
  onShowNode: (node: string) => void;
}) {
  const run = useGql();
  const [message, setMessage] = useState("");
  const [result, setResult] = useState<string | null>(null);
  return (
    <div className="savebar">
      <label>
        Change note
        <input value={message} onChange={(e) => setMessage(e.target.value)} placeholder="What changed and why" />
      </label>
      <ActionButton
        permission="SAVE_DRAFTS"
        testid="save-draft"
        onRun={async () => {
          setResult(null);
          const r = await run<{ saveDraft: { ok: boolean; created: boolean; version: { number: number } | null; issues: Issue[] } }>(
            `mutation D($input: SaveDraftInput!) { saveDraft(input: $input) {
               ok created version { number } issues { severity code path node message hint line column } } }`,
            { input: { flowId: props.flowId, source: props.text, message: message || undefined } },
          );
          props.onIssues(r.saveDraft.issues);
          if (r.saveDraft.ok && r.saveDraft.version) {
            setResult(r.saveDraft.created ? `Saved as draft v${r.saveDraft.version.number}.` : `Unchanged: this is v${r.saveDraft.version.number}.`);
            props.onSaved(r.saveDraft.version.number);
          } else {
            setResult("Not saved: fix the issues below.");
          }
        }}
      >
        Save draft
      </ActionButton>
      {result && <p role="status" data-testid="save-result">{result}</p>}
      <IssueList issues={props.issues} onShowNode={props.onShowNode} testid="issues" />
    </div>
  );
}

const KIND_ICON: Record<string, string> = {
  screen: "▭", decision: "◇", end: "■", http: "⇄", transform: "ƒ", wait: "⏱", approval: "✔", event: "⚑", parallel: "⫴",
  llm: "✦", subflow: "⧉",
};

type FlowNodeData = { node: GNode; issues: number; funnel?: FunnelNode; match: boolean };

function FlowNodeView({ data, selected }: NodeProps<Node<FlowNodeData>>) {
  const { node, issues, funnel, match } = data;
  return (
    <div
      className={`fnode kind-${node.kind}${issues ? " has-issue" : ""}${selected ? " selected" : ""}${match ? " match" : ""}`}
      style={{ width: NODE_W, height: NODE_H }}
      data-testid={`node-${node.id}`}
      data-kind={node.kind}
    >
      <Handle type="target" position={Position.Top} />
      <div className="fnode-head">
        <span aria-hidden="true">{KIND_ICON[node.kind] ?? "?"}</span> <span className="kind">{node.kind}</span>
        {node.start && <span className="badge">start</span>}
        {issues > 0 && <span className="badge bad">{issues} issue{issues > 1 ? "s" : ""}</span>}
      </div>
      <div className="fnode-id">{node.id}</div>
      {node.title && <div className="fnode-title">{node.title}</div>}
      {funnel && (
        <div className="fnode-funnel" data-testid={`funnel-${node.id}`}>
          {funnel.entered} in · {funnel.dropped} dropped
          {funnel.medianMs !== null && ` · ${(funnel.medianMs / 1000).toFixed(1)} s`}
        </div>
      )}
      <Handle type="source" position={Position.Bottom} />
    </div>
  );
}

const NODE_TYPES = { flow: FlowNodeView };

function GraphView(props: { flowId: string; parsed: Parsed; issues: Issue[]; selected: string | null; onSelect: (id: string | null) => void }) {
  const { fitView } = useReactFlow();
  const [search, setSearch] = useState("");
  const [overlay, setOverlay] = useState(false);
  const funnel = useFunnel(props.flowId, overlay);
  const { parsed } = props;
  const positions = useMemo(() => (parsed.graph ? layout(parsed.graph) : new Map()), [parsed.graph]);
  const needle = search.trim().toLowerCase();
  const matches = useMemo(
    () => parsed.graph?.nodes.filter((n) => needle && (n.id.toLowerCase().includes(needle) || n.title?.toLowerCase().includes(needle))) ?? [],
    [parsed.graph, needle],
  );
  useEffect(() => {
    if (matches.length) void fitView({ nodes: matches.map((m) => ({ id: m.id })), duration: 300, maxZoom: 1.2 });
  }, [matches, fitView]);

  if (!parsed.graph) return <ErrorBox error={{ name: "", message: parsed.error ?? "", code: "SOURCE_UNREADABLE", hint: "fix the YAML in the Source tab" }} />;
  const byNode = new Map<string, number>();
  for (const i of props.issues) if (i.node) byNode.set(i.node, (byNode.get(i.node) ?? 0) + 1);
  const funnelNodes = new Map((funnel.nodes ?? []).map((n) => [n.node, n]));
  const nodes: Node<FlowNodeData>[] = parsed.graph.nodes.map((n) => ({
    id: n.id,
    type: "flow",
    position: positions.get(n.id) ?? { x: 0, y: 0 },
    selected: n.id === props.selected,
    ariaLabel: `${n.kind} ${n.id}${n.title ? `: ${n.title}` : ""}`,
    data: { node: n, issues: byNode.get(n.id) ?? 0, funnel: overlay ? funnelNodes.get(n.id) : undefined, match: matches.some((m) => m.id === n.id) },
  }));
  const known = new Set(parsed.graph.nodes.map((n) => n.id));
  const edges: Edge[] = parsed.graph.edges
    .filter((e) => known.has(e.to))
    .map((e) => ({
      id: e.id,
      source: e.from,
      target: e.to,
      // Long conditions would cover each other; the node panel shows them whole.
      label: e.label.length > 48 ? `${e.label.slice(0, 47)}…` : e.label || undefined,
      className: `edge-${e.kind}`,
      markerEnd: { type: MarkerType.ArrowClosed },
      labelBgPadding: [4, 2] as [number, number],
    }));
  return (
    <div className="graph-wrap">
      <div className="graph-tools">
        <label>
          Find a node
          <input type="search" value={search} onChange={(e) => setSearch(e.target.value)} data-testid="node-search"
            onKeyDown={(e) => { if (e.key === "Enter" && matches[0]) props.onSelect(matches[0].id); }} />
        </label>
        <label>
          Node
          <select value={props.selected ?? ""} onChange={(e) => props.onSelect(e.target.value || null)} data-testid="node-select">
            <option value="">none</option>
            {parsed.graph.nodes.map((n) => <option key={n.id} value={n.id}>{n.id}</option>)}
          </select>
        </label>
        <label className="inline">
          <input type="checkbox" checked={overlay} onChange={(e) => setOverlay(e.target.checked)} data-testid="funnel-toggle" /> Funnel overlay
        </label>
      </div>
      {overlay && <FunnelFilters state={funnel} />}
      <div className="graph" data-testid="graph">
        <ReactFlow
          nodes={nodes}
          edges={edges}
          nodeTypes={NODE_TYPES}
          onNodeClick={(_, n) => props.onSelect(n.id)}
          onPaneClick={() => props.onSelect(null)}
          nodesDraggable={false}
          nodesConnectable={false}
          fitView
          minZoom={0.1}
          proOptions={{ hideAttribution: true }}
        >
          <Background />
          <Controls showInteractive={false} />
        </ReactFlow>
      </div>
    </div>
  );
}

/** The index of node `id` in the document's `nodes`, or -1. */
function nodeIndex(doc: Document, id: string): number {
  const nodes = doc.get("nodes");
  if (!isSeq(nodes)) return -1;
  return nodes.items.findIndex((n) => isMap(n) && n.get("id") === id);
}

function NodePanel({ text, graph, nodeId, issues, onChange }: {
  text: string;
  graph: FlowGraph;
  nodeId: string;
  issues: Issue[];
  onChange: (t: string) => void;
}) {
  const mayEdit = useMay("SAVE_DRAFTS");
  const node = graph.nodes.find((n) => n.id === nodeId);
  if (!node) return null;
  const edit = (fn: (doc: Document, index: number) => void) => {
    const doc = parseDocument(text);
    const index = nodeIndex(doc, nodeId);
    if (index < 0) return;
    fn(doc, index);
    onChange(doc.toString({ lineWidth: 0 }));
  };
  const edits: FormEdits = {
    set: (path, value, flow) =>
      edit((doc, i) => {
        const at = ["nodes", i, ...path];
        if (value === undefined) return void doc.deleteIn(at);
        // `{}` and `[]` read back as flow collections; what goes into them is written as blocks.
        for (let k = 1; k < at.length; k++) {
          const c = doc.getIn(at.slice(0, k), true);
          if ((isMap(c) || isSeq(c)) && c.flow && c.items.length === 0) c.flow = false;
        }
        // A scalar keeps its node, so a comment on it stays.
        const old = doc.getIn(at, true);
        if (isScalar(old) && (value === null || typeof value !== "object")) {
          // Quotes the text needed on the way (a trailing space while typing) are not kept.
          if (typeof old.value === "string" && (old.value === "" || old.value !== old.value.trim())) old.type = undefined;
          old.value = value;
        }
        else doc.setIn(at, doc.createNode(value, { flow }));
      }),
    move: (path, from, to) =>
      edit((doc, i) => {
        const seq = doc.getIn(["nodes", i, ...path], true);
        if (!isSeq(seq) || to < 0 || to >= seq.items.length) return;
        const [item] = seq.items.splice(from, 1);
        seq.items.splice(to, 0, item);
      }),
    renameKey: (path, from, to) =>
      edit((doc, i) => {
        const map = doc.getIn(["nodes", i, ...path], true);
        if (!isMap(map)) return;
        const pair = map.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === from);
        if (pair) pair.key = doc.createNode(to);
      }),
  };
  const out = graph.edges.filter((e) => e.from === nodeId);
  return (
    <section className="node-panel" aria-label={`Node ${nodeId}`} data-testid="node-panel">
      <h2>
        {node.kind} <code>{nodeId}</code>
      </h2>
      <IssueList issues={issues} testid="node-issues" />
      <h3>Settings</h3>
      <NodeForm key={`form-${nodeId}`} node={node.raw} base={`$.nodes[${node.index}]`} issues={issues} edits={edits}
        nodeIds={graph.nodes.map((n) => n.id)} readOnly={!mayEdit} />
      <h3>Leaves by</h3>
      <ul data-testid="node-edges">
        {out.map((e) => (
          <li key={e.id}>
            {e.label || "always"} → <code>{e.to}</code>
          </li>
        ))}
        {out.length === 0 && <li className="muted">nothing (an end)</li>}
      </ul>
      {node.kind !== "end" && mayEdit && <ConditionBuilder key={`edge-${nodeId}`} node={node} graph={graph} edit={edit} />}
    </section>
  );
}

const OPS: Condition["op"][] = ["==", "!=", "<", "<=", ">", ">=", "in"];

/** Adds a guarded edge in front of a node's (or one of its actions') edges; the first match wins. */
function ConditionBuilder({ node, graph, edit }: {
  node: GNode;
  graph: FlowGraph;
  edit: (fn: (doc: Document, index: number) => void) => void;
}) {
  const { actions } = node;
  const [action, setAction] = useState("");
  const [to, setTo] = useState("");
  const [join, setJoin] = useState<"and" | "or">("and");
  const [conditions, setConditions] = useState<Condition[]>([{ path: "", op: "==", value: "" }]);
  const rule = buildRule(conditions, join);
  const onScreen = node.kind === "screen";
  const chosenAction = onScreen ? action || actions[0] || "" : "";
  const set = (n: number, c: Partial<Condition>) => setConditions(conditions.map((old, i) => (i === n ? { ...old, ...c } : old)));
  return (
    <fieldset className="builder" data-testid="condition-builder">
      <legend>Add an edge</legend>
      {onScreen && (
        <label>
          On action
          <select value={chosenAction} onChange={(e) => setAction(e.target.value)} data-testid="edge-action">
            {actions.map((a) => <option key={a} value={a}>{a}</option>)}
          </select>
        </label>
      )}
      <label>
        Go to
        <select value={to} onChange={(e) => setTo(e.target.value)} data-testid="edge-target">
          <option value="">choose a node</option>
          {graph.nodes.filter((n) => n.id !== node.id).map((n) => <option key={n.id} value={n.id}>{n.id}</option>)}
        </select>
      </label>
      <label>
        When
        <select value={join} onChange={(e) => setJoin(e.target.value as "and" | "or")}>
          <option value="and">all of these hold</option>
          <option value="or">any of these holds</option>
        </select>
      </label>
      {conditions.map((c, n) => (
        <div className="condition" key={n}>
          <input aria-label={`Condition ${n + 1} value path`} placeholder="input.amount.amount" value={c.path}
            onChange={(e) => set(n, { path: e.target.value })} data-testid={`cond-path-${n}`} />
          <select aria-label={`Condition ${n + 1} operator`} value={c.op} onChange={(e) => set(n, { op: e.target.value as Condition["op"] })}
            data-testid={`cond-op-${n}`}>
            {OPS.map((o) => <option key={o} value={o}>{o}</option>)}
          </select>
          <input aria-label={`Condition ${n + 1} compared to`} placeholder="10000" value={c.value}
            onChange={(e) => set(n, { value: e.target.value })} data-testid={`cond-value-${n}`} />
        </div>
      ))}
      <button type="button" onClick={() => setConditions([...conditions, { path: "", op: "==", value: "" }])}>Add a condition</button>
      <p data-testid="rule-text">Rule: {rule ? ruleText(rule) : "always"}</p>
      <button
        type="button"
        data-testid="add-edge"
        disabled={!to || (onScreen && !chosenAction)}
        onClick={() =>
          edit((doc, i) => {
            const at = onScreen ? ["nodes", i, "actions", actions.indexOf(chosenAction), "next"] : ["nodes", i, "next"];
            const current = doc.getIn(at);
            const plain = current && typeof current === "object" && "toJSON" in current ? (current as { toJSON(): unknown }).toJSON() : current;
            const existing = Array.isArray(plain) ? plain : plain ? [{ to: plain }] : [];
            const edge = rule ? { when: rule, to } : { to };
            doc.setIn(at, doc.createNode([edge, ...existing]));
          })
        }
      >
        Add edge
      </button>
    </fieldset>
  );
}

function History({ flowId, summary, versions, onChanged }: { flowId: string; summary: FlowSummary | null; versions: FlowVersion[]; onChanged: () => void }) {
  const run = useGql();
  const [message, setMessage] = useState("");
  const canPublish = useMay("PUBLISH_FLOWS");
  return (
    <section>
      <h2>Versions</h2>
      <label>
        Rollback note
        <input value={message} onChange={(e) => setMessage(e.target.value)} placeholder="Why roll back" disabled={!canPublish} />
      </label>
      <table data-testid="versions">
        <thead>
          <tr>
            <th scope="col">Version</th>
            <th scope="col">Status</th>
            <th scope="col">Serving</th>
            <th scope="col">Saved by</th>
            <th scope="col">Saved</th>
            <th scope="col">Message</th>
            <th scope="col">Published</th>
            <th scope="col"><span className="sr-only">Actions</span></th>
          </tr>
        </thead>
        <tbody>
          {[...versions].reverse().map((v) => (
            <tr key={v.number} data-version={v.number}>
              <td>v{v.number}</td>
              <td>{v.status.toLowerCase()}</td>
              <td>{v.servingPercent}%</td>
              <td>{v.author}</td>
              <td>{when(v.createdAt)}</td>
              <td>{v.message}</td>
              <td>{v.publishedBy ? `${v.publishedBy}, ${when(v.publishedAt)}` : "—"}</td>
              <td>
                {v.status !== "DRAFT" && (v.number !== summary?.liveVersion || summary.rollout) && (
                  <ActionButton
                    permission="PUBLISH_FLOWS"
                    testid={`rollback-${v.number}`}
                    onRun={async () => {
                      await run(`mutation R($input: RollbackFlowInput!) { rollbackFlow(input: $input) { id } }`, {
                        input: { flowId, toVersion: v.number, message: message || `roll back to v${v.number}` },
                      });
                      onChanged();
                    }}
                  >
                    Roll back to v{v.number}
                  </ActionButton>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
