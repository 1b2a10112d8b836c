// Every flow with its live version, rollout, open draft and waiting reviews.

import { SUMMARY_FIELDS, type FlowSummary } from "../api";
import { ErrorBox, Loading, useQuery } from "../ui";

export function FlowsPage() {
  const { data, error } = useQuery<{ flows: FlowSummary[] }>(`{ flows { ${SUMMARY_FIELDS} } }`);
  return (
    <section>
      <h1>Flows</h1>
      <ErrorBox error={error} />
      {!data && !error && <Loading what="flows" />}
      {data && (
        <table data-testid="flows">
          <thead>
            <tr>
              <th scope="col">Flow</th>
              <th scope="col">Live version</th>
              <th scope="col">Rollout</th>
              <th scope="col">Open draft</th>
              <th scope="col">Waiting for review</th>
            </tr>
          </thead>
          <tbody>
            {data.flows.map((f) => (
              <tr key={f.id} data-flow={f.id}>
                <td>
                  <a href={`#/flows/${encodeURIComponent(f.id)}`}>{f.title ?? f.id}</a> <code>{f.id}</code>
                </td>
                <td>{f.liveVersion ?? "not published"}</td>
                <td>{f.rollout ? `v${f.rollout.version} to ${f.rollout.percent}%` : "—"}</td>
                <td>{f.openDraft ? `v${f.openDraft}` : "—"}</td>
                <td>{f.pendingReviews.map((r) => `v${r.version} by ${r.requestedBy}`).join(", ") || "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
