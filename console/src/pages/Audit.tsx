// The audit log, newest first, paged, filtered by subject.

import { useState } from "react";
import { ErrorBox, Loading, useQuery, when } from "../ui";

interface Entry {
  id: string;
  at: string;
  actor: string;
  action: string;
  subject: string;
  version: number | null;
  message: string | null;
}

export function AuditPage() {
  const [subject, setSubject] = useState("");
  const [after, setAfter] = useState<string[]>([]);
  const q = useQuery<{ auditLog: { nodes: Entry[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } } }>(
    `query A($subject: String, $after: String) { auditLog(first: 50, subject: $subject, after: $after) {
       nodes { id at actor action subject version message } pageInfo { hasNextPage endCursor } } }`,
    { subject: subject || undefined, after: after[after.length - 1] },
  );
  const page = q.data?.auditLog;
  return (
    <section>
      <h1>Audit log</h1>
      <label>
        Subject
        <input value={subject} placeholder="flow:loan, or flow: for every flow" onChange={(e) => { setSubject(e.target.value); setAfter([]); }} />
      </label>
      <ErrorBox error={q.error} />
      {q.loading && <Loading what="the audit log" />}
      {page && (
        <>
          <table data-testid="audit">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Who</th>
                <th scope="col">Did</th>
                <th scope="col">To</th>
                <th scope="col">Note</th>
              </tr>
            </thead>
            <tbody>
              {page.nodes.map((e) => (
                <tr key={e.id}>
                  <td>{when(e.at)}</td>
                  <td>{e.actor}</td>
                  <td>{e.action}</td>
                  <td>{e.subject}{e.version !== null && ` v${e.version}`}</td>
                  <td>{e.message}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <div className="pager">
            <button type="button" disabled={after.length === 0} onClick={() => setAfter(after.slice(0, -1))}>Newer</button>
            <button type="button" disabled={!page.pageInfo.hasNextPage} onClick={() => page.pageInfo.endCursor && setAfter([...after, page.pageInfo.endCursor])}>Older</button>
          </div>
        </>
      )}
    </section>
  );
}
