#!/usr/bin/env python3
"""A stand-in for an OpenAI-compatible chat-completions server, to run the
support example (flows/support.yaml) without a model:

    python3 client-examples/fake-llm/fake_llm.py 18099
    cargo run -- --llm-url http://127.0.0.1:18099/v1 --llm-model fake \
        --allow-hosts 127.0.0.1:18099

It sorts a request by keywords (charged/refund: billing, password/login:
account, crash/error: bug, else other) and, as the judge, approves unless
the request says "not sure" (then it is unsure, and an agent reviews the
answer). Standard library only; it listens on 127.0.0.1.
"""

import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEYWORDS = [
    (("charged", "refund", "invoice"), "billing"),
    (("password", "login", "account"), "account"),
    (("crash", "error", "broken"), "bug"),
]


def sort(request):
    text = request.lower()
    category = next((c for words, c in KEYWORDS if any(w in text for w in words)), "other")
    urgency = 4 if "urgent" in text else 2
    return {"category": category, "urgency": urgency, "summary": request.strip()[:200]}


def answer(messages):
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    prompt = messages[-1]["content"]
    if "You review another model's answer" in system:
        if "not sure" in prompt.lower():
            return {"verdict": "unsure", "reason": "the request is vague"}
        return {"verdict": "approve", "reason": "the category fits"}
    # The request is what the flow's prompt quotes after the colon.
    request = re.split(r":\s*", prompt, maxsplit=1)[-1]
    return sort(request)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        if not self.path.endswith("/chat/completions"):
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        content = json.dumps(answer(body["messages"]))
        reply = json.dumps({
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(json.dumps(body)) // 4,
                      "completion_tokens": len(content) // 4,
                      "total_tokens": (len(json.dumps(body)) + len(content)) // 4},
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 18099
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"fake LLM on http://127.0.0.1:{server.server_port}/v1", flush=True)
    server.serve_forever()
