// Renders any Baton screen from its component tree. Nothing here knows a
// particular flow: a new screen in flows/ shows up without a client change.

import { renderMarkdown } from "./markdown";
import type { Component, FieldError, Screen } from "./types";

export type Values = Record<string, unknown>;

export interface RenderOptions {
  /** Values to show in the inputs, by component id (mutated as the user types). */
  values: Values;
  /** Whether the user may act now (false while a request is in flight). */
  enabled: boolean;
  onAction(action: string): void;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<Record<string, string>> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value !== undefined) node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

/** The ids of every input on the screen, in tree order. */
export function inputIds(components: Component[]): string[] {
  const ids: string[] = [];
  const visit = (c: Component) => {
    if ("children" in c && Array.isArray(c.children)) c.children.forEach(visit);
    else if (c.id && isInput(c)) ids.push(c.id);
  };
  components.forEach(visit);
  return ids;
}

function isInput(c: Component): boolean {
  return ["text_input", "number_input", "email_input", "select", "checkbox", "date"].includes(c.kind);
}

/**
 * The value each input shows: Baton's (what was typed, echoed after a failed
 * submit or stored and given back on Back), else what the user typed here
 * before without Baton keeping it (say, before a "skip" that does not
 * validate). An untouched checkbox is `false`: that is what it shows.
 */
export function initialValues(screen: Screen, draft: Values | undefined): Values {
  const out: Values = { ...screen.values };
  const visit = (c: Component) => {
    if ("children" in c && Array.isArray(c.children)) c.children.forEach(visit);
    if (!c.id) return;
    const server =
      c.kind === "number_input" ? c.numberValue
      : c.kind === "checkbox" ? c.checked
      : "value" in c ? c.value
      : undefined;
    if (server !== undefined && server !== null) out[c.id] = server;
    if (draft && c.id in draft && (out[c.id] === undefined || out[c.id] === null)) out[c.id] = draft[c.id];
    if (c.kind === "checkbox" && typeof out[c.id] !== "boolean") out[c.id] = false;
  };
  screen.components.forEach(visit);
  return out;
}

export function renderScreen(screen: Screen, opts: RenderOptions): HTMLElement {
  const form = el("form", { "data-testid": "screen", "data-screen-id": screen.id, novalidate: "" });
  // Enter in a field presses the screen's first primary button. (The
  // buttons are not submit buttons, so the browser's own implicit
  // submission does not apply to a form with several fields.)
  form.addEventListener("submit", (e) => e.preventDefault());
  form.addEventListener("keydown", (e) => {
    const target = e.target;
    if (e.key !== "Enter" || !(target instanceof HTMLInputElement) || target.type === "checkbox") return;
    e.preventDefault();
    form.querySelector<HTMLButtonElement>('button[data-style="PRIMARY"]:not(:disabled)')?.click();
  });
  if (screen.title) form.append(el("h1", { "data-testid": "screen-title" }, screen.title));

  const fieldErrors = new Map<string, FieldError[]>();
  const screenErrors: FieldError[] = [];
  for (const e of screen.errors) {
    if (e.field) fieldErrors.set(e.field, [...(fieldErrors.get(e.field) ?? []), e]);
    else screenErrors.push(e);
  }
  // An error about a field this screen does not show still must be seen.
  const shown = new Set(inputIds(screen.components));
  for (const [field, errs] of fieldErrors) {
    if (!shown.has(field)) screenErrors.push(...errs);
  }
  if (screenErrors.length) {
    form.append(
      el(
        "div",
        { role: "alert", class: "screen-errors", "data-testid": "screen-errors" },
        ...screenErrors.map((e) => el("p", { "data-code": e.code }, e.message)),
      ),
    );
  }

  const ctx: Ctx = { ...opts, fieldErrors, buttons: new Set() };
  for (const c of screen.components) form.append(component(c, ctx));

  // Actions no button triggers (the contract allows it) still need a way in.
  const orphans = screen.actions.filter((a) => !ctx.buttons.has(a.id));
  if (orphans.length) {
    form.append(
      el(
        "div",
        { class: "actions" },
        ...orphans.map((a) => button(a.label ?? a.id, a.id, "SECONDARY", ctx)),
      ),
    );
  }
  return form;
}

interface Ctx extends RenderOptions {
  fieldErrors: Map<string, FieldError[]>;
  buttons: Set<string>;
}

function component(c: Component, ctx: Ctx): HTMLElement {
  const testid = c.id ? { "data-testid": `c-${c.id}` } : {};
  switch (c.kind) {
    case "text":
      return el("p", { class: "text", ...testid }, c.text);
    case "heading": {
      const level = Math.min(6, Math.max(1, c.level + 1)); // h1 is the screen title
      return el(`h${level}` as "h2", { class: "heading", ...testid }, c.text);
    }
    case "markdown": {
      const md = renderMarkdown(c.text);
      md.className = "markdown";
      if (c.id) md.dataset.testid = `c-${c.id}`;
      return md;
    }
    case "image":
      return el("img", { src: c.url, alt: c.alt ?? "", class: "image", loading: "lazy", ...testid });
    case "text_input":
    case "email_input":
      return field(c.id, c.label, ctx, (id) => {
        const input = el("input", {
          id,
          type: c.kind === "email_input" ? "email" : "text",
          placeholder: c.placeholder ?? undefined,
          maxlength: c.kind === "text_input" && c.maxLength != null ? String(c.maxLength) : undefined,
          autocomplete: c.kind === "email_input" ? "email" : "off",
        });
        input.value = str(ctx.values[c.id ?? ""]);
        input.addEventListener("input", () => set(ctx, c.id, input.value || null));
        return input;
      }, c.required);
    case "number_input":
      return field(c.id, c.label, ctx, (id) => {
        const input = el("input", {
          id,
          type: "number",
          inputmode: c.integer ? "numeric" : "decimal",
          step: c.integer ? "1" : "any",
          min: c.min != null ? String(c.min) : undefined,
          max: c.max != null ? String(c.max) : undefined,
        });
        input.value = str(ctx.values[c.id ?? ""]);
        // Sent as a JSON number; a half-typed "1e" has no number and is sent as null.
        input.addEventListener("input", () =>
          set(ctx, c.id, input.value === "" || Number.isNaN(input.valueAsNumber) ? null : input.valueAsNumber),
        );
        return input;
      }, c.required);
    case "date":
      return field(c.id, c.label, ctx, (id) => {
        const input = el("input", {
          id,
          type: "date",
          min: c.minDate ?? undefined,
          max: c.maxDate ?? undefined,
        });
        input.value = str(ctx.values[c.id ?? ""]);
        input.addEventListener("input", () => set(ctx, c.id, input.value || null));
        return input;
      }, c.required);
    case "select":
      return field(c.id, c.label, ctx, (id) => {
        const current = str(ctx.values[c.id ?? ""]);
        const select = el(
          "select",
          { id },
          el("option", { value: "" }, "Choose…"),
          ...c.options.map((o) => el("option", { value: o.value }, o.label)),
        );
        select.value = current;
        select.addEventListener("change", () => set(ctx, c.id, select.value || null));
        return select;
      }, c.required);
    case "checkbox": {
      const id = `f-${c.id}`;
      const input = el("input", { id, type: "checkbox", "data-testid": `input-${c.id}` });
      input.checked = ctx.values[c.id ?? ""] === true;
      input.addEventListener("change", () => set(ctx, c.id, input.checked));
      ariaRequired(input, c.required);
      const wrap = el("div", { class: "field checkbox" }, el("label", { for: id }, input, " ", c.label));
      return withErrors(wrap, input, c.id, ctx);
    }
    case "button":
      ctx.buttons.add(c.action);
      return button(c.label, c.action, c.style, ctx);
    case "list": {
      const list = el(c.ordered ? "ol" : "ul", { class: "list", ...testid });
      for (const child of c.children ?? []) list.append(el("li", {}, component(child, ctx)));
      return list;
    }
    case "card": {
      const card = el("section", { class: "card", ...testid });
      if (c.title) card.append(el("h2", { class: "card-title" }, c.title));
      for (const child of c.children ?? []) card.append(component(child, ctx));
      return card;
    }
    case "stack": {
      const stack = el("div", { class: `stack ${c.direction === "HORIZONTAL" ? "row" : "column"}`, ...testid });
      for (const child of c.children ?? []) stack.append(component(child, ctx));
      return stack;
    }
    case "custom":
      // Only reached if the server sent a custom kind we did not advertise.
      return el(
        "div",
        { class: "custom", "data-testid": `custom-${c.name}`, role: "note" },
        `This app cannot show “${c.name}”.`,
      );
    default: {
      // A kind newer than this client, or nested deeper than the query selects.
      const kind = (c as { kind: string }).kind;
      return el("div", { class: "custom", "data-testid": `unknown-${kind}`, role: "note" }, `Unsupported component: ${kind}`);
    }
  }
}

function button(label: string, action: string, style: string, ctx: Ctx): HTMLButtonElement {
  const b = el("button", { type: "button", class: `button ${style.toLowerCase()}`, "data-style": style, "data-action": action }, label);
  b.disabled = !ctx.enabled;
  b.addEventListener("click", () => ctx.onAction(action));
  return b;
}

function field(
  componentId: string | null,
  label: string,
  ctx: Ctx,
  make: (id: string) => HTMLInputElement | HTMLSelectElement,
  required: boolean,
): HTMLElement {
  const id = `f-${componentId}`;
  const input = make(id);
  input.dataset.testid = `input-${componentId}`;
  input.name = componentId ?? "";
  ariaRequired(input, required);
  const wrap = el("div", { class: "field" }, el("label", { for: id }, label, required ? el("span", { class: "req", "aria-hidden": "true" }, " *") : ""), input);
  return withErrors(wrap, input, componentId, ctx);
}

function ariaRequired(input: HTMLElement, required: boolean): void {
  // Not the `required` attribute: the browser would then block submits the
  // server should judge (and a "skip" action that does not validate at all).
  if (required) input.setAttribute("aria-required", "true");
}

function withErrors(wrap: HTMLElement, input: HTMLElement, componentId: string | null, ctx: Ctx): HTMLElement {
  const errors = componentId ? ctx.fieldErrors.get(componentId) : undefined;
  if (errors?.length) {
    const errId = `err-${componentId}`;
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", errId);
    wrap.classList.add("invalid");
    wrap.append(
      el("p", { id: errId, class: "field-error", "data-testid": `error-${componentId}`, "data-code": errors[0].code }, errors.map((e) => e.message).join(" ")),
    );
  }
  return wrap;
}

function set(ctx: Ctx, id: string | null, value: unknown): void {
  if (id) ctx.values[id] = value;
}

function str(v: unknown): string {
  return v === undefined || v === null ? "" : String(v);
}
