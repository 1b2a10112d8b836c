// End-to-end: the web client in headless Chromium against the real `baton`
// binary, through whole flows, asserting what the user sees at each step.
//
//   node e2e/run.mjs           (BATON_BIN, default target/debug/baton; CHROMIUM_BIN, default /usr/bin/chromium)
//   E2E_SHOTS=1 node e2e/run.mjs   also keeps a screenshot of each step
//
// Exits non-zero on any failure, with a screenshot of the page, the
// browser's errors and Baton's log path.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { buildApp, launchBrowser, serveStatic, startBaton, tempDir, WEB } from "./harness.mjs";

// Everything, including a hung browser or server, ends within this.
const WATCHDOG = setTimeout(() => {
  console.error("e2e: watchdog: still running after 5 minutes; giving up");
  process.exit(1);
}, 5 * 60_000);
WATCHDOG.unref();

if (Number(process.versions.node.split(".")[0]) < 20) {
  console.error(`e2e: needs Node.js 20 or later (playwright-core), found ${process.version}`);
  process.exit(1);
}

const dir = tempDir();
// Artifacts (screenshots, Baton's log and database) stay only when wanted.
process.on("exit", (code) => {
  if (code === 0 && !process.env.E2E_SHOTS) rmSync(dir, { recursive: true, force: true });
});
let baton, mockBaton, previewBaton, web, browser;

// An editor's key for the server the preview test saves drafts on.
const EDITOR_KEY = "bk_e2e-preview-editor";

before(async () => {
  buildApp();
  web = await serveStatic(join(WEB, "dist"));
  baton = await startBaton({ dir, webOrigin: web.url });
  mockBaton = await startBaton({ dir, webOrigin: web.url, extraArgs: ["--mock", "--step-budget-ms", "0"] });
  const keys = join(dir, "api-keys.yaml");
  const sha = createHash("sha256").update(EDITOR_KEY).digest("hex");
  writeFileSync(keys, `keys:\n  - name: e2e-editor\n    role: editor\n    sha256: ${sha}\n`);
  previewBaton = await startBaton({ dir, webOrigin: web.url, extraArgs: ["--api-keys", keys] });
  browser = await launchBrowser();
  console.log(`e2e: baton ${baton.url} (mock mode: ${mockBaton.url}), web ${web.url}, artifacts in ${dir}`);
});

after(async () => {
  await browser?.close().catch(() => {});
  await baton?.stop();
  await mockBaton?.stop();
  await previewBaton?.stop();
  await web?.close();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until `locator`'s text equals (string) or matches (RegExp) `expected`. */
async function expectText(locator, expected, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const seen = await locator.innerText({ timeout: 1000 }).catch((e) => `<${e.message.split("\n")[0]}>`);
    const ok = typeof expected === "string" ? seen.trim() === expected : expected.test(seen);
    if (ok) return;
    if (Date.now() > deadline) {
      throw new Error(`${locator}: expected text ${expected}, last saw ${JSON.stringify(seen)}`);
    }
    await sleep(50);
  }
}

const title = (page, text, ms) => expectText(page.getByTestId("screen-title"), text, ms);
const status = (page, text) => expectText(page.getByTestId("status"), text);
const button = (page, name) => page.getByRole("button", { name, exact: true });

/** The error shown under an input: its code and message. */
async function fieldError(page, id) {
  const err = page.getByTestId(`error-${id}`);
  await err.waitFor({ state: "visible" });
  await expectAria(page.getByTestId(`input-${id}`), "aria-invalid", "true");
  return { code: await err.getAttribute("data-code"), message: (await err.innerText()).trim() };
}

async function expectAria(locator, name, value) {
  assert.equal(await locator.getAttribute(name), value, `${locator} ${name}`);
}

async function noFieldErrors(page) {
  assert.equal(await page.locator(".field-error").count(), 0, "no field errors shown");
}

/** The GraphQL submits the page sent, in order (retries included). */
function recordSubmits(page) {
  const submits = [];
  page.on("request", (req) => {
    if (req.method() !== "POST" || !req.url().endsWith("/graphql")) return;
    const body = req.postDataJSON();
    if (body?.query?.startsWith("mutation Submit")) submits.push(body.variables.input);
  });
  return submits;
}

/**
 * Opens the app on `params` in a fresh browser context and runs `body`. On
 * failure: a screenshot, the browser's errors and Baton's log path.
 */
async function withPage(t, params, body, server = baton) {
  const context = await browser.newContext({ viewport: { width: 720, height: 900 }, locale: "en-US" });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  const browserErrors = [];
  page.on("pageerror", (e) => browserErrors.push(`uncaught: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && browserErrors.push(`console: ${m.text()}`));
  const slug = t.name.replace(/[^a-z0-9]+/gi, "-").toLowerCase();
  let n = 0;
  const snap = async (name) => {
    if (process.env.E2E_SHOTS) await page.screenshot({ path: join(dir, `${slug}-${++n}-${name}.png`), fullPage: true });
  };
  try {
    const query = new URLSearchParams({ baton: server.url, ...params });
    await page.goto(`${web.url}/index.html?${query}`);
    await body(page, snap);
    const uncaught = browserErrors.filter((e) => e.startsWith("uncaught"));
    assert.deepEqual(uncaught, [], "no uncaught errors in the page");
  } catch (e) {
    const shot = join(dir, `${slug}-FAILED.png`);
    await page.screenshot({ path: shot, fullPage: true, timeout: 5000 }).catch(() => {});
    console.error(
      [
        `e2e FAILED: ${t.name}`,
        `  screenshot: ${shot}`,
        `  baton log:  ${server.logPath} (written when it stops)`,
        `  status:     ${await page.getByTestId("status").innerText({ timeout: 1000 }).catch(() => "?")}`,
        `  app error:  ${await page.getByTestId("request-error").innerText({ timeout: 1000 }).catch(() => "(none)")}`,
        `  page log:   ${JSON.stringify(await page.evaluate(() => window.baton?.log).catch(() => null))}`,
        ...browserErrors.map((l) => `  browser ${l}`),
      ].join("\n"),
    );
    throw e;
  } finally {
    await context.close();
  }
}

const T = { timeout: 90_000 };

test("checkout: validation errors shown and fixed, Back restores typed values, order placed", T, (t) =>
  withPage(t, { flow: "checkout", user: "e2e-checkout", attrs: JSON.stringify({ product: "Desk lamp" }) }, async (page, snap) => {
    const submits = recordSubmits(page);

    await title(page, "Your cart");
    await status(page, "ACTIVE");
    await page.getByText("Desk lamp", { exact: true }).waitFor();
    await page.getByText("Unit price: 25 EUR").waitFor();
    assert.equal(await page.getByTestId("back").isDisabled(), true, "nothing to go back to");

    await button(page, "Continue to shipping").click();
    assert.equal((await fieldError(page, "quantity")).code, "REQUIRED");
    await page.getByLabel("Quantity").fill("20");
    await button(page, "Continue to shipping").click();
    await expectText(page.getByTestId("error-quantity"), /10/);
    assert.equal((await fieldError(page, "quantity")).code, "TOO_LARGE");
    assert.equal(await page.getByLabel("Quantity").inputValue(), "20", "the typed value stays");
    await snap("cart-error");
    await page.getByLabel("Quantity").fill("2");
    await button(page, "Continue to shipping").click();

    await title(page, "Shipping");
    await noFieldErrors(page);
    await page.getByLabel("Street and number").fill("Main St 1");
    await page.getByLabel("Postcode").fill("123");
    await page.getByLabel("Delivery").selectOption("standard");
    await page.getByLabel("Deliver no earlier than").fill("2030-05-01");
    await button(page, "Continue").click();
    assert.deepEqual(await fieldError(page, "postcode"), { code: "PATTERN_MISMATCH", message: "A postcode has five digits." });
    assert.equal(await page.getByLabel("Street and number").inputValue(), "Main St 1");
    assert.equal(await page.getByLabel("Delivery").inputValue(), "standard");
    await snap("shipping-error");
    await page.getByLabel("Postcode").fill("12345");
    await button(page, "Continue").click();

    await title(page, "Payment");
    await page.getByLabel("Pay with").selectOption("paypal");
    await page.getByTestId("back").click();
    await title(page, "Shipping");
    assert.equal(await page.getByLabel("Street and number").inputValue(), "Main St 1", "Back restores the address");
    assert.equal(await page.getByLabel("Postcode").inputValue(), "12345");
    assert.equal(await page.getByLabel("Delivery").inputValue(), "standard");
    assert.equal(await page.getByLabel("Deliver no earlier than").inputValue(), "2030-05-01");
    await page.getByTestId("back").click();
    await title(page, "Your cart");
    assert.equal(await page.getByLabel("Quantity").inputValue(), "2", "Back restores the quantity");
    assert.equal(await page.getByTestId("back").isDisabled(), true);
    await button(page, "Continue to shipping").click();
    await title(page, "Shipping");
    await button(page, "Continue").click();

    await title(page, "Payment");
    assert.equal(await page.getByLabel("Pay with").inputValue(), "paypal", "typed but never submitted, still kept");
    await page.getByLabel("Pay with").selectOption("");
    await button(page, "Place order").click();
    assert.equal((await fieldError(page, "method")).code, "REQUIRED");
    assert.equal((await fieldError(page, "terms")).code, "REQUIRED");
    await page.getByLabel("Pay with").selectOption("card");
    await page.getByLabel("I agree to the terms of sale").check();
    await snap("payment");
    await button(page, "Place order").click();

    await title(page, "Order placed");
    await status(page, "COMPLETED");
    await page.getByText("Thank you! We will ship to Main St 1.").waitFor();
    assert.equal(await page.getByRole("button").filter({ visible: true }).count(), 0, "a terminal screen has no buttons");
    await snap("done");

    const last = submits.at(-1);
    assert.deepEqual(last.values, { method: "card", terms: true });
    assert.equal(last.screenId, "payment");
    const keys = submits.map((s) => s.idempotencyKey);
    assert.equal(new Set(keys).size, keys.length, `a fresh idempotency key per click: ${keys}`);
    const cart = submits.find((s) => s.screenId === "cart" && s.values.quantity === 2);
    assert.equal(typeof cart.values.quantity, "number", "numbers are sent as JSON numbers");
  }),
);

test("onboarding: a lost answer is retried with the same idempotency key; markdown; completed", T, (t) =>
  withPage(
    t,
    { flow: "onboarding", user: "e2e-onboarding", attrs: JSON.stringify({ first_name: "Ada", plan: "pro" }) },
    async (page, snap) => {
      const submits = recordSubmits(page);
      // The first submit reaches Baton, but its answer is lost on the way back.
      let dropped = false;
      await page.route("**/graphql", async (route) => {
        if (!dropped && route.request().postDataJSON()?.query?.startsWith("mutation Submit")) {
          dropped = true;
          await route.fetch();
          await route.abort("connectionreset");
          return;
        }
        await route.continue();
      });

      await title(page, "Welcome, Ada!");
      await page.getByRole("heading", { name: "Let's set up your account" }).waitFor();
      await snap("welcome");
      await button(page, "Get started").click();

      await title(page, "About you");
      assert.ok(dropped, "the first answer was dropped");
      assert.equal(submits.length, 2, "sent twice");
      assert.deepEqual(submits[1], submits[0], "the retry is the same request, same idempotency key");
      assert.equal(await page.getByTestId("screen-errors").count(), 0, "not a STALE_SCREEN: Baton replayed its answer");

      await page.getByLabel("Your name").fill("A");
      await page.getByLabel("E-mail").fill("ada@");
      await page.getByLabel("What brings you here?").selectOption("invest");
      await button(page, "Continue").click();
      assert.equal((await fieldError(page, "name")).code, "TOO_SHORT");
      assert.equal((await fieldError(page, "email")).code, "INVALID_EMAIL");
      assert.equal((await fieldError(page, "terms")).code, "REQUIRED");
      assert.equal(await page.getByLabel("E-mail").inputValue(), "ada@", "typed values stay after an error");
      assert.equal(await page.getByLabel("What brings you here?").inputValue(), "invest");
      await snap("profile-errors");
      await page.getByLabel("Your name").fill("Ada Lovelace");
      await page.getByLabel("E-mail").fill("ada@example.com");
      await page.getByLabel("I accept the terms").check();
      await button(page, "Continue").click();

      await title(page, "Tips for Pro members");
      const md = page.locator(".markdown");
      await expectText(md.locator("strong"), "Ada Lovelace");
      await expectText(md.locator("em"), "priority support");
      await button(page, "Finish").click();

      await title(page, "You're all set");
      await status(page, "COMPLETED");
      await page.getByText("Thanks, Ada Lovelace! Your account is ready.").waitFor();
      assert.equal(await page.getByTestId("back").isHidden(), true, "no Back on a terminal screen");
    },
  ),
);

test("showcase: every core kind renders; custom falls back; markdown is inert; screen-level errors show", T, (t) =>
  withPage(t, { flow: "showcase", user: "e2e-showcase", attrs: JSON.stringify({ first_name: "Grace" }) }, async (page, snap) => {
    // Another tab advances the session while this submit is on its way:
    // Baton answers with the current screen and a STALE_SCREEN error.
    let raced = false;
    await page.route("**/graphql", async (route) => {
      const body = route.request().postDataJSON();
      if (!raced && body?.query?.startsWith("mutation Submit")) {
        raced = true;
        await route.fetch();
        const other = { ...body, variables: { input: { ...body.variables.input, idempotencyKey: "other-tab" } } };
        const resp = await route.fetch({ postData: JSON.stringify(other) });
        await route.fulfill({ response: resp });
        return;
      }
      await route.continue();
    });
    await title(page, "Showcase");
    await button(page, "Begin").click();
    await title(page, "All the kinds");
    const stale = page.getByTestId("screen-errors");
    await stale.waitFor();
    assert.equal(await stale.locator("p").getAttribute("data-code"), "STALE_SCREEN");

    await page.getByRole("heading", { name: "Hello Grace", level: 3 }).waitFor();
    const img = page.getByRole("img", { name: "Baton logo" });
    await img.waitFor();
    assert.ok(await img.evaluate((i) => i.complete && i.naturalWidth > 0), "the image loaded");
    const md = page.getByTestId("c-md");
    await expectText(md.locator("strong"), "bold");
    await expectText(md.locator("em"), "emphasis");
    await expectText(md.locator("code"), "code");
    assert.equal(await md.getByRole("link", { name: "link" }).getAttribute("href"), "https://example.com");
    assert.equal(await md.locator("script").count(), 0, "no markup from text");
    assert.equal(await md.getByRole("link", { name: "bad" }).count(), 0, "no javascript: links");
    await md.getByText("<script>window.pwned = 1</script>").waitFor();
    assert.equal(await page.evaluate(() => window.pwned), undefined);
    assert.deepEqual(await md.locator("ul > li").allInnerTexts(), ["one", "two"]);
    const card = page.getByTestId("c-box");
    await expectText(card.getByRole("heading", { level: 2 }), "A card");
    assert.match(await page.getByTestId("c-row").getAttribute("class"), /\brow\b/);
    assert.deepEqual(await page.getByTestId("c-steps").locator("> li").allInnerTexts(), ["First", "Second"]);
    assert.equal(await page.getByTestId("c-steps").evaluate((e) => e.tagName), "OL");
    // confetti is not among our capabilities, so Baton sent the fallback.
    await page.getByText("(No confetti in this app.)").waitFor();
    assert.equal(await page.getByTestId("custom-confetti").count(), 0);
    const types = {};
    for (const id of ["nick", "age", "mail", "color", "day", "agree"]) {
      types[id] = await page.getByTestId(`input-${id}`).evaluate((e) => (e.tagName === "SELECT" ? "select" : e.type));
    }
    assert.deepEqual(types, { nick: "text", age: "number", mail: "email", color: "select", day: "date", agree: "checkbox" });

    await page.getByLabel("Nickname").fill("Gr");
    await page.getByLabel("Age").fill("17");
    await page.getByLabel("E-mail").fill("grace@navy.mil");
    await page.getByLabel("Colour").selectOption("blue");
    await page.getByLabel("Day").fill("2019-12-31");
    await button(page, "Send").click();
    await page.getByTestId("error-nick").waitFor();
    const codes = {};
    for (const id of ["nick", "age", "day", "agree"]) codes[id] = (await fieldError(page, id)).code;
    assert.deepEqual(codes, { nick: "TOO_SHORT", age: "TOO_SMALL", day: "TOO_EARLY", agree: "REQUIRED" });
    assert.equal(await page.getByTestId("error-mail").count(), 0);
    assert.equal(await stale.count(), 0, "the old screen-level error is gone");
    await snap("everything-errors");

    await page.getByLabel("Nickname").fill("Grace");
    await page.getByLabel("Age").fill("85");
    await page.getByLabel("Day").fill("2024-12-09");
    await page.getByLabel("I agree").check();
    // Enter presses the primary button.
    await page.getByLabel("Nickname").press("Enter");
    await title(page, "Received");
    await status(page, "COMPLETED");
    await expectText(page.getByTestId("c-summary"), "Grace, 86 next year, grace@navy.mil, blue, 2024-12-09, agreed: yes");
    await snap("done");
  }),
);

// WAITING on a flow without backend steps: the first submit's real answer
// (the next screen) is swapped for a WAITING one with a pending screen, so
// the app must fetch the real state itself, from the real Baton's
// `sessionUpdated` or, when WebSockets are blocked, by polling. (The loan
// tests below wait for real mocked steps, over the subscription.)
const PENDING = {
  id: "pending",
  title: "Checking your details",
  components: [{ id: "wait-text", kind: "text", text: "This takes a moment." }],
  actions: [],
  errors: [],
  values: {},
  fallback: false,
  terminal: false,
};

async function answerWaitingOnce(page) {
  let done = false;
  await page.route("**/graphql", async (route) => {
    if (!done && route.request().postDataJSON()?.query?.startsWith("mutation Submit")) {
      done = true;
      const response = await route.fetch();
      const body = await response.json();
      body.data.submit = { ...body.data.submit, status: "WAITING", screen: PENDING };
      await route.fulfill({ response, body: JSON.stringify(body) });
      return;
    }
    await route.continue();
  });
}

async function passWaiting(page, snap, via, release = () => {}) {
  await button(page, "Get started").click();
  await status(page, "WAITING");
  await title(page, "Checking your details");
  await page.getByTestId("waiting").waitFor();
  assert.equal(await page.getByTestId("screen").getByRole("button").count(), 0, "a pending screen has no actions");
  assert.equal(await page.getByTestId("back").isHidden(), true, "no Back while waiting");
  await snap("pending");
  release();
  await title(page, "About you");
  await status(page, "ACTIVE");
  assert.equal(await page.getByTestId("waiting").isHidden(), true);
  const log = await page.evaluate(() => window.baton.log);
  assert.deepEqual(log.map((e) => `${e.via}:${e.status}:${e.screen}`), [
    "startFlow:ACTIVE:welcome",
    "submit:WAITING:pending",
    `${via}:ACTIVE:profile`,
  ]);
  // The app goes on normally afterwards.
  await page.getByLabel("Your name").fill("Ada");
  await button(page, "Skip for now").click();
  await status(page, "COMPLETED");
}

test("WAITING (simulated): pending screen, then the next screen from sessionUpdated", T, (t) =>
  // A poll interval longer than the test: only the subscription can deliver.
  withPage(t, { flow: "onboarding", user: "e2e-wait-ws", poll: "600000" }, async (page, snap) => {
    // The socket goes to the real Baton; its answers wait until the pending
    // screen has been checked.
    const hold = await holdSubscription(page);
    await answerWaitingOnce(page);
    await title(page, /^Welcome/);
    await passWaiting(page, snap, "subscription", hold.release);
  }),
);

test("WAITING (simulated), WebSockets blocked: polling `session` delivers the next screen", T, (t) =>
  withPage(t, { flow: "onboarding", user: "e2e-wait-poll", poll: "500" }, async (page, snap) => {
    // A proxy that accepts the socket and never answers: no connection_ack.
    await page.routeWebSocket(/\/graphql$/, () => {});
    await answerWaitingOnce(page);
    await title(page, /^Welcome/);
    await passWaiting(page, snap, "poll");
  }),
);

// The loan flow in mock mode, on a Baton started with `--mock` and a step
// budget of 0 (so a submit that starts backend steps always answers
// WAITING at once, instead of after waiting up to 2 s for 600 ms of mock
// latency): the credit check (`http`) and the underwriter (`approval`) run
// from their mocks while the app shows the pending screens, and the next
// screen arrives over `sessionUpdated`.

/**
 * Fills in the applicant's screens (with a validation error on the way) and
 * submits; checks the pending screen, which stays until `release()`.
 */
async function applyForLoan(page) {
  const hold = await holdSubscription(page);
  await title(page, "Apply for a loan");
  await expectText(page.locator(".markdown strong"), "1,000 to 50,000 EUR");
  await button(page, "Start application").click();
  await title(page, "About you");
  await page.getByLabel("Full name").fill("Ada Lovelace");
  await page.getByLabel("Date of birth").fill("2010-01-01");
  await page.getByLabel("E-mail").fill("ada@example.com");
  await button(page, "Continue").click();
  assert.equal((await fieldError(page, "birth_date")).code, "TOO_LATE");
  await page.getByLabel("Date of birth").fill("1990-12-10");
  await button(page, "Continue").click();
  await title(page, "Your loan");
  await page.getByLabel("Amount (EUR)").fill("500");
  await page.getByLabel("Term").selectOption("24");
  await button(page, "Continue").click();
  assert.equal((await fieldError(page, "amount")).code, "TOO_SMALL");
  await page.getByLabel("Amount (EUR)").fill("10000");
  await button(page, "Continue").click();
  await title(page, "Income");
  await page.getByLabel("Employment").selectOption("employed");
  await page.getByLabel("Monthly net income (EUR)").fill("4000");
  await page.getByLabel("I consent to a credit check").check();
  await button(page, "Submit application").click();

  await status(page, "WAITING");
  await title(page, "Checking your application");
  await page.getByText("One moment, Ada Lovelace. This usually takes a few seconds.").waitFor();
  await page.getByTestId("waiting").waitFor();
  assert.equal(await page.getByTestId("screen").getByRole("button").count(), 0, "a pending screen has no actions");
  assert.equal(await page.getByTestId("back").isHidden(), true, "no Back while waiting");
  return hold;
}

/** Holds back the subscription's `next` messages until `release()`, so a pending screen can be looked at. */
async function holdSubscription(page) {
  let released = false;
  let flush = () => {};
  await page.routeWebSocket(/\/graphql$/, (ws) => {
    const server = ws.connectToServer();
    const held = [];
    ws.onMessage((m) => server.send(m));
    server.onMessage((m) => (!released && JSON.parse(m).type === "next" ? held.push(m) : ws.send(m)));
    flush = () => held.splice(0).forEach((m) => ws.send(m));
  });
  return {
    release() {
      released = true;
      flush();
    },
  };
}

async function afterWaiting(page, expectedTitle) {
  await title(page, expectedTitle, 30_000);
  assert.equal(await page.getByTestId("waiting").isHidden(), true);
  const log = await page.evaluate(() => window.baton.log);
  const from = log.findIndex((e) => e.via === "submit" && e.status === "WAITING");
  assert.ok(from > 0, `the submit answered WAITING: ${JSON.stringify(log)}`);
  const after = log.slice(from + 1);
  assert.ok(after.length > 0 && after.every((e) => e.via === "subscription"), `then sessionUpdated only: ${JSON.stringify(log)}`);
}

const LOAN = { flow: "loan", user: "e2e-loan", poll: "600000" };

test("loan (mock, approved): pending screens while steps run, the offer via sessionUpdated, accepted", T, (t) =>
  withPage(t, { ...LOAN, scenario: "approved" }, async (page, snap) => {
    const pending = await applyForLoan(page);
    await snap("pending");
    pending.release();
    await afterWaiting(page, "Your offer");
    await page.getByRole("heading", { name: "10000 EUR over 24 months" }).waitFor();
    await page.getByText("Annual interest rate: 6.9%").waitFor();
    await snap("offer");
    await button(page, "Accept offer").click();
    await title(page, "Welcome aboard");
    await status(page, "COMPLETED");
    await page.getByText("Thanks, Ada Lovelace. Your contract is on its way to ada@example.com.").waitFor();
  }, mockBaton),
);

test("loan (mock, declined): a low score declines after the pending screen", T, (t) =>
  withPage(t, { ...LOAN, scenario: "declined" }, async (page) => {
    (await applyForLoan(page)).release();
    await afterWaiting(page, "We can't offer you a loan right now");
    await status(page, "COMPLETED");
  }, mockBaton),
);

test("loan (mock, credit_service_down): after the retries, the retry screen; saved for later", T, (t) =>
  withPage(t, { ...LOAN, scenario: "credit_service_down" }, async (page, snap) => {
    (await applyForLoan(page)).release();
    await afterWaiting(page, "We could not check your application");
    await status(page, "ACTIVE");
    await page.getByText("Nothing you entered is lost.", { exact: false }).waitFor();
    await snap("credit-down");
    await button(page, "Come back later").click();
    await title(page, "Saved for later");
    assert.equal(await page.getByTestId("back").isHidden(), true);
  }, mockBaton),
);

/** An admin call with the editor's key; fails on any GraphQL error. */
async function asEditor(query, variables) {
  const r = await fetch(`${previewBaton.url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": EDITOR_KEY },
    body: JSON.stringify({ query, variables }),
  });
  const body = await r.json();
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  return body.data;
}

const tourSource = (tip) => `id: e2e_tour
start: hello
nodes:
  - id: hello
    kind: screen
    title: Hello
    actions: [{ id: next, next: tips }]
  - id: tips
    kind: screen
    title: Tips
    components: [{ kind: text, id: tip, text: "${tip}" }]
    actions: [{ id: next, next: done }]
  - { id: done, kind: end, title: Bye }
`;
const SAVE_DRAFT = "mutation($i: SaveDraftInput!) { saveDraft(input: $i) { ok version { number } } }";

test("preview: a link opens a draft at any node, and saving the draft re-renders it live", T, async (t) => {
  const saved = await asEditor(SAVE_DRAFT, { i: { flowId: "e2e_tour", source: tourSource("Swipe left") } });
  assert.equal(saved.saveDraft.ok, true);
  const { startPreview: p } = await asEditor(
    "mutation($i: StartPreviewInput!) { startPreview(input: $i) { id token } }",
    { i: { flowId: "e2e_tour", node: "tips" } },
  );
  await withPage(
    t,
    { session: p.id, token: p.token },
    async (page, snap) => {
      await title(page, "Tips");
      await expectText(page.getByTestId("c-tip"), "Swipe left");
      await snap("preview");
      await asEditor(SAVE_DRAFT, { i: { flowId: "e2e_tour", source: tourSource("Swipe up") } });
      await expectText(page.getByTestId("c-tip"), "Swipe up");
      await snap("followed");
      const log = await page.evaluate(() => window.baton.log.map((e) => e.via));
      assert.equal(log[0], "resume");
      assert.ok(log.slice(1).some((v) => v === "subscription" || v === "poll"), JSON.stringify(log));
    },
    previewBaton,
  );
});
