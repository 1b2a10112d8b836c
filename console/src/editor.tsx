// The source editor: CodeMirror with YAML, completion from the flow JSON
// Schema (schema/flow.schema.json, the one `baton schema` writes), and the
// server's validation issues as diagnostics at their line and column.

import { setDiagnostics, lintGutter, type Diagnostic } from "@codemirror/lint";
import { yaml, yamlLanguage } from "@codemirror/lang-yaml";
import { EditorState } from "@codemirror/state";
import { EditorView } from "@codemirror/view";
import { basicSetup } from "codemirror";
import { stateExtensions } from "codemirror-json-schema";
import { yamlCompletion } from "codemirror-json-schema/yaml";
import { useEffect, useRef } from "react";
import flowSchema from "../../schema/flow.schema.json";
import type { Issue } from "./api";

export function SourceEditor(props: { value: string; onChange: (text: string) => void; issues: Issue[]; readOnly?: boolean }) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const onChange = useRef(props.onChange);
  onChange.current = props.onChange;

  useEffect(() => {
    const v = new EditorView({
      parent: host.current!,
      state: EditorState.create({
        doc: props.value,
        extensions: [
          basicSetup,
          yaml(),
          yamlLanguage.data.of({ autocomplete: yamlCompletion() }),
          stateExtensions(flowSchema as unknown as Parameters<typeof stateExtensions>[0]),
          lintGutter(),
          EditorState.readOnly.of(props.readOnly ?? false),
          EditorView.contentAttributes.of({ "aria-label": "Flow source (YAML)" }),
          EditorView.updateListener.of((u) => {
            if (u.docChanged) onChange.current(u.state.doc.toString());
          }),
        ],
      }),
    });
    view.current = v;
    return () => v.destroy();
    // The editor is made once; later values arrive through the effect below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  useEffect(() => {
    const v = view.current;
    if (v && v.state.doc.toString() !== props.value) {
      v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: props.value } });
    }
  }, [props.value]);

  useEffect(() => {
    const v = view.current;
    if (!v) return;
    const doc = v.state.doc;
    const diagnostics: Diagnostic[] = props.issues.map((i) => {
      const line = i.line && i.line <= doc.lines ? doc.line(i.line) : doc.line(1);
      const from = Math.min(line.from + Math.max((i.column ?? 1) - 1, 0), line.to);
      return {
        from,
        to: line.to,
        severity: i.severity === "ERROR" ? "error" : "warning",
        message: `${i.code}: ${i.message}${i.hint ? ` (${i.hint})` : ""}`,
      };
    });
    v.dispatch(setDiagnostics(v.state, diagnostics));
  }, [props.issues]);

  return <div className="editor" ref={host} data-testid="source-editor" />;
}
