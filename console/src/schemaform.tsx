// The node form: every setting of a node (screen components, inputs and
// their validation, actions, step settings, mocks) drawn from the flow JSON
// Schema that `baton schema` writes, so a new node or component kind gets
// its form from the schema without a change here. Edits go to the YAML
// document one path at a time, so comments and key order survive.

import { useEffect, useState } from "react";
import { parse, stringify } from "yaml";
import flowSchema from "../../schema/flow.schema.json";
import type { Issue } from "./api";
import { ruleText } from "./jsonlogic";

export interface Schema {
  type?: string | string[];
  $ref?: string;
  anyOf?: Schema[];
  oneOf?: Schema[];
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  additionalProperties?: boolean | Schema;
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  description?: string;
  minimum?: number;
  maximum?: number;
}

export type Path = (string | number)[];

/** What the form does to the document; `undefined` removes the value. */
export interface FormEdits {
  /** `flow`: write a new collection in flow style (`{ "==": [ … ] }`), as its author typed it. */
  set(path: Path, value: unknown, flow?: boolean): void;
  move(path: Path, from: number, to: number): void;
  renameKey(path: Path, from: string, to: string): void;
}

interface Ctx {
  edits: FormEdits;
  /** Issues at the path, or under it when `under`. */
  issues(path: Path, under?: boolean): Issue[];
  nodeIds: string[];
  readOnly: boolean;
}

const DEFS = (flowSchema as unknown as { $defs: Record<string, Schema> }).$defs;
/** Keys whose string value names a node, offered from the flow's node ids. */
const NODE_REFS = new Set(["to", "on_error", "on_timeout", "next"]);

function deref(s: Schema): Schema {
  let out = s;
  for (let n = 0; out.$ref && n < 16; n++) out = DEFS[out.$ref.split("/").pop()!] ?? {};
  return out;
}

type Shape =
  | { t: "string" | "integer" | "number" | "boolean"; nullable: boolean; s: Schema }
  | { t: "enum"; values: string[]; nullable: boolean; s: Schema }
  | { t: "object"; s: Schema; nullable: boolean }
  | { t: "map"; value: Schema; nullable: boolean; s: Schema }
  | { t: "list"; item: Schema; nullable: boolean; s: Schema }
  | { t: "union"; variants: Schema[]; nullable: boolean; s: Schema }
  | { t: "any"; s: Schema; nullable: boolean };

const isNull = (s: Schema) => deref(s).type === "null";

/** What kind of field a schema needs. */
export function shape(raw: Schema): Shape {
  const target = deref(raw);
  // A property that refers to a shared definition may give its own default and description.
  const s = raw === target ? target : { ...target, default: raw.default ?? target.default, description: raw.description ?? target.description };
  const alts = s.anyOf ?? s.oneOf;
  if (alts) {
    const nullable = alts.some(isNull);
    const variants = alts.filter((a) => !isNull(a)).map(deref);
    if (variants.every((v) => typeof v.const === "string")) {
      return { t: "enum", values: variants.map((v) => v.const as string), nullable, s };
    }
    if (variants.length === 1) return { ...shape(variants[0]), nullable, s: { ...variants[0], description: s.description ?? variants[0].description } } as Shape;
    return { t: "union", variants, nullable, s };
  }
  const types = Array.isArray(s.type) ? s.type : s.type ? [s.type] : [];
  const nullable = types.includes("null");
  const type = types.find((t) => t !== "null");
  if (s.enum) return { t: "enum", values: s.enum.map(String), nullable, s };
  switch (type) {
    case "string":
    case "integer":
    case "number":
    case "boolean":
      return { t: type, nullable, s };
    case "array":
      return { t: "list", item: s.items ?? {}, nullable, s };
    case "object":
      if (s.properties) return { t: "object", s, nullable };
      return { t: "map", value: typeof s.additionalProperties === "object" ? s.additionalProperties : {}, nullable, s };
    default:
      return { t: "any", s, nullable };
  }
}

/** The smallest value a schema accepts: a variant's `kind` and its required fields. */
export function emptyOf(raw: Schema): unknown {
  const sh = shape(raw);
  switch (sh.t) {
    case "string":
      return "";
    case "integer":
    case "number":
      return sh.s.minimum ?? 0;
    case "boolean":
      return false;
    case "enum":
      return sh.values[0];
    case "list":
      return [];
    case "map":
      return {};
    case "union":
      return emptyOf(sh.variants[0]);
    case "any":
      return null;
    case "object": {
      const out: Record<string, unknown> = {};
      for (const [k, p] of Object.entries(sh.s.properties ?? {})) {
        const d = deref(p);
        if (typeof d.const === "string") out[k] = d.const;
        else if (sh.s.required?.includes(k)) out[k] = emptyOf(p);
      }
      return out;
    }
  }
}

function typeOf(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v === "number" ? "number" : typeof v;
}

/** The variant of a union that a value is: by its `kind` when variants have one, else by type. */
export function variantOf(variants: Schema[], value: unknown): number {
  const t = typeOf(value);
  const i = variants.findIndex((v) => {
    const kind = deref(v.properties?.kind ?? {}).const;
    if (kind !== undefined) return t === "object" && (value as Record<string, unknown>).kind === kind;
    const sh = shape(v);
    if (sh.t === "list") return t === "array";
    if (sh.t === "object" || sh.t === "map") return t === "object";
    if (sh.t === "integer" || sh.t === "number") return t === "number";
    return sh.t === t;
  });
  return Math.max(i, 0);
}

/** How the forms of a shared definition are offered, where a generic name would puzzle. */
const VARIANT_NAMES: [Schema, string[]][] = [
  [DEFS.Text, ["one text", "per locale"]],
  [DEFS.Edges, ["one node", "guarded edges"]],
  [DEFS.Fallbacks, ["one fallback", "several fallbacks"]],
];

function variantLabel(v: Schema, i: number, union: Schema): string {
  const named = VARIANT_NAMES.find(([d]) => d === union)?.[1][i];
  if (named) return named;
  const kind = deref(v.properties?.kind ?? {}).const;
  if (typeof kind === "string") return kind;
  const sh = shape(v);
  if (sh.t === "list") return "a list";
  if (sh.t === "map") return "one per key";
  if (sh.t === "object") return "one";
  return `a ${sh.t}`;
}

/** `$.nodes[3].components[1].min` for a path under node 3, as the server writes issue paths. */
export function issuePath(base: string, path: Path): string {
  return base + path.map((p) => (typeof p === "number" ? `[${p}]` : `.${p}`)).join("");
}

const label = (path: Path) => {
  const last = path[path.length - 1];
  return typeof last === "number" ? `#${last + 1}` : String(last).replace(/_/g, " ");
};
const tid = (path: Path) => `f-${path.join(".")}`;
const firstLine = (s?: string) => s?.split("\n\n")[0].replace(/\n/g, " ");

/** The default a field falls back to when left empty: the schema's, else the one its description names. */
function fallbackOf(s: Schema): string | undefined {
  if (s.default !== undefined && s.default !== null && typeof s.default !== "object") return String(s.default);
  return s.description?.match(/Default:? `([^`]+)`/)?.[1];
}

function Issues({ issues }: { issues: Issue[] }) {
  if (!issues.length) return null;
  return (
    <ul className="field-issues">
      {issues.map((i, n) => (
        <li key={n} className={i.severity.toLowerCase()} data-code={i.code}>
          <strong>{i.code}</strong> {i.message}
          {i.hint && <> Hint: {i.hint}</>}
        </li>
      ))}
    </ul>
  );
}

/** The form for one value at `path` (relative to the node). */
/** `bare`: drawn inside a list item or a map entry, whose summary or key already names it. */
export function Field({ schema, value, path, ctx, required = false, bare = false }: {
  schema: Schema; value: unknown; path: Path; ctx: Ctx; required?: boolean; bare?: boolean;
}) {
  const sh = shape(schema);
  const help = firstLine(sh.s.description);
  const issues = ctx.issues(path);
  const name = label(path);
  const common = {
    "data-testid": tid(path),
    "aria-invalid": issues.length > 0 || undefined,
    title: help,
    disabled: ctx.readOnly,
  };
  const optional = !required;
  const clear = (v: unknown) => ctx.edits.set(path, v);

  switch (sh.t) {
    case "string": {
      const refs = NODE_REFS.has(String(path[path.length - 1])) || path[path.length - 2] === "outcomes";
      return (
        <label className="field">
          {name}
          <input {...common} value={typeof value === "string" ? value : ""} list={refs ? "node-ids" : undefined}
            placeholder={fallbackOf(sh.s)}
            onChange={(e) => clear(e.target.value === "" && optional ? undefined : e.target.value)} />
          <Issues issues={issues} />
        </label>
      );
    }
    case "integer":
    case "number":
      return <NumberField {...{ sh, value, path, ctx, name, common, optional, issues }} />;
    case "boolean": {
      const fallback = typeof sh.s.default === "boolean" ? sh.s.default : undefined;
      if (fallback === undefined && optional) {
        return (
          <label className="field">
            {name}
            <select {...common} value={value === true ? "yes" : value === false ? "no" : ""}
              onChange={(e) => clear(e.target.value === "" ? undefined : e.target.value === "yes")}>
              <option value="">default</option>
              <option value="yes">yes</option>
              <option value="no">no</option>
            </select>
            <Issues issues={issues} />
          </label>
        );
      }
      const on = typeof value === "boolean" ? value : fallback ?? false;
      return (
        <label className="field inline">
          <input type="checkbox" {...common} checked={on}
            onChange={(e) => clear(optional && e.target.checked === fallback ? undefined : e.target.checked)} /> {name}
          <Issues issues={issues} />
        </label>
      );
    }
    case "enum": {
      const fallback = fallbackOf(sh.s);
      return (
        <label className="field">
          {name}
          <select {...common} value={value === undefined || value === null ? "" : String(value)}
            onChange={(e) => clear(e.target.value === "" ? undefined : e.target.value)}>
            {optional && <option value="">{fallback ? `default (${fallback})` : "not set"}</option>}
            {sh.values.map((v) => <option key={v} value={v}>{v}</option>)}
          </select>
          <Issues issues={issues} />
        </label>
      );
    }
    case "any":
      return <YamlField {...{ value, path, ctx, name, common, optional, issues }} />;
    case "union": {
      if (value === undefined || value === null) return <Absent {...{ path, ctx, schema, name, help }} />;
      const at = variantOf(sh.variants, value);
      // A list item's kind is its summary; changing it is removing and adding.
      if (bare) return <Field schema={sh.variants[at]} value={value} path={path} ctx={ctx} required bare />;
      const definition = deref(schema.anyOf?.find((a) => !isNull(a)) ?? schema);
      return (
        <div className="field union" data-testid={`${tid(path)}-union`}>
          <Field schema={sh.variants[at]} value={value} path={path} ctx={ctx} required />
          <div className="union-tools">
            <label className="variant">
              <span className="sr-only">Form of {name}</span>
              <select value={at} disabled={ctx.readOnly} data-testid={`${tid(path)}-variant`} title={help}
                onChange={(e) => clear(emptyOf(sh.variants[Number(e.target.value)]))}>
                {sh.variants.map((v, i) => <option key={i} value={i}>{variantLabel(v, i, definition)}</option>)}
              </select>
            </label>
            {optional && !ctx.readOnly && <button type="button" onClick={() => clear(undefined)}>Remove {name}</button>}
          </div>
        </div>
      );
    }
    case "object": {
      if (value === undefined || value === null || typeof value !== "object") return <Absent {...{ path, ctx, schema, name, help }} />;
      if (bare) return <Properties schema={sh.s} value={value as Record<string, unknown>} path={path} ctx={ctx} />;
      return (
        <fieldset className="field object" data-testid={tid(path)}>
          <legend title={help}>{name}</legend>
          <Issues issues={issues} />
          <Properties schema={sh.s} value={value as Record<string, unknown>} path={path} ctx={ctx} />
          {optional && !ctx.readOnly && <button type="button" onClick={() => clear(undefined)}>Remove {name}</button>}
        </fieldset>
      );
    }
    case "map":
      return <MapField {...{ sh, value, path, ctx, name, help, issues, optional }} />;
    case "list":
      return <ListField {...{ sh, value, path, ctx, name, help, issues }} />;
  }
}

/** An optional object or union that is not set: one button adds it. */
function Absent({ path, ctx, schema, name, help }: { path: Path; ctx: Ctx; schema: Schema; name: string; help?: string }) {
  return (
    <div className="field absent">
      <span title={help}>{name}: not set</span>{" "}
      {!ctx.readOnly && (
        <button type="button" data-testid={`${tid(path)}-add`} onClick={() => ctx.edits.set(path, emptyOf(schema))}>
          Add {name}
        </button>
      )}
    </div>
  );
}

/** Every property of an object but its `kind`, in the schema's order. */
export function Properties({ schema, value, path, ctx, skip = [] }: { schema: Schema; value: Record<string, unknown>; path: Path; ctx: Ctx; skip?: string[] }) {
  return (
    <>
      {Object.entries(schema.properties ?? {})
        .filter(([k, p]) => !skip.includes(k) && deref(p).const === undefined)
        .map(([k, p]) => (
          <Field key={k} schema={p} value={value[k]} path={[...path, k]} ctx={ctx} required={schema.required?.includes(k)} />
        ))}
    </>
  );
}

function NumberField({ sh, value, path, ctx, name, common, optional, issues }: {
  sh: Shape & { s: Schema }; value: unknown; path: Path; ctx: Ctx; name: string; common: object; optional: boolean; issues: Issue[];
}) {
  const shown = typeof value === "number" ? String(value) : "";
  // The field keeps what is typed ("1." on the way to "1.5"); the document gets numbers only.
  const [text, setText] = useState(shown);
  useEffect(() => {
    if (Number(text) !== value || text === "") setText(shown);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shown]);
  const n = Number(text);
  const bad = text !== "" && (!Number.isFinite(n) || (sh.t === "integer" && !Number.isInteger(n)) || (sh.s.minimum !== undefined && n < sh.s.minimum) || (sh.s.maximum !== undefined && n > sh.s.maximum));
  return (
    <label className="field">
      {name}
      <input {...common} inputMode={sh.t === "integer" ? "numeric" : "decimal"} value={text}
        placeholder={fallbackOf(sh.s)} aria-invalid={bad || issues.length > 0 || undefined}
        onChange={(e) => {
          const t = e.target.value.trim();
          setText(e.target.value);
          const v = Number(t);
          if (t === "" && optional) ctx.edits.set(path, undefined);
          else if (t !== "" && Number.isFinite(v) && (sh.t !== "integer" || Number.isInteger(v))) ctx.edits.set(path, v);
        }} />
      {bad && <span className="field-hint bad">{sh.t === "integer" ? "a whole number" : "a number"}{sh.s.minimum !== undefined && ` from ${sh.s.minimum}`}{sh.s.maximum !== undefined && sh.s.maximum < 1e9 && ` to ${sh.s.maximum}`}</span>}
      <Issues issues={issues} />
    </label>
  );
}

/** A value of any shape (a request body, a rule, a bound) written as YAML; applied when it parses. */
function YamlField({ value, path, ctx, name, common, optional, issues }: {
  value: unknown; path: Path; ctx: Ctx; name: string; common: object; optional: boolean; issues: Issue[];
}) {
  const shown = value === undefined || value === null ? "" : stringify(value, { lineWidth: 0 }).trimEnd();
  const [text, setText] = useState(shown);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => setText(shown), [shown]);
  const key = String(path[path.length - 1]);
  const isRule = (key === "when" || key === "visible_when") && value !== undefined && value !== null;
  return (
    <label className="field">
      {name}
      <textarea {...common} rows={Math.min(8, Math.max(1, text.split("\n").length))} value={text} spellCheck={false}
        aria-invalid={error !== null || issues.length > 0 || undefined}
        onChange={(e) => setText(e.target.value)}
        onBlur={() => {
          if (text === shown) return;
          try {
            const v = text.trim() === "" ? undefined : parse(text);
            setError(null);
            ctx.edits.set(path, v === undefined && !optional ? null : v, /^\s*[[{]/.test(text));
          } catch (e) {
            setError(String((e as Error).message).split("\n")[0]);
          }
        }} />
      {error && <span className="field-hint bad">Not YAML: {error}</span>}
      {/^\s*\{\{/.test(text) && (
        <span className="field-hint" data-testid={`${tid(path)}-braces`}>
          YAML reads <code>{"{{ … }}"}</code> as a map: put a template in quotes.
        </span>
      )}
      {isRule && <span className="field-hint" data-testid={`${tid(path)}-text`}>Rule: {ruleText(value)}</span>}
      <Issues issues={issues} />
    </label>
  );
}

function MapField({ sh, value, path, ctx, name, help, issues, optional }: {
  sh: Shape & { t: "map" }; value: unknown; path: Path; ctx: Ctx; name: string; help?: string; issues: Issue[]; optional: boolean;
}) {
  const [adding, setAdding] = useState("");
  if (value === undefined || value === null) return <Absent {...{ path, ctx, schema: sh.s, name, help }} />;
  const entries = typeof value === "object" && !Array.isArray(value) ? Object.entries(value as Record<string, unknown>) : [];
  return (
    <fieldset className="field map" data-testid={tid(path)}>
      <legend title={help}>{name}</legend>
      <Issues issues={issues} />
      {entries.map(([k, v]) => (
        <div className="map-entry" key={k}>
          <KeyInput name={k} path={path} ctx={ctx} taken={entries.map(([e]) => e)} />
          <Field schema={sh.value} value={v} path={[...path, k]} ctx={ctx} required bare />
          {!ctx.readOnly && <button type="button" aria-label={`Remove ${k}`} onClick={() => ctx.edits.set([...path, k], undefined)}>Remove</button>}
        </div>
      ))}
      {!ctx.readOnly && (
        <div className="add-row">
          <input aria-label={`New key in ${name}`} value={adding} onChange={(e) => setAdding(e.target.value)} data-testid={`${tid(path)}-newkey`} />
          <button type="button" data-testid={`${tid(path)}-addkey`} disabled={!adding.trim() || entries.some(([k]) => k === adding.trim())}
            onClick={() => { ctx.edits.set([...path, adding.trim()], emptyOf(sh.value)); setAdding(""); }}>
            Add key
          </button>
        </div>
      )}
      {optional && !ctx.readOnly && <button type="button" onClick={() => ctx.edits.set(path, undefined)}>Remove {name}</button>}
    </fieldset>
  );
}

/** A map key, renamed when the field loses focus (renaming on each keystroke would reorder focus). */
function KeyInput({ name, path, ctx, taken }: { name: string; path: Path; ctx: Ctx; taken: string[] }) {
  const [text, setText] = useState(name);
  useEffect(() => setText(name), [name]);
  const clash = text !== name && taken.includes(text);
  return (
    <input className="map-key" aria-label={`Key ${name}`} value={text} disabled={ctx.readOnly} aria-invalid={clash || undefined}
      onChange={(e) => setText(e.target.value)}
      onBlur={() => { if (text.trim() && text !== name && !clash) ctx.edits.renameKey(path, name, text.trim()); else setText(name); }} />
  );
}

/** What a list item is called in its summary: its kind and its id, label or text. */
function itemTitle(v: unknown): string {
  if (typeof v === "string") return v;
  if (!v || typeof v !== "object") return "";
  const o = v as Record<string, unknown>;
  const text = (x: unknown) => (typeof x === "string" ? x : x && typeof x === "object" ? String(Object.values(x)[0] ?? "") : "");
  const name = o.id ?? o.to ?? o.value ?? text(o.label) ?? "";
  const what = [o.kind, name || text(o.text)].filter(Boolean).map(String).join(" ");
  return what.length > 40 ? `${what.slice(0, 39)}…` : what;
}

function ListField({ sh, value, path, ctx, name, help, issues }: {
  sh: Shape & { t: "list" }; value: unknown; path: Path; ctx: Ctx; name: string; help?: string; issues: Issue[];
}) {
  const items = Array.isArray(value) ? value : [];
  const item = shape(sh.item);
  const [kind, setKind] = useState(0);
  const [added, setAdded] = useState<number | null>(null);
  return (
    <fieldset className="field list" data-testid={tid(path)}>
      <legend title={help}>
        {name} <span className="muted">({items.length})</span>
      </legend>
      <Issues issues={issues} />
      {items.map((v, n) => {
        const at = [...path, n];
        const below = ctx.issues(at, true).length;
        return (
          <details key={n} className="list-item" open={below > 0 || n === added || undefined} data-testid={`${tid(at)}-item`}>
            <summary>
              {label(at)} {itemTitle(v)}
              {below > 0 && <span className="badge bad">{below} issue{below > 1 ? "s" : ""}</span>}
            </summary>
            <Field schema={sh.item} value={v} path={at} ctx={ctx} required bare />
            {!ctx.readOnly && (
              <div className="item-tools">
                <button type="button" disabled={n === 0} onClick={() => ctx.edits.move(path, n, n - 1)}>Move up</button>
                <button type="button" disabled={n === items.length - 1} onClick={() => ctx.edits.move(path, n, n + 1)}>Move down</button>
                <button type="button" data-testid={`${tid(at)}-remove`} onClick={() => ctx.edits.set(at, undefined)}>Remove</button>
              </div>
            )}
          </details>
        );
      })}
      {!ctx.readOnly && (
        <div className="add-row">
          {item.t === "union" && (
            <select aria-label={`Kind of new ${name} item`} value={kind} onChange={(e) => setKind(Number(e.target.value))} data-testid={`${tid(path)}-kind`}>
              {item.variants.map((v, i) => <option key={i} value={i}>{variantLabel(v, i, deref(sh.item))}</option>)}
            </select>
          )}
          <button type="button" data-testid={`${tid(path)}-additem`}
            onClick={() => {
              ctx.edits.set([...path, items.length], emptyOf(item.t === "union" ? item.variants[kind] : sh.item));
              setAdded(items.length);
            }}>
            Add to {name}
          </button>
        </div>
      )}
    </fieldset>
  );
}

/** The schema of one node kind. */
export function nodeSchema(kind: string): Schema | null {
  const variants = DEFS.NodeDef.oneOf ?? [];
  return variants.find((v) => deref(v.properties?.kind ?? {}).const === kind) ?? null;
}

/** The whole form of one node; `base` is its issue path, `$.nodes[3]`. */
export function NodeForm({ node, base, issues, edits, nodeIds, readOnly }: {
  node: Record<string, unknown>;
  base: string;
  issues: Issue[];
  edits: FormEdits;
  nodeIds: string[];
  readOnly: boolean;
}) {
  const schema = nodeSchema(String(node.kind));
  if (!schema) return <p className="muted">No form for kind {String(node.kind)}: edit it in the Source tab.</p>;
  const ctx: Ctx = {
    edits,
    nodeIds,
    readOnly,
    issues: (path, under) => {
      const p = issuePath(base, path);
      return issues.filter((i) => i.path === p || (under && (i.path.startsWith(`${p}.`) || i.path.startsWith(`${p}[`))));
    },
  };
  return (
    <div className="node-form" data-testid="node-form">
      <p className="muted">{firstLine(schema.description)}</p>
      <datalist id="node-ids">
        {nodeIds.map((id) => <option key={id} value={id} />)}
      </datalist>
      <Properties schema={schema} value={node} path={[]} ctx={ctx} skip={["id"]} />
    </div>
  );
}
