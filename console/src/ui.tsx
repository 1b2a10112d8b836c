// Small pieces every page uses: the signed-in key, loading data, and
// showing Baton's errors with their code and hint.

import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from "react";
import { ApiError, gql, may, type KeyInfo } from "./api";

export interface Session {
  key: string;
  info: KeyInfo;
}

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const s = useContext(SessionContext);
  if (!s) throw new Error("useSession outside a signed-in page");
  return s;
}

export function useMay(permission: string): boolean {
  return may(useSession().info, permission);
}

/** Runs a query as the signed-in key. */
export function useGql() {
  const { key } = useSession();
  return useCallback(
    <T,>(query: string, variables: Record<string, unknown> = {}) => gql<T>({ key }, query, variables),
    [key],
  );
}

export interface Loaded<T> {
  data: T | null;
  error: ApiError | null;
  loading: boolean;
  reload: () => void;
}

export function useQuery<T>(query: string, variables: Record<string, unknown> = {}, skip = false): Loaded<T> {
  const run = useGql();
  const [state, setState] = useState<{ data: T | null; error: ApiError | null; loading: boolean }>({
    data: null,
    error: null,
    loading: !skip,
  });
  const [tick, setTick] = useState(0);
  const vars = JSON.stringify(variables);
  useEffect(() => {
    if (skip) return;
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    run<T>(query, JSON.parse(vars) as Record<string, unknown>).then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error: unknown) => live && setState({ data: null, error: asApiError(error), loading: false }),
    );
    return () => {
      live = false;
    };
  }, [run, query, vars, tick, skip]);
  return { ...state, reload: () => setTick((t) => t + 1) };
}

export function asApiError(e: unknown): ApiError {
  return e instanceof ApiError ? e : new ApiError(String(e), "CONSOLE");
}

export function ErrorBox({ error }: { error: ApiError | null }) {
  if (!error) return null;
  return (
    <div className="error" role="alert" data-testid="error" data-code={error.code}>
      <strong>{error.code}</strong> {error.message}
      {error.hint && <div className="hint">Hint: {error.hint}</div>}
    </div>
  );
}

/** A button that runs an action, shows its error, and is disabled while it runs or without `permission`. */
export function ActionButton(props: {
  permission?: string;
  onRun: () => Promise<unknown>;
  children: ReactNode;
  testid?: string;
  className?: string;
  disabled?: boolean;
}) {
  const allowed = useMay(props.permission ?? "");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const denied = props.permission !== undefined && !allowed;
  return (
    <span className="action">
      <button
        type="button"
        className={props.className}
        data-testid={props.testid}
        disabled={busy || denied || props.disabled}
        title={denied ? `Your key lacks ${props.permission}` : undefined}
        onClick={async () => {
          setBusy(true);
          setError(null);
          try {
            await props.onRun();
          } catch (e) {
            setError(asApiError(e));
          } finally {
            setBusy(false);
          }
        }}
      >
        {props.children}
      </button>
      <ErrorBox error={error} />
    </span>
  );
}

export function when(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function Loading({ what }: { what: string }) {
  return <p className="muted" aria-live="polite">Loading {what}…</p>;
}
