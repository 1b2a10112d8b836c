// A JsonLogic rule as text a product manager reads, and the small rules
// the condition builder writes.

type Rule = unknown;

const INFIX: Record<string, string> = {
  "==": "=", "===": "=", "!=": "≠", "!==": "≠", "<": "<", "<=": "≤", ">": ">", ">=": "≥",
  "+": "+", "-": "−", "*": "×", "/": "÷", "%": "mod",
};

function literal(v: unknown): string {
  return typeof v === "string" ? `"${v}"` : JSON.stringify(v);
}

export function ruleText(rule: Rule, nested = false): string {
  if (rule === null || typeof rule !== "object") return literal(rule);
  if (Array.isArray(rule)) return `[${rule.map((r) => ruleText(r, true)).join(", ")}]`;
  const entries = Object.entries(rule as Record<string, unknown>);
  if (entries.length !== 1) return JSON.stringify(rule);
  const [op, raw] = entries[0];
  const args = Array.isArray(raw) ? raw : [raw];
  const wrap = (s: string) => (nested ? `(${s})` : s);
  if (op === "var") return String(args[0] ?? "data");
  if (op === "missing") return `${args.map((a) => ruleText(a, true)).join(", ")} missing`;
  if (op === "!") return `not ${ruleText(args[0], true)}`;
  if (op === "!!") return `${ruleText(args[0], true)} is set`;
  if (op === "and" || op === "or") return wrap(args.map((a) => ruleText(a, true)).join(` ${op} `));
  if (op === "in") return wrap(`${ruleText(args[0], true)} in ${ruleText(args[1], true)}`);
  if (op === "if") return wrap(`if ${ruleText(args[0], true)} then ${ruleText(args[1], true)} else ${ruleText(args[2], true)}`);
  if (op in INFIX && args.length === 3 && (op === "<" || op === "<=")) {
    return wrap(`${ruleText(args[0], true)} ${INFIX[op]} ${ruleText(args[1], true)} ${INFIX[op]} ${ruleText(args[2], true)}`);
  }
  if (op in INFIX && args.length === 2) return wrap(`${ruleText(args[0], true)} ${INFIX[op]} ${ruleText(args[1], true)}`);
  return `${op}(${args.map((a) => ruleText(a, true)).join(", ")})`;
}

export interface Condition {
  path: string;
  op: "==" | "!=" | "<" | "<=" | ">" | ">=" | "in";
  value: string;
}

/** A typed value from what was typed: numbers and booleans as such, else text. */
export function parseValue(text: string): unknown {
  const t = text.trim();
  if (t === "true" || t === "false") return t === "true";
  if (t !== "" && !Number.isNaN(Number(t))) return Number(t);
  return t;
}

export function buildRule(conditions: Condition[], join: "and" | "or"): Rule | null {
  const parts = conditions
    .filter((c) => c.path.trim() !== "")
    .map((c) => {
      const value = c.op === "in" ? c.value.split(",").map((v) => parseValue(v)) : parseValue(c.value);
      return { [c.op]: [{ var: c.path.trim() }, value] };
    });
  if (parts.length === 0) return null;
  return parts.length === 1 ? parts[0] : { [join]: parts };
}
