// The selection of a session and its screen, shared by this client and
// the console (console/), which renders previews with this renderer.

// GraphQL has no recursive fragments, so the component tree is selected to
// a fixed depth: top-level components and two levels of children (a list
// in a card, say). Each level selects every container type's children, so
// the query's cost triples per level, and a third level would pass Baton's
// default complexity limit (1000). Anything deeper arrives as `kind` only
// and renders as a placeholder.
const FIELDS = `
  id kind
  ... on TextComponent { text }
  ... on HeadingComponent { text level }
  ... on MarkdownComponent { text }
  ... on ImageComponent { url alt }
  ... on TextInputComponent { label placeholder required maxLength value }
  ... on NumberInputComponent { label required min max integer numberValue }
  ... on EmailInputComponent { label placeholder required value }
  ... on SelectComponent { label required value options { value label } }
  ... on CheckboxComponent { label required checked }
  ... on DateComponent { label required minDate maxDate value }
  ... on ButtonComponent { label action style }
  ... on CustomComponent { name props }
  ... on CardComponent { title }
  ... on ListComponent { ordered }
  ... on StackComponent { direction }`;

function tree(depth: number): string {
  if (depth === 0) return `{ ...C }`;
  const children = tree(depth - 1);
  return `{ ...C
    ... on CardComponent { children ${children} }
    ... on ListComponent { children ${children} }
    ... on StackComponent { children ${children} } }`;
}

/** Every field of one component, without children (`...C`). */
export const COMPONENT = `fragment C on Component { ${FIELDS} }`;

export const SESSION = `
fragment S on FlowSession {
  id token flowId flowVersion status
  screen {
    id title values fallback terminal
    actions { id label validates }
    errors { field code message }
    components ${tree(2)}
  }
}
${COMPONENT}`;
