// Publishing a version: its diff against the live one, the compatibility
// report per app cohort (blocked cohorts in red with the screen and the
// reason), the rollout share, and the current rollout's controls.

import { useState } from "react";
import type { FlowSummary, FlowVersion } from "../api";
import { ActionButton, ErrorBox, Loading, useGql, useQuery } from "../ui";

interface Cohort {
  platform: string | null;
  appVersion: string | null;
  capabilities: string[] | null;
  sessions: number;
  declared: boolean;
  blocking: boolean;
  unrenderable: { node: string; reason: string }[];
  degraded: { node: string; reason: string }[];
}

export function PublishPanel({ flowId, summary, versions, onChanged }: {
  flowId: string;
  summary: FlowSummary | null;
  versions: FlowVersion[];
  onChanged: () => void;
}) {
  const candidates = versions.filter((v) => v.number !== summary?.liveVersion).map((v) => v.number).reverse();
  const [chosen, setChosen] = useState<number | null>(null);
  const version = chosen ?? summary?.openDraft ?? candidates[0] ?? null;
  return (
    <section>
      <h2>Publish</h2>
      {summary?.rollout && <RolloutControl flowId={flowId} rollout={summary.rollout} onChanged={onChanged} />}
      {version === null ? (
        <p>Nothing to publish: every version is live. Save a draft first.</p>
      ) : (
        <>
          <label>
            Version
            <select value={version} onChange={(e) => setChosen(Number(e.target.value))} data-testid="publish-version">
              {candidates.map((n) => <option key={n} value={n}>v{n}</option>)}
            </select>
          </label>
          <Diff flowId={flowId} from={summary?.liveVersion ?? null} to={version} />
          <Report flowId={flowId} version={version} onChanged={onChanged} />
        </>
      )}
    </section>
  );
}

function RolloutControl({ flowId, rollout, onChanged }: { flowId: string; rollout: { version: number; percent: number }; onChanged: () => void }) {
  const run = useGql();
  const [percent, setPercent] = useState(rollout.percent);
  return (
    <fieldset data-testid="rollout">
      <legend>Rollout of v{rollout.version}: {rollout.percent}% of new sessions</legend>
      <label>
        Share of new sessions (%)
        <input type="number" min={0} max={100} value={percent} onChange={(e) => setPercent(Number(e.target.value))} />
      </label>
      <ActionButton permission="PUBLISH_FLOWS" testid="set-rollout" onRun={async () => {
        await run(`mutation S($input: SetRolloutInput!) { setRollout(input: $input) { id } }`, {
          input: { flowId, version: rollout.version, percent },
        });
        onChanged();
      }}>
        Change rollout
      </ActionButton>
    </fieldset>
  );
}

function Diff({ flowId, from, to }: { flowId: string; from: number | null; to: number }) {
  const q = useQuery<{ flowDiff: { text: string; changes: unknown[] } }>(
    `query D($id: ID!, $from: Int!, $to: Int!) { flowDiff(flowId: $id, from: $from, to: $to) { text changes { kind } } }`,
    { id: flowId, from: from ?? 0, to },
    from === null,
  );
  return (
    <section>
      <h3>Changes from the live version{from !== null && ` (v${from} → v${to})`}</h3>
      {from === null && <p>This flow has no live version yet: all of it is new.</p>}
      <ErrorBox error={q.error} />
      {q.loading && <Loading what="the diff" />}
      {q.data && <pre className="diff" data-testid="diff" tabIndex={0} aria-label="Diff">{q.data.flowDiff.text || "No changes."}</pre>}
    </section>
  );
}

function cohortName(c: Cohort): string {
  return `${c.platform ?? "any platform"} ${c.appVersion ?? ""}`.trim() + (c.capabilities ? ` [${c.capabilities.join(", ")}]` : "");
}

function Report({ flowId, version, onChanged }: { flowId: string; version: number; onChanged: () => void }) {
  const run = useGql();
  const q = useQuery<{ compatibilityReport: { blocking: boolean; windowDays: number; cohorts: Cohort[] } }>(
    `query C($id: ID!, $v: Int!) { compatibilityReport(flowId: $id, version: $v) { blocking windowDays
       cohorts { platform appVersion capabilities sessions declared blocking unrenderable { node reason } degraded { node reason } } } }`,
    { id: flowId, v: version },
  );
  const [percent, setPercent] = useState(100);
  const [message, setMessage] = useState("");
  const [override, setOverride] = useState("");
  const [done, setDone] = useState<string | null>(null);
  const report = q.data?.compatibilityReport;
  return (
    <section>
      <h3>Compatibility per app cohort</h3>
      <ErrorBox error={q.error} />
      {q.loading && <Loading what="the compatibility report" />}
      {report && (
        <>
          <p data-testid="report-summary" className={report.blocking ? "bad" : report.cohorts.length ? "good" : "muted"}>
            {report.blocking
              ? "Blocked: a cohort with sessions would meet a screen it cannot render."
              : report.cohorts.length === 0
                ? `No app has started this flow in the last ${report.windowDays} days: there is no cohort to check v${version} against.`
                : `Every cohort seen in the last ${report.windowDays} days can walk v${version}.`}
          </p>
          <table data-testid="cohorts">
            <thead>
              <tr>
                <th scope="col">Cohort</th>
                <th scope="col">Sessions</th>
                <th scope="col">Cannot render</th>
                <th scope="col">Gets the text fallback</th>
              </tr>
            </thead>
            <tbody>
              {report.cohorts.map((c, i) => (
                <tr key={i} className={c.blocking ? "blocked" : undefined} data-blocking={c.blocking}>
                  <td>{cohortName(c)}{c.declared && " (declared)"}</td>
                  <td>{c.sessions}</td>
                  <td>{c.unrenderable.map((p) => <div key={p.node}><code>{p.node}</code>: {p.reason}</div>)}</td>
                  <td>{c.degraded.map((p) => <div key={p.node}><code>{p.node}</code>: {p.reason}</div>)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      <fieldset>
        <legend>Publish v{version}</legend>
        <label>
          Share of new sessions (%)
          <input type="number" min={1} max={100} value={percent} onChange={(e) => setPercent(Number(e.target.value))} data-testid="publish-percent" />
        </label>
        <label>
          Message
          <input value={message} onChange={(e) => setMessage(e.target.value)} placeholder="What this release does" data-testid="publish-message" />
        </label>
        {report?.blocking && (
          <label>
            Publish anyway, because
            <input value={override} onChange={(e) => setOverride(e.target.value)} placeholder="Why the blocked cohorts may break" data-testid="publish-override" />
          </label>
        )}
        <ActionButton
          permission="PUBLISH_FLOWS"
          testid="publish"
          onRun={async () => {
            setDone(null);
            const r = await run<{ publishFlow: { number: number; status: string; pendingReview: { requestedBy: string } | null } }>(
              `mutation P($input: PublishFlowInput!) { publishFlow(input: $input) { number status pendingReview { requestedBy } } }`,
              { input: { flowId, version, message: message || `publish v${version}`, rolloutPercent: percent, override: override || undefined } },
            );
            setDone(
              r.publishFlow.pendingReview
                ? `Waiting for a second publisher to approve v${version}.`
                : `v${version} now serves ${percent}% of new sessions.`,
            );
            onChanged();
          }}
        >
          Publish
        </ActionButton>
        {done && <p role="status" data-testid="publish-result">{done}</p>}
      </fieldset>
    </section>
  );
}
