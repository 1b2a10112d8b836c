// The reviewer's inbox: open approval tasks of the key's queues, claim,
// and decide with the task's fields.

import { useState } from "react";
import { COMPONENT } from "../../../client-examples/web/src/fragments";
import type { Component } from "../../../client-examples/web/src/types";
import { ActionButton, ErrorBox, Loading, useGql, useQuery, when } from "../ui";

interface Task {
  id: string;
  sessionId: string;
  node: string;
  queue: string | null;
  title: string | null;
  state: string;
  claimedBy: string | null;
  outcomes: string[];
  fields: Component[];
  dueAt: string | null;
  createdAt: string;
}

/** Open tasks listed, oldest first; more are said to exist, not hidden. */
const MAX_LISTED = 100;

export function ApprovalsPage() {
  const q = useQuery<{ approvalTasks: { nodes: Task[]; pageInfo: { hasNextPage: boolean } } }>(
    `{ approvalTasks(first: ${MAX_LISTED}) { pageInfo { hasNextPage } nodes { id sessionId node queue title state claimedBy outcomes dueAt createdAt fields { ...C } } } } ${COMPONENT}`,
  );
  return (
    <section>
      <h1>Approvals</h1>
      <ErrorBox error={q.error} />
      {q.loading && <Loading what="approval tasks" />}
      {q.data && q.data.approvalTasks.nodes.length === 0 && <p>No open tasks in your queues.</p>}
      {q.data?.approvalTasks.nodes.map((t) => <TaskCard key={t.id} task={t} onChanged={q.reload} />)}
      {q.data?.approvalTasks.pageInfo.hasNextPage && (
        <p className="muted">Showing the oldest {MAX_LISTED} open tasks; decide these to see the rest.</p>
      )}
    </section>
  );
}

function TaskCard({ task, onChanged }: { task: Task; onChanged: () => void }) {
  const run = useGql();
  const [values, setValues] = useState<Record<string, unknown>>({});
  const [comment, setComment] = useState("");
  const overdue = task.dueAt !== null && new Date(task.dueAt).getTime() < Date.now();
  return (
    <article className="card" data-testid={`task-${task.id}`} aria-label={task.title ?? task.node}>
      <h2>{task.title ?? task.node}</h2>
      <p className="muted">
        Queue {task.queue ?? "—"} · {task.state.toLowerCase()}
        {task.claimedBy && ` by ${task.claimedBy}`} · opened {when(task.createdAt)} ·{" "}
        <span className={overdue ? "bad" : undefined}>due {when(task.dueAt)}</span> · session{" "}
        <a href={`#/support?session=${encodeURIComponent(task.sessionId)}`}>{task.sessionId}</a>
      </p>
      {!task.claimedBy && (
        <ActionButton permission={`DECIDE_APPROVAL(${task.queue ?? ""})`} testid="claim" onRun={async () => {
          await run(`mutation C($id: ID!) { claimApprovalTask(taskId: $id) { id } }`, { id: task.id });
          onChanged();
        }}>
          Claim
        </ActionButton>
      )}
      <div className="form-grid">
        {task.fields.map((f) => (
          <FieldInput key={f.id ?? f.kind} field={f} value={f.id ? values[f.id] : undefined}
            onChange={(v) => f.id && setValues({ ...values, [f.id]: v })} />
        ))}
        <label>
          Comment
          <input value={comment} onChange={(e) => setComment(e.target.value)} />
        </label>
      </div>
      <div className="buttons">
        {task.outcomes.map((o) => (
          <ActionButton key={o} permission={`DECIDE_APPROVAL(${task.queue ?? ""})`} testid={`decide-${o}`} onRun={async () => {
            await run(`mutation D($input: CompleteApprovalInput!) { completeApprovalTask(input: $input) { taskId } }`, {
              input: { taskId: task.id, outcome: o, values, comment: comment || undefined },
            });
            onChanged();
          }}>
            {o}
          </ActionButton>
        ))}
      </div>
    </article>
  );
}

/** One input of a task's `fields`; other component kinds show nothing. */
function FieldInput({ field: f, value, onChange }: { field: Component; value: unknown; onChange: (v: unknown) => void }) {
  if (!f.id) return null;
  let input;
  switch (f.kind) {
    case "select":
      input = (
        <select value={String(value ?? "")} onChange={(e) => onChange(e.target.value)}>
          <option value="">choose</option>
          {f.options.map((o) => <option key={o.value} value={o.value}>{o.label}</option>)}
        </select>
      );
      break;
    case "checkbox":
      input = <input type="checkbox" checked={value === true} onChange={(e) => onChange(e.target.checked)} />;
      break;
    case "number_input":
      input = (
        <input type="number" min={f.min ?? undefined} max={f.max ?? undefined} data-testid={`field-${f.id}`}
          value={String(value ?? "")} onChange={(e) => onChange(e.target.value === "" ? "" : Number(e.target.value))} />
      );
      break;
    case "date":
    case "text_input":
    case "email_input":
      input = (
        <input type={f.kind === "date" ? "date" : "text"} data-testid={`field-${f.id}`}
          value={String(value ?? "")} onChange={(e) => onChange(e.target.value)} />
      );
      break;
    default:
      return null;
  }
  return (
    <label>
      {f.label}
      {f.required && " (required)"}
      {input}
    </label>
  );
}
