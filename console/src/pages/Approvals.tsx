// The reviewer's inbox: open approval tasks of the key's queues, claim,
// and decide with the task's fields.

import { useState } from "react";
import { ActionButton, ErrorBox, Loading, useGql, useQuery, when } from "../ui";

interface Field {
  id: string | null;
  kind: string;
  label?: string | null;
  required?: boolean | null;
  min?: number | null;
  max?: number | null;
  options?: { value: string; label: string }[] | null;
}

interface Task {
  id: string;
  sessionId: string;
  node: string;
  queue: string | null;
  title: string | null;
  state: string;
  claimedBy: string | null;
  outcomes: string[];
  fields: Field[];
  dueAt: string | null;
  createdAt: string;
}

const FIELDS = `id kind
  ... on TextInputComponent { label required }
  ... on NumberInputComponent { label required min max }
  ... on EmailInputComponent { label required }
  ... on SelectComponent { label required options { value label } }
  ... on CheckboxComponent { label required }
  ... on DateComponent { label required }`;

export function ApprovalsPage() {
  const q = useQuery<{ approvalTasks: { nodes: Task[] } }>(
    `{ approvalTasks(first: 100) { nodes { id sessionId node queue title state claimedBy outcomes dueAt createdAt fields { ${FIELDS} } } } }`,
  );
  return (
    <section>
      <h1>Approvals</h1>
      <ErrorBox error={q.error} />
      {q.loading && <Loading what="approval tasks" />}
      {q.data && q.data.approvalTasks.nodes.length === 0 && <p>No open tasks in your queues.</p>}
      {q.data?.approvalTasks.nodes.map((t) => <TaskCard key={t.id} task={t} onChanged={q.reload} />)}
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
        {task.fields.filter((f) => f.id).map((f) => (
          <label key={f.id}>
            {f.label ?? f.id}
            {f.required && " (required)"}
            {f.kind === "select" ? (
              <select value={String(values[f.id!] ?? "")} onChange={(e) => setValues({ ...values, [f.id!]: e.target.value })}>
                <option value="">choose</option>
                {f.options?.map((o) => <option key={o.value} value={o.value}>{o.label}</option>)}
              </select>
            ) : f.kind === "checkbox" ? (
              <input type="checkbox" checked={values[f.id!] === true} onChange={(e) => setValues({ ...values, [f.id!]: e.target.checked })} />
            ) : (
              <input
                type={f.kind === "number_input" ? "number" : f.kind === "date" ? "date" : "text"}
                min={f.min ?? undefined}
                max={f.max ?? undefined}
                data-testid={`field-${f.id}`}
                value={String(values[f.id!] ?? "")}
                onChange={(e) => setValues({ ...values, [f.id!]: f.kind === "number_input" && e.target.value !== "" ? Number(e.target.value) : e.target.value })}
              />
            )}
          </label>
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
