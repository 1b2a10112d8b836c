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

interface CohortInput {
  platform?: string;
  appVersion?: string;
  capabilities?: string[];
}

function Report({ flowId, version, onChanged }: { flowId: string; version: number; onChanged: () => void }) {
  const run = useGql();
  const [declared, setDeclared] = useState<CohortInput[]>([]);
  const q = useQuery<{ compatibilityReport: { blocking: boolean; windowDays: number; cohorts: Cohort[] } }>(
    `query C($id: ID!, $v: Int!, $cohorts: [CohortInput!]) { compatibilityReport(flowId: $id, version: $v, cohorts: $cohorts) { blocking windowDays
       cohorts { platform appVersion capabilities sessions declared blocking unrenderable { node reason } degraded { node reason } } } }`,
    { id: flowId, v: version, cohorts: declared.length ? declared : null },
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
          <p data-testid="report-summary" className={report.blocking ? "bad" : report.cohorts.some((c) => !c.declared) ? "good" : "muted"}>
            {report.blocking
              ? "Blocked: a cohort with sessions would meet a screen it cannot render."
              : !report.cohorts.some((c) => !c.declared)
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
                <tr key={i} className={c.blocking ? "blocked" : undefined} data-blocking={c.blocking}
                  data-declared={c.declared}>
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
      <DeclareCohort onAdd={(c) => setDeclared([...declared, c])} onClear={declared.length ? () => setDeclared([]) : undefined} />
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

/** A cohort no session has shown yet (an app about to ship, an old version still out there), checked on request. */
function DeclareCohort({ onAdd, onClear }: { onAdd: (c: CohortInput) => void; onClear?: () => void }) {
  const [platform, setPlatform] = useState("");
  const [appVersion, setAppVersion] = useState("");
  const [capabilities, setCapabilities] = useState("");
  const caps = capabilities.split(/[\s,]+/).filter(Boolean);
  return (
    <fieldset data-testid="declare-cohort">
      <legend>Check another cohort</legend>
      <label>
        Platform
        <input value={platform} onChange={(e) => setPlatform(e.target.value)} placeholder="ios" data-testid="cohort-platform" />
      </label>
      <label>
        App version
        <input value={appVersion} onChange={(e) => setAppVersion(e.target.value)} placeholder="4.2.0" data-testid="cohort-version" />
      </label>
      <label>
        Capabilities
        <input value={capabilities} onChange={(e) => setCapabilities(e.target.value)} placeholder="every core kind" data-testid="cohort-capabilities"
          title="Component kinds the app renders, separated by commas; empty means every core kind and no custom one" />
      </label>
      <button type="button" data-testid="cohort-add" disabled={!platform && !appVersion && caps.length === 0}
        onClick={() => onAdd({ platform: platform || undefined, appVersion: appVersion || undefined, capabilities: caps.length ? caps : undefined })}>
        Check this cohort
      </button>
      {onClear && <button type="button" onClick={onClear}>Forget declared cohorts</button>}
    </fieldset>
  );
}
