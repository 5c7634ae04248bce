"""A lean OpenAI-compatible loopback endpoint for throughput benchmarks (asyncio, one process).

The test server in tests/vlmdata/openai_server.py is built for behaviour (429s, hangs, batches, a
thread per connection); at 200 requests/s its own Python overhead eats most of a 2-core machine and
the benchmark then measures the server. A real endpoint does not share our CPU, so the throughput
benchmark talks to this one: HTTP/1.1 keep-alive, `GET /v1/models`, `POST /v1/chat/completions`
answered after `--latency` seconds, and `GET /_stats` with the request counts.

    python benchmarks/loopback_server.py --latency 0.3      # prints its base URL, serves until stdin closes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "bench",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Question:\nWhat is shown?\n===\nAnswer:\nA scene."}}],
    "usage": {"prompt_tokens": 20, "completion_tokens": 12, "total_tokens": 32},
}).encode()
MODELS = json.dumps({"object": "list", "data": [{"id": "bench", "object": "model"}]}).encode()


async def serve(latency: float) -> None:
    stats = {"chat": 0, "models": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = next((int(v) for k, _, v in (x.partition(":") for x in lines[1:])
                               if k.lower() == "content-length"), 0)
                if length:
                    await reader.readexactly(length)
                if method == "POST" and path.endswith("/chat/completions"):
                    stats["chat"] += 1
                    await asyncio.sleep(latency)
                    body = COMPLETION
                elif path.endswith("/models"):
                    stats["models"] += 1
                    body = MODELS
                else:
                    body = json.dumps(stats).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}/v1", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    server.close()
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        task.cancel()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.3)
    asyncio.run(serve(ap.parse_args().latency))
