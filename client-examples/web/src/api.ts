// Baton over GraphQL: queries and mutations with fetch (GraphQL over HTTP),
// `sessionUpdated` with graphql-ws (the graphql-transport-ws protocol).

import { createClient, type Client } from "graphql-ws/client";
import { SESSION } from "./fragments";
import type { FlowSession } from "./types";

export const START_FLOW = `mutation Start($input: StartFlowInput!) { startFlow(input: $input) { ...S } } ${SESSION}`;
export const SUBMIT = `mutation Submit($input: SubmitInput!) { submit(input: $input) { ...S } } ${SESSION}`;
export const BACK = `mutation Back($id: ID!) { back(sessionId: $id) { ...S } } ${SESSION}`;
export const SESSION_QUERY = `query Session($id: ID!) { session(id: $id) { ...S } } ${SESSION}`;
export const SESSION_UPDATED = `subscription Updated($id: ID!) { sessionUpdated(sessionId: $id) { ...S } } ${SESSION}`;

/** A GraphQL or transport error, with Baton's `extensions.code`. */
export class BatonError extends Error {
  constructor(
    message: string,
    readonly code: string,
    /** Worth sending again unchanged: the request may not have arrived. */
    readonly retryable = false,
  ) {
    super(message);
  }
}

type GraphQLResponse<T> = {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string; hint?: string } }[];
};

function firstError(body: GraphQLResponse<unknown>, status: number): BatonError {
  const e = body.errors?.[0];
  if (!e) return new BatonError(`HTTP ${status} without data`, "INTERNAL");
  const code = e.extensions?.code ?? "UNKNOWN";
  const hint = e.extensions?.hint ? ` (${e.extensions.hint})` : "";
  // SESSION_BUSY is Baton asking for the same request again.
  return new BatonError(`${e.message}${hint}`, code, code === "SESSION_BUSY");
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class BatonApi {
  private token: string | null = null;
  private ws: Client | null = null;

  constructor(readonly baseUrl: string) {}

  setToken(token: string): void {
    this.token = token;
    // A socket authenticates once, at connection_init: a new token needs a new socket.
    this.ws?.dispose();
    this.ws = null;
  }

  /**
   * One GraphQL operation over HTTP. Network failures, 5xx answers and
   * SESSION_BUSY are retried with the very same body, so a submit keeps its
   * idempotency key and Baton applies it at most once.
   */
  async request<T>(query: string, variables: Record<string, unknown>, attempts = 4): Promise<T> {
    const body = JSON.stringify({ query, variables });
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once<T>(body);
      } catch (e) {
        const err =
          e instanceof BatonError
            ? e
            : new BatonError(`cannot reach Baton at ${this.baseUrl}: ${String(e)}`, "NETWORK", true);
        if (!err.retryable || attempt >= attempts) throw err;
        await sleep(250 * 2 ** (attempt - 1));
      }
    }
  }

  private async once<T>(body: string): Promise<T> {
    const headers: Record<string, string> = {
      "Content-Type": "application/json",
      Accept: "application/graphql-response+json, application/json",
    };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const res = await fetch(`${this.baseUrl}/graphql`, {
      method: "POST",
      headers,
      body,
      signal: AbortSignal.timeout(15_000),
    });
    let json: GraphQLResponse<T>;
    try {
      json = (await res.json()) as GraphQLResponse<T>;
    } catch {
      throw new BatonError(`HTTP ${res.status} with a body that is not JSON`, "BAD_RESPONSE", res.status >= 500);
    }
    if (json.data && !json.errors?.length) return json.data;
    const err = firstError(json, res.status);
    if (res.status >= 500 && !err.retryable) {
      throw new BatonError(err.message, err.code, true);
    }
    throw err;
  }

  /**
   * Calls `onSession` with every `sessionUpdated` event until the returned
   * function is called or the subscription ends. The socket sends the token
   * in `connection_init`, as Baton expects it there.
   */
  subscribe(
    sessionId: string,
    onSession: (s: FlowSession) => void,
    onError: (e: BatonError) => void,
  ): () => void {
    if (!this.ws) {
      const token = this.token;
      this.ws = createClient({
        url: `${this.baseUrl.replace(/^http/, "ws")}/graphql`,
        connectionParams: token ? { Authorization: `Bearer ${token}` } : {},
        lazy: true,
        retryAttempts: 5,
      });
    }
    return this.ws.subscribe<{ sessionUpdated: FlowSession }>(
      { query: SESSION_UPDATED, variables: { id: sessionId } },
      {
        next: (msg) => {
          if (msg.data?.sessionUpdated) onSession(msg.data.sessionUpdated);
          else if (msg.errors?.length) onError(firstError(msg as GraphQLResponse<unknown>, 200));
        },
        error: (e) =>
          onError(
            Array.isArray(e)
              ? firstError({ errors: e }, 200)
              : new BatonError(`subscription failed: ${describe(e)}`, "NETWORK"),
          ),
        complete: () => {},
      },
    );
  }

  close(): void {
    this.ws?.dispose();
    this.ws = null;
  }
}

function describe(e: unknown): string {
  // A failed socket is reported as a CloseEvent or an Event, not an Error.
  if (e instanceof Error) return e.message;
  if (typeof CloseEvent !== "undefined" && e instanceof CloseEvent) return `socket closed (${e.code} ${e.reason})`;
  return String(e);
}

/** A fresh idempotency key for one click. */
export function newIdempotencyKey(): string {
  // randomUUID exists only in secure contexts; getRandomValues everywhere.
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
