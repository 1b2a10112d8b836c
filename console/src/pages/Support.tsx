// Support: find a user's sessions, read one session's timeline (screens,
// actions, steps with their attempts) and context, and retry, skip or
// cancel it. Step outputs are stored with secrets already redacted.

import { useState } from "react";
import { ActionButton, ErrorBox, Loading, useGql, useQuery, when } from "../ui";

interface Row {
  id: string;
  flowId: string;
  flowVersion: number;
  status: string;
  outcome: string | null;
  userId: string | null;
  createdAt: string | null;
  updatedAt: string | null;
}

/** Sessions listed per search, newest first; more are said to exist, not hidden. */
const MAX_LISTED = 50;

const ROW = `id flowId flowVersion status outcome userId createdAt updatedAt`;

export function SupportPage({ query }: { query: URLSearchParams }) {
  const [user, setUser] = useState(query.get("user") ?? "");
  const [asked, setAsked] = useState(query.get("user") ?? "");
  const open = query.get("session");
  const q = useQuery<{ sessions: { nodes: Row[]; pageInfo: { hasNextPage: boolean } } }>(
    `query S($filter: SessionFilter) { sessions(filter: $filter, first: ${MAX_LISTED}) { nodes { ${ROW} } pageInfo { hasNextPage } } }`,
    { filter: { userId: asked } },
    asked === "",
  );
  return (
    <section>
      <h1>Support</h1>
      <form
        className="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          setAsked(user.trim());
          window.location.hash = `#/support?user=${encodeURIComponent(user.trim())}`;
        }}
      >
        <label>
          User id
          <input value={user} onChange={(e) => setUser(e.target.value)} data-testid="user-search" />
        </label>
        <button type="submit">Find sessions</button>
      </form>
      <ErrorBox error={q.error} />
      {q.loading && <Loading what="sessions" />}
      {q.data && (
        q.data.sessions.nodes.length === 0 ? <p>No sessions for user {asked}.</p> : (
          <table data-testid="sessions">
            <thead>
              <tr>
                <th scope="col">Session</th>
                <th scope="col">Flow</th>
                <th scope="col">Status</th>
                <th scope="col">Started</th>
                <th scope="col">Last change</th>
              </tr>
            </thead>
            <tbody>
              {q.data.sessions.nodes.map((s) => (
                <tr key={s.id}>
                  <td><a href={`#/support?user=${encodeURIComponent(asked)}&session=${encodeURIComponent(s.id)}`}>{s.id}</a></td>
                  <td>{s.flowId} v{s.flowVersion}</td>
                  <td>{s.status.toLowerCase()}{s.outcome && ` (${s.outcome.toLowerCase()})`}</td>
                  <td>{when(s.createdAt)}</td>
                  <td>{when(s.updatedAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )
      )}
      {q.data?.sessions.pageInfo.hasNextPage && (
        <p className="muted">Showing the newest {MAX_LISTED} sessions of user {asked}; older ones are not listed.</p>
      )}
      {open && <SessionDetail id={open} onChanged={q.reload} />}
    </section>
  );
}

interface Detail {
  session: (Row & { context: unknown; screen: { id: string; title: string | null } | null; events: { nodes: { seq: number; kind: string; payload: unknown; at: string }[] } }) | null;
  sessionSteps: {
    id: string;
    node: string;
    kind: string;
    state: string;
    outcome: string | null;
    mock: string | null;
    attempts: { attempt: number; outcome: string; statusCode: number | null; error: string | null; durationMs: number; startedAt: string }[];
  }[];
}

function SessionDetail({ id, onChanged }: { id: string; onChanged: () => void }) {
  const run = useGql();
  const [skipTo, setSkipTo] = useState("");
  const q = useQuery<Detail>(
    `query D($id: ID!) {
       session(id: $id) { ${ROW} context screen { id title } events(first: 200) { nodes { seq kind payload at } } }
       sessionSteps(sessionId: $id) { id node kind state outcome mock attempts { attempt outcome statusCode error durationMs startedAt } } }`,
    { id },
  );
  const act = (mutation: string, vars: Record<string, unknown>) => async () => {
    await run(mutation, vars);
    q.reload();
    onChanged();
  };
  if (q.error) return <ErrorBox error={q.error} />;
  if (!q.data) return <Loading what="the session" />;
  const s = q.data.session;
  if (!s) return <p>No session {id}.</p>;
  // A failed session can still be retried or cancelled; these cannot.
  const finished = s.status === "COMPLETED" || s.status === "EXPIRED";
  return (
    <article className="card" data-testid="session-detail" aria-label={`Session ${id}`}>
      <h2>Session <code>{s.id}</code></h2>
      <p data-testid="session-status">
        {s.flowId} v{s.flowVersion} · user {s.userId ?? "—"} · <strong>{s.status.toLowerCase()}</strong>
        {s.screen && <> · on screen <code>{s.screen.id}</code></>}
      </p>
      <div className="buttons">
        <ActionButton permission="OPERATE_SESSIONS" testid="retry-step" disabled={s.status !== "FAILED"}
          onRun={act(`mutation R($id: ID!) { retryStep(sessionId: $id) { id } }`, { id })}>
          Retry failed step
        </ActionButton>
        <label>
          Skip to node
          <input value={skipTo} onChange={(e) => setSkipTo(e.target.value)} />
        </label>
        <ActionButton permission="OPERATE_SESSIONS" disabled={!skipTo}
          onRun={act(`mutation K($id: ID!, $to: ID!) { skipStep(sessionId: $id, to: $to) { id } }`, { id, to: skipTo })}>
          Skip step
        </ActionButton>
        <ActionButton permission="OPERATE_SESSIONS" testid="cancel-session" disabled={finished}
          onRun={act(`mutation C($id: ID!) { cancelSession(sessionId: $id) { id } }`, { id })}>
          Cancel session
        </ActionButton>
      </div>
      <h3>Steps</h3>
      {q.data.sessionSteps.length === 0 ? <p className="muted">No backend steps ran.</p> : (
        <table data-testid="steps">
          <thead>
            <tr>
              <th scope="col">Node</th>
              <th scope="col">Kind</th>
              <th scope="col">State</th>
              <th scope="col">Attempts</th>
            </tr>
          </thead>
          <tbody>
            {q.data.sessionSteps.map((st) => (
              <tr key={st.id}>
                <td>{st.node}</td>
                <td>{st.kind}{st.mock && ` (mock ${st.mock})`}</td>
                <td>{st.state.toLowerCase()}{st.outcome && `: ${st.outcome}`}</td>
                <td>
                  {st.attempts.map((a) => (
                    <div key={a.attempt}>
                      #{a.attempt} {a.outcome}{a.statusCode !== null && ` HTTP ${a.statusCode}`} in {a.durationMs} ms{a.error && ` — ${a.error}`}
                    </div>
                  ))}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h3>Timeline</h3>
      <ol className="timeline" data-testid="timeline">
        {s.events.nodes.map((e) => (
          <li key={e.seq}>
            <time>{when(e.at)}</time> <strong>{e.kind}</strong> <code>{summary(e.payload)}</code>
          </li>
        ))}
      </ol>
      <h3>Context</h3>
      <pre className="context" data-testid="context" tabIndex={0} aria-label="Session context">{JSON.stringify(s.context, null, 2)}</pre>
    </article>
  );
}

function summary(payload: unknown): string {
  const text = JSON.stringify(payload);
  return text.length > 160 ? `${text.slice(0, 157)}…` : text;
}
