"""Real servers for endpoint tests, on loopback ports.

- TransformersServe: `transformers serve` (the real OpenAI-compatible server that ships with
  transformers) running the offline SmolLM2 folder on CPU, as a separate process that a test can
  SIGKILL mid-stream and start again.
- FaultServer: a small stdlib HTTP server for the failure codes a real server gives only under
  conditions we cannot set up here: 401 (echoing the key it got, as some servers do), 429, a
  response slower than the client's timeout, and a stream cut off mid-answer. The model name picks
  the behaviour; "ok" streams a short real SSE answer.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smollm_folder() -> Path:
    """The converted SmolLM2-135M-Instruct folder (converted once from the package GGUF)."""
    from billion.core import weights
    from billion.core.registry import resolve

    return weights.ensure_converted(weights.package_gguf_path(resolve("smollm2-135m")))


@dataclass
class TransformersServe:
    """`transformers serve <folder>` on a loopback port; the model is loaded before it answers."""

    folder: Path
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model(self) -> str:
        return str(self.folder)  # transformers serve names a local model by its path

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout_s: float = 180.0) -> "TransformersServe":
        cli = Path(sys.executable).with_name("transformers")
        # one torch thread: two lose many times over while another process holds one of 2 shared cores
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "OMP_NUM_THREADS": "1"}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(cli), "serve", self.model, "--host", "127.0.0.1", "--port", str(self.port),
                 "--device", "cpu", "--dtype", "float32", "--log-level", "warning"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"transformers serve exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"transformers serve did not start: {self.log.read_text()[-2000:]}")

    def ensure_running(self) -> "TransformersServe":
        return self if self.alive() else self.start()

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would end it."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def sse(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def chunk(content: str | None, finish: str | None = None) -> dict:
    delta = {"content": content} if content is not None else {}
    return {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


class _FaultHandler(BaseHTTPRequestHandler):
    server: "FaultServer"

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        self.server.seen_auth.append(self.headers.get("authorization", ""))
        mode = body.get("model", "")
        if mode == "unauthorized":
            # Some servers echo the key they refused (OpenAI masks it; others do not).
            key = self.headers.get("authorization", "").removeprefix("Bearer ")
            return self._json(401, {"error": {"message": f"Incorrect API key provided: {key}",
                                              "type": "invalid_request_error"}})
        if mode == "ratelimited":
            self.server.rate_limited += 1
            return self._json(429, {"error": {"message": "Too many requests"}}, {"retry-after": "0"})
        if mode == "slow":
            time.sleep(self.server.slow_s)
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        pieces = ["Hello", " from", " the", " fault", " server."]
        for piece in pieces[: 2 if mode == "cut" else len(pieces)]:
            self.wfile.write(sse(chunk(piece)))
            self.wfile.flush()
        if mode == "cut":  # the process dies mid-answer: the socket closes, no [DONE]
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(sse(chunk(None, "stop")) + b"data: [DONE]\n\n")

    def _json(self, code: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        for name, value in {"content-type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FaultServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, slow_s: float = 3.0):
        super().__init__(("127.0.0.1", 0), _FaultHandler)
        self.slow_s = slow_s
        self.seen_auth: list[str] = []
        self.rate_limited = 0
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def handle_error(self, request, client_address) -> None:
        import sys as _sys

        if not isinstance(_sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)  # a client that gave up is expected

    def __enter__(self) -> "FaultServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


class _LogprobHandler(BaseHTTPRequestHandler):
    server: "LogprobServer"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        if not self.path.endswith("/completions") or "chat" in self.path:
            return self._reply(404, {"error": {"message": "not found"}})
        payload = self.server.completion(body["prompt"], int(body.get("max_tokens", 1)))
        self._reply(200, payload)

    def _reply(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class LogprobServer(ThreadingHTTPServer):
    """/v1/completions with `echo` + `logprobs` as vLLM answers it, computed by a real (tiny)
    transformers model: the prompt's tokens with their log-probabilities and character offsets,
    then one greedy token."""

    daemon_threads = True

    def __init__(self, model, tokenizer):
        super().__init__(("127.0.0.1", 0), _LogprobHandler)
        self.model, self.tokenizer = model, tokenizer
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def completion(self, prompt: str, max_tokens: int) -> dict:
        import torch

        encoded = self.tokenizer(prompt, return_offsets_mapping=True)
        ids, offsets = encoded["input_ids"], [start for start, _ in encoded["offset_mapping"]]
        with torch.no_grad():
            logits = self.model(input_ids=torch.tensor([ids])).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        values = [None] + [float(logprobs[i - 1, ids[i]]) for i in range(1, len(ids))]
        tokens = [self.tokenizer.decode([i]) for i in ids]
        if max_tokens > 0:
            nxt = int(logprobs[-1].argmax())
            tokens.append(self.tokenizer.decode([nxt]))
            values.append(float(logprobs[-1, nxt]))
            offsets.append(len(prompt))
        text = "".join(tokens[len(ids):])
        return {"id": "c", "object": "text_completion", "created": 0, "model": "tiny",
                "choices": [{"index": 0, "text": prompt + text, "finish_reason": "length",
                             "logprobs": {"tokens": tokens, "token_logprobs": values,
                                          "text_offset": offsets, "top_logprobs": None}}]}

    def __enter__(self) -> "LogprobServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
