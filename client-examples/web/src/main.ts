// The app: starts a session, shows its screen, submits actions, and while
// the session is WAITING shows the pending screen until `sessionUpdated`
// (or, as a fallback, polling `session`) brings the next one.

import { BACK, BatonApi, BatonError, newIdempotencyKey, SESSION_QUERY, START_FLOW, SUBMIT } from "./api";
import { initialValues, inputIds, renderScreen, type Values } from "./render";
import { CORE_KINDS, type FlowSession } from "./types";

declare const __BATON_URL__: string;

interface Config {
  batonUrl: string;
  flowId: string | null;
  userId: string;
  attributes: Record<string, unknown> | null;
  locale: string;
  appVersion: string | null;
  scenario: string | null;
  pollMs: number;
  /** A session to open instead of starting one (a preview link). */
  session: string | null;
  token: string | null;
}

function readConfig(search: string): Config {
  const q = new URLSearchParams(search);
  let attributes: Record<string, unknown> | null = null;
  const attrs = q.get("attrs");
  if (attrs) {
    const parsed: unknown = JSON.parse(attrs);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new Error("?attrs= must be a JSON object");
    }
    attributes = parsed as Record<string, unknown>;
  }
  return {
    batonUrl: (q.get("baton") ?? __BATON_URL__).replace(/\/+$/, ""),
    flowId: q.get("flow"),
    userId: q.get("user") ?? `web-${newIdempotencyKey().slice(0, 8)}`,
    attributes,
    locale: q.get("locale") ?? navigator.language,
    appVersion: q.get("appVersion"),
    scenario: q.get("scenario"),
    pollMs: Number(q.get("poll") ?? 3000),
    session: q.get("session"),
    token: q.get("token"),
  };
}

/** How each session state arrived; the end-to-end test reads it. */
type Source = "startFlow" | "resume" | "submit" | "back" | "subscription" | "poll";
interface LogEntry {
  via: Source;
  status: string;
  screen: string | null;
}

class App {
  private session: FlowSession | null = null;
  private values: Values = {};
  /** Typed values per screen id, for screens Baton did not store them on. */
  private drafts = new Map<string, Values>();
  /** Screens the user can go Back to (changes of screen by submit, less Backs). */
  private depth = 0;
  private busy = false;
  /** Follow every update of the session, not only while WAITING (previews). */
  private live = false;
  /** Bumped whenever waiting starts or stops: late answers from an older wait are dropped. */
  private waitGen = 0;
  private stopWaiting: (() => void) | null = null;
  readonly log: LogEntry[] = [];

  private readonly api: BatonApi;
  private readonly $status = byId("status");
  private readonly $screen = byId("screen-root");
  private readonly $error = byId("request-error");
  private readonly $waiting = byId("waiting");
  private readonly $back = byId("back") as HTMLButtonElement;

  constructor(private readonly config: Config) {
    this.api = new BatonApi(config.batonUrl);
    this.$back.addEventListener("click", () => void this.back());
  }

  async start(): Promise<void> {
    const { config } = this;
    if (config.session && config.token) {
      // A preview link: open that session and follow it live, so a saved
      // draft re-renders the screen here.
      const id = config.session;
      this.api.setToken(config.token);
      this.live = true;
      await this.call(
        "resume",
        () => this.api.request<{ session: FlowSession | null }>(SESSION_QUERY, { id }),
        (d) => {
          if (!d.session) throw new Error("No such session: it expired, or the link's token is not its own.");
          return d.session;
        },
      );
      return;
    }
    if (!config.flowId) {
      this.fail("Add ?flow=<flow id> to the address (and optionally user, attrs, locale, scenario, baton).");
      return;
    }
    const input: Record<string, unknown> = {
      flowId: config.flowId,
      user: { id: config.userId, attributes: config.attributes },
      client: {
        platform: "web",
        locale: config.locale,
        capabilities: CORE_KINDS,
        ...(config.appVersion ? { appVersion: config.appVersion } : {}),
      },
    };
    // Only sent when asked for: a server without mock support rejects the field.
    if (config.scenario) input.mock = { scenario: config.scenario };
    await this.call("startFlow", () => this.api.request<{ startFlow: FlowSession }>(START_FLOW, { input }), (d) => d.startFlow);
  }

  private async act(action: string): Promise<void> {
    const { session } = this;
    if (this.busy || !session?.screen) return;
    const screen = session.screen;
    const values: Values = {};
    for (const id of inputIds(screen.components)) values[id] = this.values[id] ?? null;
    // One key per click; BatonApi resends it unchanged when the network fails.
    const idempotencyKey = newIdempotencyKey();
    const input = { sessionId: session.id, screenId: screen.id, action, values, idempotencyKey };
    await this.call("submit", () => this.api.request<{ submit: FlowSession }>(SUBMIT, { input }), (d) => d.submit);
  }

  private async back(): Promise<void> {
    const { session } = this;
    if (this.busy || !session) return;
    await this.call("back", () => this.api.request<{ back: FlowSession }>(BACK, { id: session.id }), (d) => d.back);
  }

  private async call<T>(via: Source, run: () => Promise<T>, pick: (d: T) => FlowSession): Promise<void> {
    this.busy = true;
    this.setEnabled(false);
    this.$error.hidden = true;
    try {
      this.show(pick(await run()), via);
    } catch (e) {
      this.fail(e instanceof BatonError ? `${e.message} [${e.code}]` : String(e));
    } finally {
      this.busy = false;
      this.setEnabled(true);
    }
  }

  private show(next: FlowSession, via: Source): void {
    if (next.token) this.api.setToken(next.token);
    const prev = this.session;
    const prevScreen = prev?.screen?.id ?? null;
    const nextScreen = next.screen?.id ?? null;
    this.log.push({ via, status: next.status, screen: nextScreen });
    if (prevScreen && prevScreen !== nextScreen) this.drafts.set(prevScreen, { ...this.values });
    if (via === "back") this.depth = Math.max(0, this.depth - 1);
    else if (prevScreen !== null && nextScreen !== prevScreen) this.depth += 1;

    this.session = next;
    this.values = next.screen ? initialValues(next.screen, this.drafts.get(next.screen.id)) : {};
    this.$status.textContent = next.status;
    this.$status.dataset.status = next.status;
    this.$screen.replaceChildren(
      next.screen
        ? renderScreen(next.screen, { values: this.values, enabled: !this.busy, onAction: (a) => void this.act(a) })
        : ended(next.status),
    );
    document.title = next.screen?.title ? `${next.screen.title} · Baton` : "Baton";
    this.$screen.querySelector<HTMLElement>('[aria-invalid="true"]')?.focus();

    const waiting = next.status === "WAITING";
    this.$waiting.hidden = !waiting;
    this.$back.hidden = next.status !== "ACTIVE" || !!next.screen?.terminal;
    this.$back.disabled = this.depth === 0 || this.busy;
    if (waiting || (this.live && next.status === "ACTIVE")) this.wait(next.id);
    else this.endWait();
    if (!["ACTIVE", "WAITING"].includes(next.status)) this.api.close();
  }

  /** Subscribes (and polls) until the session leaves WAITING or changes screen. */
  private wait(sessionId: string): void {
    if (this.stopWaiting) return;
    const gen = ++this.waitGen;
    const update = (s: FlowSession, via: Source) => {
      if (gen !== this.waitGen || this.busy) return;
      const cur = this.session;
      if (cur && s.status === cur.status && s.screen?.id === cur.screen?.id && s.flowVersion === cur.flowVersion) return;
      this.show(s, via);
    };
    const unsubscribe = this.api.subscribe(
      sessionId,
      (s) => update(s, "subscription"),
      (e) => {
        // The poll keeps going; say why updates may be slower.
        if (gen === this.waitGen) this.fail(`Live updates failed (${e.message}); checking every few seconds instead.`);
      },
    );
    const timer = setInterval(() => {
      this.api
        .request<{ session: FlowSession | null }>(SESSION_QUERY, { id: sessionId }, 1)
        .then((d) => d.session && update(d.session, "poll"))
        .catch(() => {
          // A missed poll is retried at the next tick.
        });
    }, this.config.pollMs);
    this.stopWaiting = () => {
      unsubscribe();
      clearInterval(timer);
    };
  }

  private endWait(): void {
    this.waitGen++;
    this.stopWaiting?.();
    this.stopWaiting = null;
  }

  private setEnabled(enabled: boolean): void {
    for (const b of this.$screen.querySelectorAll("button")) b.disabled = !enabled;
    this.$back.disabled = !enabled || this.depth === 0;
  }

  private fail(message: string): void {
    this.$error.textContent = message;
    this.$error.hidden = false;
  }
}

function ended(status: string): HTMLElement {
  const p = document.createElement("p");
  p.dataset.testid = "session-ended";
  p.textContent = `This session has ended (${status}).`;
  return p;
}

function byId(id: string): HTMLElement {
  const node = document.getElementById(id);
  if (!node) throw new Error(`index.html lacks #${id}`);
  return node;
}

try {
  const app = new App(readConfig(location.search));
  (window as unknown as { baton: { log: LogEntry[] } }).baton = { log: app.log };
  void app.start();
} catch (e) {
  const err = byId("request-error");
  err.textContent = String(e);
  err.hidden = false;
}
