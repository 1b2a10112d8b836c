// A small CommonMark subset built as DOM nodes: paragraphs, `-`/`*` and
// `1.` lists, **strong**, *em* / _em_, `code` and [links](https://…).
// Every piece of text goes through a text node, never innerHTML, so flow
// authors' (or users' templated) text cannot inject markup; anything this
// does not understand shows as the literal characters.

const INLINE = /(\*\*([^*]+)\*\*|__([^_]+)__|\*([^*\s][^*]*)\*|_([^_\s][^_]*)_|`([^`]+)`|\[([^\]]+)\]\(([^)\s]+)\))/;

function inline(text: string, into: HTMLElement): void {
  let rest = text;
  for (let m = INLINE.exec(rest); m; m = INLINE.exec(rest)) {
    if (m.index > 0) into.append(rest.slice(0, m.index));
    const [whole, , strong, strong2, em, em2, code, linkText, href] = m;
    if (strong ?? strong2) {
      const el = document.createElement("strong");
      inline(strong ?? strong2, el);
      into.append(el);
    } else if (em ?? em2) {
      const el = document.createElement("em");
      inline(em ?? em2, el);
      into.append(el);
    } else if (code !== undefined) {
      const el = document.createElement("code");
      el.textContent = code;
      into.append(el);
    } else if (/^https?:\/\//i.test(href)) {
      // Only web links: a `javascript:` URL would run code on click.
      const a = document.createElement("a");
      a.href = href;
      a.rel = "noopener noreferrer";
      a.target = "_blank";
      inline(linkText, a);
      into.append(a);
    } else {
      into.append(whole);
    }
    rest = rest.slice(m.index + whole.length);
  }
  if (rest) into.append(rest);
}

export function renderMarkdown(source: string): HTMLElement {
  const root = document.createElement("div");
  for (const block of source.split(/\n\s*\n/)) {
    const lines = block.split("\n").filter((l) => l.trim() !== "");
    if (lines.length === 0) continue;
    const bullet = lines.every((l) => /^\s*[-*]\s+/.test(l));
    const numbered = lines.every((l) => /^\s*\d+[.)]\s+/.test(l));
    if (bullet || numbered) {
      const list = document.createElement(numbered ? "ol" : "ul");
      for (const line of lines) {
        const li = document.createElement("li");
        inline(line.replace(/^\s*(?:[-*]|\d+[.)])\s+/, ""), li);
        list.append(li);
      }
      root.append(list);
    } else {
      const p = document.createElement("p");
      inline(lines.join(" "), p);
      root.append(p);
    }
  }
  return root;
}
