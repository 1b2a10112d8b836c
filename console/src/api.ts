// GraphQL over HTTP to the Baton that serves this page, with the API key
// the user signed in with. Every error keeps Baton's code and hint so a
// denied call says what was denied and what would allow it.

export class ApiError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

type Body<T> = {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string; hint?: string } }[];
};

export interface Auth {
  /** An API key, sent as X-API-Key. */
  key?: string;
  /** A session token (a preview), sent as a bearer token. */
  token?: string;
}

export async function gql<T>(auth: Auth, query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const headers: Record<string, string> = {
    "Content-Type": "application/json",
    Accept: "application/graphql-response+json, application/json",
  };
  if (auth.key) headers["X-API-Key"] = auth.key;
  if (auth.token) headers.Authorization = `Bearer ${auth.token}`;
  let res: Response;
  try {
    res = await fetch("/graphql", { method: "POST", headers, body: JSON.stringify({ query, variables }) });
  } catch (e) {
    throw new ApiError(`cannot reach Baton: ${String(e)}`, "NETWORK", "check that the server is running");
  }
  let body: Body<T>;
  try {
    body = (await res.json()) as Body<T>;
  } catch {
    throw new ApiError(`HTTP ${res.status} with a body that is not JSON`, "BAD_RESPONSE");
  }
  const e = body.errors?.[0];
  if (e) throw new ApiError(e.message, e.extensions?.code ?? "UNKNOWN", e.extensions?.hint);
  if (!body.data) throw new ApiError(`HTTP ${res.status} without data`, "BAD_RESPONSE");
  return body.data;
}

export interface KeyInfo {
  name: string;
  role: string;
  queues: string[];
  permissions: string[];
}

export const may = (k: KeyInfo, permission: string) =>
  k.permissions.includes(permission) ||
  (permission.startsWith("DECIDE_APPROVAL") && k.permissions.includes("DECIDE_APPROVAL(*)"));

export interface FlowSummary {
  id: string;
  title: string | null;
  liveVersion: number | null;
  rollout: { version: number; percent: number } | null;
  openDraft: number | null;
  pendingReviews: { version: number; requestedBy: string; rolloutPercent: number; message: string }[];
}

export interface FlowVersion {
  number: number;
  status: "DRAFT" | "PUBLISHED" | "RETIRED";
  author: string;
  createdAt: string;
  message: string;
  servingPercent: number;
  publishedBy: string | null;
  publishedAt: string | null;
  source: string;
}

export interface Issue {
  severity: "ERROR" | "WARNING";
  code: string;
  path: string;
  node: string | null;
  message: string;
  hint: string | null;
  line: number | null;
  column: number | null;
}

export const VERSION_FIELDS = `number status author createdAt message servingPercent publishedBy publishedAt source`;
export const SUMMARY_FIELDS = `id title liveVersion rollout { version percent } openDraft
  pendingReviews { version requestedBy rolloutPercent message }`;
