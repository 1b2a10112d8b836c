// Experiments: definitions, arms, and results with intervals, chance to
// beat control and the sample-ratio check.

import { ErrorBox, Loading, useQuery } from "../ui";

interface Experiment {
  id: string;
  flag: string;
  control: string;
  running: boolean;
  arms: { variant: string; weight: number }[];
  goals: { flowId: string; node: string }[];
}

interface Results {
  arms: {
    variant: string;
    isControl: boolean;
    exposures: number;
    conversions: number;
    rate: number | null;
    interval: { low: number; high: number } | null;
    vsControl: { absolute: number; relative: number | null; pValue: number; chanceToBeatControl: number } | null;
  }[];
  sampleRatio: { pValue: number; mismatch: boolean; unexpectedArms: string[] } | null;
}

const pct = (x: number | null | undefined) => (x === null || x === undefined ? "—" : `${(x * 100).toFixed(1)}%`);

export function ExperimentsPage() {
  const q = useQuery<{ experiments: Experiment[] }>(
    `{ experiments { id flag control running arms { variant weight } goals { flowId node } } }`,
  );
  return (
    <section>
      <h1>Experiments</h1>
      <ErrorBox error={q.error} />
      {q.loading && <Loading what="experiments" />}
      {q.data?.experiments.length === 0 && <p>No experiments are defined (see <code>--experiments</code>).</p>}
      {q.data?.experiments.map((e) => <ExperimentCard key={e.id} e={e} />)}
    </section>
  );
}

function ExperimentCard({ e }: { e: Experiment }) {
  const q = useQuery<{ experimentResults: Results }>(
    `query R($id: ID!) { experimentResults(id: $id) { arms { variant isControl exposures conversions rate interval { low high }
       vsControl { absolute relative pValue chanceToBeatControl } } sampleRatio { pValue mismatch unexpectedArms } } }`,
    { id: e.id },
  );
  const r = q.data?.experimentResults;
  return (
    <article className="card" data-testid={`experiment-${e.id}`}>
      <h2>
        {e.id} <span className="muted">{e.running ? "running" : "stopped"}</span>
      </h2>
      <p>
        Flag <code>{e.flag}</code>, control <code>{e.control}</code>; goal{e.goals.length > 1 && "s"}{" "}
        {e.goals.map((g) => `${g.flowId}/${g.node}`).join(", ")}
      </p>
      <ErrorBox error={q.error} />
      {r?.sampleRatio?.mismatch && (
        <p className="bad" role="alert">
          Sample ratio mismatch (p = {r.sampleRatio.pValue.toPrecision(2)}): the split is broken; do not trust these numbers.
        </p>
      )}
      {q.loading && <Loading what="results" />}
      {r && (
        <table>
          <thead>
            <tr>
              <th scope="col">Arm</th>
              <th scope="col">Weight</th>
              <th scope="col">Exposed</th>
              <th scope="col">Converted</th>
              <th scope="col">Rate (95% interval)</th>
              <th scope="col">vs control</th>
              <th scope="col">Chance to beat control</th>
            </tr>
          </thead>
          <tbody>
            {r.arms.map((a) => (
              <tr key={a.variant}>
                <td>{a.variant}{a.isControl && " (control)"}</td>
                <td>{e.arms.find((w) => w.variant === a.variant)?.weight ?? "—"}</td>
                <td>{a.exposures}</td>
                <td>{a.conversions}</td>
                <td>{pct(a.rate)} {a.interval && `(${pct(a.interval.low)}–${pct(a.interval.high)})`}</td>
                <td>{a.vsControl ? `${a.vsControl.absolute >= 0 ? "+" : ""}${(a.vsControl.absolute * 100).toFixed(1)} pts (p = ${a.vsControl.pValue.toPrecision(2)})` : "—"}</td>
                <td>{a.vsControl ? pct(a.vsControl.chanceToBeatControl) : "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </article>
  );
}
