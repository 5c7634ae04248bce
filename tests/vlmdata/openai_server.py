"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks (stdlib only).

Speaks GET /v1/models, POST /v1/chat/completions (image parts too, returns usage), the files API
(multipart upload, content download) and batches (validating → in_progress → completed on polls).
What it answers is decided by `server.rule(prompt_text, attempt) -> Reply` (attempt = how many times
this exact request body was seen before), so a test can script 429s, 500s, hangs, garbage, truncation;
`server.body_rule(body, attempt) -> Reply`, when set, is asked instead and sees the whole request (model,
seed, temperature), e.g. to answer a candidate model and a judge model differently. `by_model` counts
chat requests per model (online and in batches).
A response the client gave up on (it disconnected during the delay, e.g. `kill -9`) is counted as
`abandoned`, not `answered`: that is how a test checks no answer is ever paid for twice.
"""

from __future__ import annotations

import hashlib
import json
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    text: str = "Question: What is shown?\n===\nAnswer: A test image."
    finish_reason: str = "stop"
    status: int = 200
    retry_after: float | None = None
    delay: float | None = None
    hang: bool = False
    garbage: bool = False
    refusal: str | None = None
    usage: tuple[int, int] | None = None
    drip_s: float | None = None  # send the (200) answer one byte every drip_s seconds


def prompt_text(body: dict[str, Any]) -> str:
    out = []
    for m in body.get("messages", []):
        content = m.get("content")
        if isinstance(content, str):
            out.append(content)
        else:
            out += [p.get("text", "") for p in content if p.get("type") == "text"]
    return "\n".join(out)


class FakeOpenAI:
    def __init__(self, *, delay: float = 0.0, api_key: str | None = None) -> None:
        self.delay = delay
        self.api_key = api_key
        self.rule: Callable[[str, int], Reply] = lambda text, attempt: Reply()
        self.body_rule: Callable[[dict[str, Any], int], Reply] | None = None
        self.by_model: Counter[str] = Counter()
        self.batch_steps = ["validating", "in_progress", "completed"]
        self.hold_batches = False
        self.drop_batch_create = 0  # create the next N batches, then close the connection without answering
        self.lock = threading.RLock()
        self.counts: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()  # per request-body hash
        self.answered: Counter[str] = Counter()
        self.abandoned = 0
        # hold_after=N: once N chat answers were given, later chat requests wait unanswered and `holding` is
        # set, so a test can kill the client while a request is surely in flight (no timing window under load)
        self.hold_after: int | None = None
        self.holding = threading.Event()
        self.image_parts = 0
        self.bodies: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.httpd = _Server(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        usage = reply.usage or (len(json.dumps(body["messages"])) // 4, len(reply.text) // 4 + 1)
        return {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                "choices": [{"index": 0, "finish_reason": reply.finish_reason,
                             "message": {"role": "assistant", "content": reply.text, "refusal": reply.refusal}}],
                "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}}

    def decide(self, body: dict[str, Any]) -> Reply:
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        with self.lock:
            attempt = self.attempts[digest]
            self.attempts[digest] += 1
            self.bodies.append(body)
            self.image_parts += sum(1 for m in body["messages"] if isinstance(m["content"], list)
                                    for p in m["content"] if p.get("type") == "image_url")
            self.by_model[str(body.get("model"))] += 1
        if self.body_rule is not None:
            return self.body_rule(body, attempt)
        return self.rule(prompt_text(body), attempt)

    def batch_view(self, batch_id: str, *, poll: bool) -> dict[str, Any]:
        b = self.batches[batch_id]
        if poll and not self.hold_batches:
            b["polls"] += 1
        status = self.batch_steps[min(b["polls"], len(self.batch_steps) - 1)]
        if status == "completed" and b["output_file_id"] is None:
            self._run_batch(b)
        return {"id": batch_id, "object": "batch", "endpoint": b["endpoint"], "completion_window": "24h",
                "created_at": b["created_at"], "input_file_id": b["input_file_id"], "status": status,
                "output_file_id": b["output_file_id"] if status == "completed" else None,
                "error_file_id": b["error_file_id"] if status == "completed" else None,
                "request_counts": {"total": b["n"], "completed": 0, "failed": 0}, "metadata": b.get("metadata")}

    def _run_batch(self, b: dict[str, Any]) -> None:
        out, err = [], []
        for line in self.files[b["input_file_id"]].decode().splitlines():
            item = json.loads(line)
            reply = self.decide(item["body"])
            self.counts["batch_request"] += 1
            if reply.status == 200:
                out.append({"id": "r", "custom_id": item["custom_id"], "error": None,
                            "response": {"status_code": 200, "body": self.completion(item["body"], reply)}})
            else:
                err.append({"id": "r", "custom_id": item["custom_id"], "error": None, "response": {
                    "status_code": reply.status, "body": {"error": {"message": f"scripted {reply.status}"}}}})
        for key, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                fid = f"file-{len(self.files)}"
                self.files[fid] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                b[key] = fid


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the default backlog of 5 refuses connections at concurrency 64


def _client_gone(conn: socket.socket) -> bool:
    readable, _, _ = select.select([conn], [], [], 0)
    if not readable:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _handler(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: Any, *, headers: dict[str, str] | None = None, raw: bytes | None = None) -> None:
            data = raw if raw is not None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _authorized(self) -> bool:
            if server.api_key is None or self.headers.get("Authorization") == f"Bearer {server.api_key}":
                return True
            self._send(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                       "code": "invalid_api_key"}})
            return False

        def _wait(self, seconds: float) -> bool:
            """Sleep, watching the socket; False when the client went away meanwhile."""
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                readable, _, _ = select.select([self.connection], [], [], left)  # wakes on EOF or deadline
                if readable:
                    if _client_gone(self.connection):
                        return False
                    time.sleep(min(0.01, left))
            return True

        def do_GET(self) -> None:  # noqa: N802
            if not self._authorized():
                return
            with server.lock:
                server.counts[f"GET {self.path.split('/')[2] if self.path.count('/') > 1 else self.path}"] += 1
            if self.path == "/_stats":  # for a server run in another process (benchmarks)
                self._send(200, dict(server.counts))
            elif self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0,
                                                            "owned_by": "test"}]})
            elif self.path.startswith("/v1/files/") and self.path.endswith("/content"):
                fid = self.path.split("/")[3]
                self._send(200, None, raw=server.files[fid])
            elif self.path.split("?")[0] == "/v1/batches":
                with server.lock:
                    data = [server.batch_view(bid, poll=False) for bid in reversed(list(server.batches))]
                self._send(200, {"object": "list", "data": data, "has_more": False,
                                 "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})
            elif self.path.startswith("/v1/batches/"):
                with server.lock:
                    view = server.batch_view(self.path.split("/")[3], poll=True)
                self._send(200, view)
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:  # noqa: N802
            raw = self._body()
            if not self._authorized():
                return
            if self.path == "/v1/chat/completions":
                self._chat(json.loads(raw))
            elif self.path == "/v1/files":
                self._upload(raw)
            elif self.path == "/v1/batches":
                req = json.loads(raw)
                with server.lock:
                    server.counts["batches_created"] += 1
                    bid = f"batch_{len(server.batches)}"
                    server.batches[bid] = {"endpoint": req["endpoint"], "input_file_id": req["input_file_id"],
                                           "created_at": int(time.time()), "polls": 0, "output_file_id": None,
                                           "error_file_id": None, "n": len(server.files[req["input_file_id"]].splitlines()),
                                           "metadata": req.get("metadata")}
                    view = server.batch_view(bid, poll=False)
                    drop = server.drop_batch_create > 0
                    server.drop_batch_create -= drop
                if drop:  # the batch exists, the client never hears of it (as if killed before the ledger write)
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._send(200, view)
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def _chat(self, body: dict[str, Any]) -> None:
            with server.lock:
                server.counts["chat"] += 1
            reply = server.decide(body)
            if server.hold_after is not None and sum(server.answered.values()) >= server.hold_after:
                server.holding.set()
                while server.hold_after is not None:
                    if not self._wait(0.05):
                        with server.lock:
                            server.abandoned += 1
                        return
            if not self._wait(reply.delay if reply.delay is not None else server.delay) or (
                    reply.hang and not self._wait(30)):
                with server.lock:
                    server.abandoned += 1
                return
            if reply.garbage:
                self._send(200, None, raw=b"<html>upstream exploded</html>")
            elif reply.status != 200:
                headers = {"Retry-After": str(reply.retry_after)} if reply.retry_after is not None else {}
                self._send(reply.status, {"error": {"message": f"scripted {reply.status}", "type": "test"}}, headers=headers)
            elif reply.drip_s is not None:
                data = json.dumps(server.completion(body, reply)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                for i in range(len(data)):
                    try:
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                    except OSError:
                        with server.lock:
                            server.abandoned += 1
                        return
                    time.sleep(reply.drip_s)
            else:
                self._send(200, server.completion(body, reply))
                with server.lock:
                    server.answered[hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()] += 1

        def _upload(self, raw: bytes) -> None:
            boundary = self.headers["Content-Type"].split("boundary=")[1].strip('"').encode()
            content, name = b"", "upload.jsonl"
            for part in raw.split(b"--" + boundary):
                head, _, data = part.partition(b"\r\n\r\n")
                if b'name="file"' in head:
                    content = data.rsplit(b"\r\n", 1)[0]
                    if b'filename="' in head:
                        name = head.split(b'filename="')[1].split(b'"')[0].decode()
            with server.lock:
                server.counts["files_uploaded"] += 1
                fid = f"file-{len(server.files)}"
                server.files[fid] = content
            self._send(200, {"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                             "filename": name, "purpose": "batch", "status": "processed"})

    return Handler
