// Replaces codemirror-json-schema's markdown renderer (markdown-it with the
// shiki highlighter, ~400 KB) in the bundle: schema descriptions show as
// escaped plain text in completions.
const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export function renderMarkdown(markdown) {
  return String(markdown ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);
}
