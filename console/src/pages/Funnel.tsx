// The funnel overlay's data: per node entered, dropped and median time,
// for one version or all, one group (platform, app version, arm) or all,
// over a date range.

import { useState } from "react";
import type { ApiError } from "../api";
import { ErrorBox, useQuery } from "../ui";

export interface FunnelNode {
  node: string;
  entered: number;
  dropped: number;
  medianMs: number | null;
}

interface Funnel {
  sessions: number;
  nodes: FunnelNode[];
  groups: { key: string; sessions: number; nodes: FunnelNode[] }[];
}

export interface FunnelState {
  nodes: FunnelNode[] | null;
  sessions: number | null;
  groups: string[];
  error: ApiError | null;
  filters: Filters;
  setFilters: (f: Filters) => void;
}

interface Filters {
  version: string;
  groupBy: "" | "PLATFORM" | "APP_VERSION" | "EXPERIMENT_ARM";
  experiment: string;
  group: string;
  from: string;
  to: string;
}

const NODE = `node entered dropped medianMs`;

export function useFunnel(flowId: string, enabled: boolean): FunnelState {
  const [filters, setFilters] = useState<Filters>({ version: "", groupBy: "", experiment: "", group: "", from: "", to: "" });
  const vars: Record<string, unknown> = { flowId };
  if (filters.version) vars.version = Number(filters.version);
  if (filters.groupBy) vars.groupBy = filters.groupBy;
  if (filters.groupBy === "EXPERIMENT_ARM" && filters.experiment) vars.experiment = filters.experiment;
  if (filters.from) vars.from = new Date(filters.from).toISOString();
  if (filters.to) vars.to = new Date(filters.to).toISOString();
  const q = useQuery<{ funnel: Funnel }>(
    `query F($flowId: ID!, $version: Int, $groupBy: FunnelGroup, $experiment: ID, $from: DateTime, $to: DateTime) {
       funnel(flowId: $flowId, version: $version, groupBy: $groupBy, experiment: $experiment, from: $from, to: $to) {
         sessions nodes { ${NODE} } groups { key sessions nodes { ${NODE} } } } }`,
    vars,
    !enabled,
  );
  const f = q.data?.funnel;
  const group = f?.groups.find((g) => g.key === filters.group);
  return {
    nodes: group ? group.nodes : (f?.nodes ?? null),
    sessions: group ? group.sessions : (f?.sessions ?? null),
    groups: f?.groups.map((g) => g.key) ?? [],
    error: q.error,
    filters,
    setFilters,
  };
}

export function FunnelFilters({ state }: { state: FunnelState }) {
  const { filters: f, setFilters } = state;
  return (
    <div className="funnel-filters" data-testid="funnel-filters">
      <label>
        Version
        <input type="number" min={1} value={f.version} placeholder="all" onChange={(e) => setFilters({ ...f, version: e.target.value })} />
      </label>
      <label>
        Split by
        <select value={f.groupBy} onChange={(e) => setFilters({ ...f, groupBy: e.target.value as Filters["groupBy"], group: "" })}>
          <option value="">nothing</option>
          <option value="PLATFORM">platform</option>
          <option value="APP_VERSION">app version</option>
          <option value="EXPERIMENT_ARM">experiment arm</option>
        </select>
      </label>
      {f.groupBy === "EXPERIMENT_ARM" && (
        <label>
          Experiment
          <input value={f.experiment} onChange={(e) => setFilters({ ...f, experiment: e.target.value })} />
        </label>
      )}
      {f.groupBy && (
        <label>
          Show
          <select value={f.group} onChange={(e) => setFilters({ ...f, group: e.target.value })}>
            <option value="">all groups</option>
            {state.groups.map((g) => <option key={g} value={g}>{g}</option>)}
          </select>
        </label>
      )}
      <label>
        From
        <input type="date" value={f.from} onChange={(e) => setFilters({ ...f, from: e.target.value })} />
      </label>
      <label>
        To
        <input type="date" value={f.to} onChange={(e) => setFilters({ ...f, to: e.target.value })} />
      </label>
      <span data-testid="funnel-sessions">{state.sessions === null ? "" : `${state.sessions} sessions`}</span>
      <ErrorBox error={state.error} />
    </div>
  );
}
