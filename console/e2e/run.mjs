// End-to-end: the console in headless Chromium against the real `baton`
// binary on SQLite or PostgreSQL, as product managers, publishers, reviewers and support
// use it. The only thing mocked is an upstream the expense flow calls,
// served here on 127.0.0.1.
//
//   node e2e/run.mjs                 (BATON_BIN, default target/debug/baton)
//   CONSOLE_SHOTS=docs node e2e/run.mjs   also writes docs/console-*.png
//   BATON_E2E_DATABASE_URL=postgres://…/empty_db node e2e/run.mjs
//                                    the same on PostgreSQL (.ci/run makes the database)
//
// Exits non-zero on any failure, with a screenshot, the browser's errors
// and Baton's log path.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { launchBrowser, REPO, startBaton, tempDir, within } from "../../client-examples/web/e2e/harness.mjs";

const CONSOLE = resolve(fileURLToPath(import.meta.url), "../..");
const WATCHDOG = setTimeout(() => {
  console.error("console e2e: watchdog: still running after 6 minutes; giving up");
  process.exit(1);
}, 6 * 60_000);
WATCHDOG.unref();

const dir = tempDir();
process.on("exit", (code) => {
  if (code === 0) rmSync(dir, { recursive: true, force: true });
});

const KEYS = {
  admin: "bk_console-admin",
  publisher: "bk_console-publisher",
  viewer: "bk_console-viewer",
  reviewer: "bk_console-reviewer",
};

let baton, browser, upstream;
let upstreamUp = false;
const browserErrors = [];

before(async () => {
  // The expense flow's upstream: refuses until the test says otherwise.
  upstream = createServer((req, res) => {
    req.resume();
    if (!upstreamUp) {
      res.writeHead(503, { "content-type": "application/json" }).end('{"error":"down"}');
    } else {
      res.writeHead(200, { "content-type": "application/json" }).end('{"policy":"ok"}');
    }
  });
  await new Promise((r) => upstream.listen(0, "127.0.0.1", r));
  const flows = join(dir, "console-flows");
  mkdirSync(flows, { recursive: true });
  for (const file of readdirSync(join(CONSOLE, "e2e/flows"))) {
    writeFileSync(
      join(flows, file),
      readFileSync(join(CONSOLE, "e2e/flows", file), "utf8").replace("http://UPSTREAM", `http://127.0.0.1:${upstream.address().port}`),
    );
  }
  const keysFile = join(dir, "keys.yaml");
  const entry = (name, role, extra = "") =>
    `  - name: ${name}\n    role: ${role}\n    sha256: ${createHash("sha256").update(KEYS[name]).digest("hex")}\n${extra}`;
  writeFileSync(
    keysFile,
    "keys:\n" +
      entry("admin", "admin") +
      entry("publisher", "publisher") +
      entry("viewer", "viewer") +
      entry("reviewer", "reviewer", "    queues: [finance]\n"),
  );
  baton = await startBaton({
    dir,
    webOrigin: "http://127.0.0.1:9",
    flowDirs: [flows],
    databaseUrl: process.env.BATON_E2E_DATABASE_URL || undefined,
    extraArgs: ["--api-keys", keysFile],
  });
  browser = await launchBrowser();
  console.log(`console e2e: baton ${baton.url} on ${process.env.BATON_E2E_DATABASE_URL ? "PostgreSQL" : "SQLite"}, artifacts in ${dir}`);
});

after(async () => {
  await browser?.close().catch(() => {});
  await baton?.stop();
  await new Promise((r) => upstream?.close(r));
});

async function gql(key, query, variables = {}) {
  const res = await fetch(`${baton.url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(key ? { "x-api-key": key } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = await res.json();
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

async function start(flowId, userId, client = { platform: "web", capabilities: ["text", "heading", "markdown", "button", "text_input", "number_input", "select", "checkbox", "date", "email_input", "card", "list", "stack", "image"] }) {
  const d = await gql(
    null,
    `mutation S($input: StartFlowInput!) { startFlow(input: $input) { id token flowVersion screen { id } } }`,
    { input: { flowId, user: { id: userId }, client } },
  );
  return d.startFlow;
}

async function submit(session, action, values = {}) {
  const res = await fetch(`${baton.url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${session.token}` },
    body: JSON.stringify({
      query: `mutation S($input: SubmitInput!) { submit(input: $input) { status screen { id } } }`,
      variables: { input: { sessionId: session.id, screenId: session.screen.id, action, values } },
    }),
  });
  return (await res.json()).data.submit;
}

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1400, height: 950 } });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on("pageerror", (e) => browserErrors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && browserErrors.push(m.text()));
  return page;
}

async function signIn(page, who) {
  await page.goto(`${baton.url}/console`);
  await page.getByLabel("API key").fill(KEYS[who]);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("who").waitFor();
}

async function shot(page, name) {
  if (process.env.CONSOLE_SHOTS === "docs") await page.screenshot({ path: join(REPO, "docs", `console-${name}.png`) });
}

/** axe-core on the page as it is: no serious or critical violation. */
async function axe(page, where) {
  const source = readFileSync(join(CONSOLE, "node_modules/axe-core/axe.min.js"), "utf8");
  const violations = await page.evaluate(async (src) => {
    // eslint-disable-next-line no-eval
    (0, eval)(src);
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
  }, source);
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(bad, [], `axe on ${where}: ${JSON.stringify(bad, null, 1)}`);
}

/** Find and replace with CodeMirror's search panel, typed key by key (the panel reads its fields on keyup). */
async function replaceInSource(page, from, to) {
  await page.locator(".cm-content").click();
  await page.keyboard.press("Control+f");
  await page.locator(".cm-search input[name=search]").pressSequentially(from);
  await page.locator(".cm-search input[name=replace]").pressSequentially(to);
  await page.locator(".cm-search button[name=replaceAll]").click();
  await page.keyboard.press("Escape");
}

/** A test on a fresh page: on failure, a screenshot, the browser's errors and Baton's log path. */
function browserTest(name, body) {
  test(name, async () => {
    const page = await newPage();
    try {
      await body(page);
      await page.context().close().catch(() => {});
    } catch (e) {
      await failWith(page, e);
    }
  });
}

async function failWith(page, e) {
  const path = join(dir, `failure-${Date.now()}.png`);
  await page.screenshot({ path, fullPage: true }).catch(() => {});
  throw new Error(`${e.message}\nscreenshot: ${path}\nbrowser errors: ${browserErrors.join("\n")}\nbaton log: ${baton.logPath}`, { cause: e });
}

test("the console is served by the binary, compressed, with a strict CSP", async () => {
  const res = await fetch(`${baton.url}/console/console.js`, { headers: { "accept-encoding": "gzip" } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-encoding"), "gzip");
  const page = await fetch(`${baton.url}/console`);
  assert.match(page.headers.get("content-security-policy"), /script-src 'self'/);
  assert.match(await page.text(), /console\.js/);
  assert.equal((await fetch(`${baton.url}/console/nothing.js`)).status, 404);
});

browserTest("a viewer sees what it may do, and a denied call shows the code and hint", async (page) => {
  await signIn(page, "viewer");
  await page.getByTestId("who").click();
  const perms = await page.getByTestId("permissions").innerText();
  assert.match(perms, /READ_FLOWS/);
  assert.doesNotMatch(perms, /PUBLISH_FLOWS/);
  await page.getByRole("link", { name: "Loan application" }).click();
  await page.getByTestId("save-draft").waitFor();
  assert.equal(await page.getByTestId("save-draft").isDisabled(), true);
  // Every node of every kind gets its form from the schema; for a viewer it is read-only.
  const ids = await page.getByTestId("node-select").locator("option").evaluateAll((os) => os.map((o) => o.value).filter(Boolean));
  assert.ok(ids.length >= 10, `loan's nodes: ${ids}`);
  for (const id of ids) {
    await page.getByTestId("node-select").selectOption(id);
    await page.getByTestId("node-panel").getByText(id, { exact: true }).waitFor();
    assert.equal(await page.getByTestId("node-form").locator("input:not([disabled]), select:not([disabled]), textarea:not([disabled])").count(), 0, id);
    assert.ok((await page.getByTestId("node-form").locator("[data-testid^=f-]").count()) > 0, `a form for ${id}`);
  }
  await page.getByTestId("node-select").selectOption("intro");
  assert.equal(await page.getByTestId("node-form").getByTestId("f-title").isDisabled(), true);
  assert.equal(await page.getByTestId("condition-builder").count(), 0);
  await axe(page, "the flow graph");
  // The Approvals page is not offered; opened anyway, the server's refusal shows.
  assert.equal(await page.getByRole("link", { name: "Approvals" }).count(), 0);
  await page.goto(`${baton.url}/console#/approvals`);
  const err = page.getByTestId("error");
  await err.waitFor();
  assert.equal(await err.getAttribute("data-code"), "FORBIDDEN_ROLE");
  assert.match(await err.innerText(), /Hint:/);
});

browserTest("edit the loan flow: title, a new edge, an inline error fixed, live preview, publish to 50%, roll back", async (page) => {
  await signIn(page, "admin");
  await shot(page, "flows");
  await axe(page, "the flows list");
  await page.getByRole("link", { name: "Loan application" }).click();
  await page.getByTestId("node-intro").waitFor();
  // Every node kind is drawn, each with its own kind.
  for (const [node, kind] of [["intro", "screen"], ["eligibility", "decision"], ["credit_check", "http"], ["underwriting", "approval"], ["accepted", "end"]]) {
    assert.equal(await page.getByTestId(`node-${node}`).getAttribute("data-kind"), kind);
  }
  await page.getByTestId("node-search").fill("underwr");
  await page.waitForSelector(".fnode.match");

  // The live preview, started before any edit, follows each save.
  await page.getByTestId("start-preview").click();
  await within(10_000, "preview title", page.getByTestId("preview-screen").getByText("Apply for a loan", { exact: true }).waitFor());

  await page.getByTestId("node-select").selectOption("intro");
  await page.getByTestId("node-form").getByTestId("f-title").fill("Apply for a loan today");
  await page.getByTestId("node-select").selectOption("amount");
  await page.getByTestId("edge-target").selectOption("declined");
  await page.getByTestId("cond-path-0").fill("input.amount.amount");
  await page.getByTestId("cond-op-0").selectOption(">");
  await page.getByTestId("cond-value-0").fill("45000");
  assert.equal(await page.getByTestId("rule-text").innerText(), "Rule: input.amount.amount > 45000");
  await page.getByTestId("add-edge").click();
  await page.locator(".react-flow__edge-text", { hasText: "next: input.amount.amount > 45000" }).waitFor();
  await shot(page, "graph");

  // A broken reference comes back inline, at its node; fixed, it saves.
  await page.getByRole("link", { name: "Source" }).click();
  await replaceInSource(page, "next: amount", "next: amuont");
  await page.getByTestId("save-draft").click();
  await page.getByTestId("issues").waitFor();
  assert.match(await page.getByTestId("issues").innerText(), /amuont/);
  await page.getByRole("link", { name: "Graph" }).click();
  await page.locator('[data-testid="node-personal"] .badge.bad').waitFor();
  await page.getByRole("link", { name: "Source" }).click();
  await replaceInSource(page, "next: amuont", "next: amount");
  await page.getByTestId("save-draft").click();
  await within(10_000, "draft saved", page.getByTestId("save-result").getByText("Saved as draft v2.").waitFor());
  await within(10_000, "the live preview follows the save",
    page.getByTestId("preview-screen").getByText("Apply for a loan today", { exact: true }).waitFor());

  // Publish v2 to half of new sessions, with the diff and the report.
  await page.getByRole("link", { name: "Publish" }).click();
  await page.getByTestId("diff").waitFor();
  assert.match(await page.getByTestId("diff").innerText(), /Apply for a loan today/);
  // No app has started loan yet (previews do not count): nothing to check is said, not passed.
  assert.match(await page.getByTestId("report-summary").innerText(), /no cohort to check v2 against/);
  await page.getByTestId("publish-percent").fill("50");
  await page.getByTestId("publish-message").fill("new intro title, cap big loans");
  await page.getByTestId("publish").click();
  await page.getByTestId("publish-result").waitFor();
  await shot(page, "publish");
  await within(5000, "rollout shown", page.getByTestId("flow-status").getByText(/rollout v2 to 50%/).waitFor());

  const versions = { 1: 0, 2: 0 };
  for (let i = 0; i < 60; i++) versions[(await start("loan", `split-${i}`)).flowVersion]++;
  assert.ok(versions[1] > 10 && versions[2] > 10, `both versions get new sessions: ${JSON.stringify(versions)}`);

  // Roll back to v1 from the history.
  await page.getByRole("link", { name: "History" }).click();
  await page.getByTestId("rollback-1").click();
  await page.waitForFunction(() => !document.querySelector("[data-testid=flow-status]").textContent.includes("rollout"));
  assert.match(await page.getByTestId("flow-status").innerText(), /Live: v1/);
  for (let i = 0; i < 10; i++) assert.equal((await start("loan", `after-${i}`)).flowVersion, 1);

  await page.goto(`${baton.url}/console#/audit`);
  await page.getByTestId("audit").getByText("flow:loan").first().waitFor();
  await shot(page, "audit");
  await axe(page, "the audit log");
});

browserTest("a publish an app cohort cannot render is blocked, with the cohort, screen and reason", async (page) => {
  // Sessions from web apps that render core components only.
  const basic = { platform: "web", appVersion: "1.0.0", capabilities: ["text", "button", "number_input", "text_input"] };
  for (let i = 0; i < 3; i++) await start("expense", `cohort-${i}`, basic);
  const v1 = readFileSync(join(dir, "console-flows/expense.yaml"), "utf8");
  // A custom receipt scanner, and a fallback with a date input: neither renders on those apps.
  const v2 = v1.replace(
    "    actions:\n      - id: submit\n",
    "    fallback:\n      components:\n        - kind: date\n          id: spent_on\n          label: Spent on\n" +
      "        - kind: button\n          label: Send claim\n          action: submit\n" +
      "    actions:\n      - id: submit\n",
  ).replace("      - kind: text\n        text: Tell us what you spent.", "      - kind: custom\n        name: receipt_scanner\n      - kind: text\n        text: Tell us what you spent.");
  assert.notEqual(v1, v2);
  const saved = await gql(KEYS.admin, `mutation D($input: SaveDraftInput!) { saveDraft(input: $input) { ok issues { code message } } }`, { input: { flowId: "expense", source: v2 } });
  assert.ok(saved.saveDraft.ok, JSON.stringify(saved.saveDraft.issues));
  await signIn(page, "publisher");
  await page.goto(`${baton.url}/console#/flows/expense/publish`);
  await page.locator("tr[data-blocking=true]").first().waitFor();
  assert.match(await page.locator("tr[data-blocking=true]").first().innerText(), /claim/);
  // An app no session has come from yet is checked on request: the same screen breaks for it.
  await page.getByTestId("cohort-platform").fill("ios");
  await page.getByTestId("cohort-version").fill("0.9.0");
  await page.getByTestId("cohort-capabilities").fill("text, button");
  await page.getByTestId("cohort-add").click();
  const declared = page.locator("tr[data-declared=true]");
  await declared.waitFor();
  assert.match(await declared.innerText(), /ios 0\.9\.0 \[button, text\][\s\S]*claim/);
  assert.equal(await declared.getAttribute("data-blocking"), "true");
  await page.getByTestId("publish").click();
  const err = page.getByTestId("error");
  await err.waitFor();
  assert.equal(await err.getAttribute("data-code"), "INCOMPATIBLE_WITH_COHORTS");
  await shot(page, "blocked");
});

browserTest("support finds a failed session and retries its step; a reviewer decides the approval", async (page) => {
  const s = await start("expense", "erin");
  const after = await submit(s, "submit", { amount: 120, reason: "team lunch" });
  assert.equal(after.status, "FAILED", "the upstream refuses, the step fails");

  await signIn(page, "admin");
  await page.getByRole("link", { name: "Support", exact: true }).click();
  await page.getByTestId("user-search").fill("erin");
  await page.getByRole("button", { name: "Find sessions" }).click();
  await page.getByTestId("sessions").getByRole("link", { name: s.id }).click();
  await page.getByTestId("session-status").getByText("failed").waitFor();
  assert.match(await page.getByTestId("steps").innerText(), /HTTP 503/);
  await shot(page, "support");
  await axe(page, "a session in support");
  upstreamUp = true;
  await page.getByTestId("retry-step").click();
  await within(10_000, "retried step moves on", page.getByTestId("session-status").getByText("waiting").waitFor());
  await page.context().close();

  const reviewer = await newPage();
  await signIn(reviewer, "reviewer");
  await reviewer.getByRole("link", { name: "Approvals" }).click();
  const card = reviewer.locator("article", { hasText: "120" }).first();
  await card.waitFor();
  await card.getByTestId("claim").click();
  await card.getByText(/by reviewer/).waitFor();
  await card.getByTestId("field-note").fill("fine");
  await axe(reviewer, "the approvals inbox");
  await shot(reviewer, "approvals");
  await card.getByTestId("decide-approved").click();
  await within(5000, "the task leaves the inbox", card.waitFor({ state: "detached" }));
  const done = await gql(KEYS.admin, `query S($id: ID!) { session(id: $id) { status outcome } }`, { id: s.id });
  assert.equal(done.session.status, "COMPLETED");
  await reviewer.context().close();
});

browserTest("the node form edits inputs, validation, a step's retry and mock; a bad value comes back at its field", async (page) => {
  await signIn(page, "admin");
  await page.getByRole("link", { name: "Refund request" }).click();
  await page.getByTestId("node-request").waitFor();
  await page.getByTestId("start-preview").click();
  await within(10_000, "preview", page.getByTestId("preview-screen").getByText("Ask for a refund", { exact: true }).waitFor());

  // A screen: its title, an input's validation, a new input added by kind.
  await page.getByTestId("node-select").selectOption("request");
  const form = page.getByTestId("node-form");
  await form.getByTestId("f-title").fill("Ask us for a refund");
  await form.getByTestId("f-components.1-item").locator("summary").click();
  await form.getByTestId("f-components.1.max").fill("5000");
  await form.getByTestId("f-components-kind").selectOption("email_input");
  await form.getByTestId("f-components-additem").click();
  await form.getByTestId("f-components.4.id").fill("email");
  await form.getByTestId("f-components.4.label").fill("Where we send the receipt");
  await form.getByTestId("f-components.4.required").check();
  // The new input sits after the button; moved up once, it comes before it.
  await form.getByTestId("f-components.4-item").getByRole("button", { name: "Move up" }).click();
  await form.getByTestId("f-components.3-item").getByText("email_input email").waitFor();
  // A rule typed as JSON is read as YAML, shown as text and written the way it was typed.
  await form.getByTestId("f-components.0-item").locator("> summary").click();
  await form.getByTestId("f-components.0.visible_when").fill('{"!=": [{"var": "client.locale"}, "xx"]}');
  await form.getByTestId("f-components.0.visible_when").blur();
  assert.match(await form.getByTestId("f-components.0.visible_when-text").innerText(), /client\.locale .* "xx"/);
  await page.evaluate(() => { document.querySelector(".side-pane").scrollTop = 0; window.scrollTo(0, 0); });
  await shot(page, "node-form");

  // A step: retries, its timeout, a mock with a named scenario.
  await page.getByTestId("node-select").selectOption("lookup");
  await form.getByTestId("f-retry-add").click();
  await form.getByTestId("f-retry.max_attempts").fill("4");
  await form.getByTestId("f-timeout").fill("soon");
  await form.getByTestId("f-mock-add").click();
  await form.getByTestId("f-mock.scenarios-add").click();
  await form.getByTestId("f-mock.scenarios-newkey").fill("over_limit");
  await form.getByTestId("f-mock.scenarios-addkey").click();
  await form.getByTestId("f-mock.scenarios.over_limit.status").fill("422");

  // The bad timeout is refused at its field, in the form.
  await page.getByTestId("save-draft").click();
  await page.getByTestId("issues").waitFor();
  await page.getByRole("link", { name: "Graph" }).click();
  await page.getByTestId("node-select").selectOption("lookup");
  assert.equal(await form.getByTestId("f-timeout").getAttribute("aria-invalid"), "true");
  await form.locator('[data-code="INVALID_DURATION"]').first().waitFor();
  await axe(page, "the node form with an issue");
  await form.getByTestId("f-timeout").fill("5s");
  await page.getByTestId("save-draft").click();
  await within(10_000, "draft saved", page.getByTestId("save-result").getByText(/Saved as draft v\d+\./).waitFor());
  assert.equal(await form.getByTestId("f-timeout").getAttribute("aria-invalid"), null);
  // What the form wrote is what was saved, comments and all.
  const v = await gql(KEYS.admin, `{ flowVersions(flowId: "refund") { source } }`);
  const source = v.flowVersions[v.flowVersions.length - 1].source;
  for (const want of ["# A refund request the node-form test edits", "title: Ask us for a refund", "max: 5000", "kind: email_input",
    "max_attempts: 4", "timeout: 5s", "over_limit:", "status: 422", 'visible_when: { "!=": [ { var: client.locale }, xx ] }']) {
    assert.ok(source.includes(want), `the saved source has ${want}:\n${source}`);
  }
  assert.ok(source.indexOf("kind: email_input") < source.indexOf("kind: button"), "moved above the button");
  await within(10_000, "the preview shows the new input",
    page.getByTestId("preview-screen").getByText("Where we send the receipt").waitFor());
  assert.ok(await page.getByTestId("preview-screen").getByText("Ask us for a refund", { exact: true }).isVisible());
});

browserTest("keyboard only: sign in, open a flow, pick a node, edit it in the form, save", async (page) => {
  await page.goto(`${baton.url}/console`);
  // Tab until the focused element matches, as a keyboard user would; bounded.
  const tabTo = async (what, test) => {
    for (let i = 0; i < 80; i++) {
      await page.keyboard.press("Tab");
      if (await page.evaluate(test)) return;
    }
    throw new Error(`Tab never reached ${what}`);
  };
  await tabTo("the API key field", () => document.activeElement?.id === "api-key");
  await page.keyboard.type(KEYS.admin);
  await page.keyboard.press("Enter");
  await page.getByTestId("who").waitFor();
  await tabTo("the refund flow's link", () => document.activeElement?.textContent === "Refund request");
  await page.keyboard.press("Enter");
  await page.getByTestId("node-request").waitFor();
  await tabTo("the node picker", () => document.activeElement?.dataset.testid === "node-select");
  // "none", request, lookup, route, review: four steps down is the review end.
  for (let i = 0; i < 4; i++) await page.keyboard.press("ArrowDown");
  await page.getByTestId("node-panel").getByText("review").first().waitFor();
  await tabTo("the title field", () => document.activeElement?.dataset.testid === "f-title");
  await page.keyboard.press("Control+a");
  await page.keyboard.type("We will check and email you");
  await tabTo("the change note", () => document.activeElement?.placeholder === "What changed and why");
  await page.keyboard.type("friendlier review end");
  await tabTo("Save draft", () => document.activeElement?.dataset.testid === "save-draft");
  await page.keyboard.press("Enter");
  await within(10_000, "saved from the keyboard", page.getByTestId("save-result").getByText(/Saved as draft v\d+\./).waitFor());
  const v = await gql(KEYS.admin, `{ flowVersions(flowId: "refund") { number message source } }`);
  const last = v.flowVersions[v.flowVersions.length - 1];
  assert.equal(last.message, "friendlier review end");
  assert.match(last.source, /title: We will check and email you/);
});

test("no errors in the browser console", () => {
  assert.deepEqual(browserErrors.filter((e) => !/Failed to load resource/.test(e)), []);
});
