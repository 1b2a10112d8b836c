// The parts of schema/baton.graphql this client reads, as the SESSION
// document in api.ts selects them.

export type SessionStatus = "ACTIVE" | "WAITING" | "COMPLETED" | "FAILED" | "EXPIRED";

export interface FlowSession {
  id: string;
  token?: string | null;
  flowId: string;
  flowVersion: number;
  status: SessionStatus;
  screen: Screen | null;
}

export interface Screen {
  id: string;
  title: string | null;
  components: Component[];
  actions: ScreenAction[];
  errors: FieldError[];
  values: Record<string, unknown>;
  fallback: boolean;
  terminal: boolean;
}

export interface ScreenAction {
  id: string;
  label: string | null;
  validates: boolean;
}

export interface FieldError {
  field: string | null;
  code: string;
  message: string;
}

interface Base {
  id: string | null;
}

export type Component =
  | (Base & { kind: "text"; text: string })
  | (Base & { kind: "heading"; text: string; level: number })
  | (Base & { kind: "markdown"; text: string })
  | (Base & { kind: "image"; url: string; alt: string | null })
  | (Base & {
      kind: "text_input";
      label: string;
      placeholder: string | null;
      required: boolean;
      maxLength: number | null;
      value: string | null;
    })
  | (Base & {
      kind: "number_input";
      label: string;
      required: boolean;
      min: number | null;
      max: number | null;
      integer: boolean;
      numberValue: number | null;
    })
  | (Base & {
      kind: "email_input";
      label: string;
      placeholder: string | null;
      required: boolean;
      value: string | null;
    })
  | (Base & {
      kind: "select";
      label: string;
      required: boolean;
      options: { value: string; label: string }[];
      value: string | null;
    })
  | (Base & { kind: "checkbox"; label: string; required: boolean; checked: boolean | null })
  | (Base & {
      kind: "date";
      label: string;
      required: boolean;
      minDate: string | null;
      maxDate: string | null;
      value: string | null;
    })
  | (Base & { kind: "button"; label: string; action: string; style: "PRIMARY" | "SECONDARY" | "LINK" })
  | (Base & { kind: "list"; ordered: boolean; children: Component[] })
  | (Base & { kind: "card"; title: string | null; children: Component[] })
  | (Base & { kind: "stack"; direction: "VERTICAL" | "HORIZONTAL"; children: Component[] })
  | (Base & { kind: "custom"; name: string; props: unknown });

export type ComponentKind = Component["kind"];

/** The core kinds this client renders: sent as `client.capabilities`. */
export const CORE_KINDS: Exclude<ComponentKind, "custom">[] = [
  "text",
  "heading",
  "image",
  "text_input",
  "number_input",
  "email_input",
  "select",
  "checkbox",
  "date",
  "button",
  "list",
  "card",
  "stack",
  "markdown",
];
