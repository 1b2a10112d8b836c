// A screen drawn by the web client's renderer (client-examples/web), so
// the preview is what that client shows; and a live preview session that
// follows each saved draft.

import { useEffect, useRef, useState } from "react";
import { SESSION } from "../../client-examples/web/src/fragments";
import { initialValues, renderScreen, type Values } from "../../client-examples/web/src/render";
import type { FlowSession } from "../../client-examples/web/src/types";
import { CORE_KINDS } from "../../client-examples/web/src/types";
import { gql, type ApiError } from "./api";
import { asApiError, ErrorBox, useGql, useMay } from "./ui";

function ScreenView({ session, onAction }: { session: FlowSession; onAction: (action: string, values: Values) => void }) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = host.current;
    if (!el) return;
    el.replaceChildren();
    if (!session.screen) {
      const p = document.createElement("p");
      p.textContent = `Session ${session.status.toLowerCase()}.`;
      el.append(p);
      return;
    }
    const values = initialValues(session.screen, undefined);
    el.append(renderScreen(session.screen, { values, enabled: !session.screen.terminal, onAction: (a) => onAction(a, values) }));
  }, [session, onAction]);
  return <div className="device" ref={host} data-testid="preview-screen" />;
}

export interface PreviewOptions {
  node: string;
  platform: string;
  appVersion: string;
  locale: string;
  capabilities: string;
  mockScenario: string;
  flags: string;
  experiments: string;
}

const EMPTY: PreviewOptions = {
  node: "",
  platform: "web",
  appVersion: "",
  locale: "",
  capabilities: CORE_KINDS.join(","),
  mockScenario: "",
  flags: "",
  experiments: "",
};

function json(text: string, what: string): unknown {
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${what} is not JSON: write an object such as {"new_checkout": true}`);
  }
}

/**
 * Starts a preview of the open draft (else the live version). After each
 * save (`saved`, the saved version) it re-reads the session, which Baton
 * moved to the new draft; a preview that began on the live version is
 * restarted on the draft at the screen it showed.
 */
export function LivePreview({ flowId, nodes, saved }: { flowId: string; nodes: string[]; saved: number | null }) {
  const run = useGql();
  const allowed = useMay("PREVIEW");
  const [opts, setOpts] = useState<PreviewOptions>(EMPTY);
  const [session, setSession] = useState<FlowSession | null>(null);
  const [error, setError] = useState<ApiError | null>(null);

  useEffect(() => {
    if (!session?.token || saved === null) return;
    const token = session.token;
    gql<{ session: FlowSession | null }>({ token }, `query S($id: ID!) { session(id: $id) { ...S } } ${SESSION}`, { id: session.id })
      .then((r) => {
        if (r.session && r.session.flowVersion === saved) return setSession({ ...r.session, token });
        return start(saved, r.session?.screen?.id ?? session.screen?.id);
      })
      .catch((e: unknown) => setError(asApiError(e)));
    // Only a save re-reads; the session itself changes on every action.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [saved]);

  const start = async (version?: number, node?: string) => {
    setError(null);
    try {
      const input = {
        flowId,
        version,
        node: node ?? (opts.node || undefined),
        client: {
          platform: opts.platform || undefined,
          appVersion: opts.appVersion || undefined,
          locale: opts.locale || undefined,
          capabilities: opts.capabilities.split(",").map((s) => s.trim()).filter(Boolean),
        },
        mockScenario: opts.mockScenario || undefined,
        flags: json(opts.flags, "Flags"),
        experiments: json(opts.experiments, "Experiment arms"),
      };
      const r = await run<{ startPreview: FlowSession }>(
        `mutation P($input: StartPreviewInput!) { startPreview(input: $input) { ...S } } ${SESSION}`,
        { input },
      );
      setSession(r.startPreview);
    } catch (e) {
      setError(asApiError(e));
    }
  };

  const act = async (action: string, values: Values) => {
    if (!session?.token || !session.screen) return;
    setError(null);
    try {
      const r = await gql<{ submit: FlowSession }>(
        { token: session.token },
        `mutation S($input: SubmitInput!) { submit(input: $input) { ...S } } ${SESSION}`,
        { input: { sessionId: session.id, screenId: session.screen.id, action, values, idempotencyKey: crypto.randomUUID() } },
      );
      setSession({ ...r.submit, token: session.token });
    } catch (e) {
      setError(asApiError(e));
    }
  };

  const field = (name: keyof PreviewOptions, label: string, hint?: string) => (
    <label>
      {label}
      <input value={opts[name]} placeholder={hint} onChange={(e) => setOpts({ ...opts, [name]: e.target.value })} />
    </label>
  );

  return (
    <section className="preview" aria-label="Live preview">
      <h2>Live preview</h2>
      <details>
        <summary>As whom</summary>
        <div className="form-grid">
          <label>
            Start at
            <select value={opts.node} onChange={(e) => setOpts({ ...opts, node: e.target.value })}>
              <option value="">the start</option>
              {nodes.map((n) => <option key={n} value={n}>{n}</option>)}
            </select>
          </label>
          {field("platform", "Platform", "ios, android, web")}
          {field("appVersion", "App version", "2.3.0")}
          {field("locale", "Locale", "de-DE")}
          {field("capabilities", "Capabilities")}
          {field("mockScenario", "Mock scenario", "declined")}
          {field("flags", "Flag values (JSON)", '{"flag": true}')}
          {field("experiments", "Experiment arms (JSON)", '{"experiment": "variant"}')}
        </div>
      </details>
      <button type="button" onClick={() => start()} disabled={!allowed} data-testid="start-preview"
        title={allowed ? undefined : "Your key lacks PREVIEW"}>
        {session ? "Restart preview" : "Start preview"}
      </button>
      <ErrorBox error={error} />
      {session && (
        <>
          <p className="muted">Version {session.flowVersion} · {session.status.toLowerCase()}</p>
          <ScreenView session={session} onAction={act} />
        </>
      )}
    </section>
  );
}
