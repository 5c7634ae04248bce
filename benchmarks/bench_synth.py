"""Synthesis client throughput against the loopback OpenAI server answering after 300 ms.

    .venv/bin/python benchmarks/bench_synth.py [--requests 2000] [--concurrency 64] [--latency 0.3]

The endpoint is benchmarks/loopback_server.py (lean asyncio, its own process) unless --test-server.
Reports (1) vlmdata's async client + SQLite cache as a fraction of the ideal concurrency / latency
(goal >= 90% at concurrency 64), (2) the request count of an immediate rerun (goal 0: all cached), and
(3) a plain loop of the `openai` sync client in a thread pool of the same size, with the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "vlmdata"))

from openai_server import FakeOpenAI  # noqa: E402

from vlmdata.synth.cache import ResponseCache  # noqa: E402
from vlmdata.synth.cost import Ledger, price_for  # noqa: E402
from vlmdata.synth.prompt import build_request  # noqa: E402
from vlmdata.synth.run import JobState, run_job  # noqa: E402
from vlmdata.synth.spec import SynthesizeSpec  # noqa: E402

KEY = "sk-bench"


def serve(latency: float) -> None:
    """The server in its own process (as a real endpoint would be), so it does not share our GIL."""
    server = FakeOpenAI(delay=latency, api_key=KEY).start()
    print(server.base_url, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.stop()


def chat_count(base_url: str) -> int:
    import json
    import urllib.request

    req = urllib.request.Request(base_url.replace("/v1", "/_stats"), headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req) as f:
        return int(json.load(f).get("chat", 0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.3)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--test-server", action="store_true",
                    help="use the thread-per-connection test server (tests/vlmdata/openai_server.py) instead")
    args = ap.parse_args()
    if args.serve:
        return serve(args.latency)
    import subprocess

    server = [sys.executable, __file__, "--serve", "--latency", str(args.latency)]
    if not args.test_server:  # the lean asyncio endpoint: the server's CPU must not be what we measure
        server = [sys.executable, str(Path(__file__).with_name("loopback_server.py")), "--latency", str(args.latency)]
    proc = subprocess.Popen(server,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    base_url = proc.stdout.readline().strip()
    try:
        run(args, base_url)
    finally:
        proc.stdin.close()
        proc.wait()


def run(args: argparse.Namespace, base_url: str) -> None:
    spec = SynthesizeSpec.model_validate({
        "name": "bench", "from": ["x"], "template": "llava/conversation", "model": "gpt-4o-mini", "task": "conv",
        "concurrency": args.concurrency, "max_retries": 0, "endpoint": {"base_url": base_url}})
    chats = [[{"role": "user", "content": f"Describe scene number {i}."}] for i in range(args.requests)]
    requests = [build_request(spec=spec, chat=c, images=[], image_hashes=[], image_sizes=[], sample=0,
                              base_url=base_url) for c in chats]
    ideal = args.concurrency / args.latency
    import os

    os.environ["OPENAI_API_KEY"] = KEY
    import openai  # noqa: F401  (imported before either timing, so neither pays the ~1 s import)
    with tempfile.TemporaryDirectory() as tmp:
        cache = ResponseCache(directory=Path(tmp))
        job = JobState(spec=spec, index=0, ledger=Ledger(price=price_for(spec.model, None), batch=False))
        t0 = time.perf_counter()
        outcomes = asyncio.run(run_job(job=job, cache=cache, requests=requests, spool=Path(tmp)))
        wall = time.perf_counter() - t0
        failed = [o.failure for o in outcomes if o.failure is not None]
        assert not failed, f"{len(failed)} requests failed, e.g. {failed[0]}"
        ours = args.requests / wall
        before = chat_count(base_url)
        t1 = time.perf_counter()
        asyncio.run(run_job(job=job, cache=cache, requests=requests, spool=Path(tmp)))
        rerun_s = time.perf_counter() - t1
        rerun_requests = chat_count(base_url) - before

    from openai import OpenAI

    client = OpenAI(api_key=KEY, base_url=base_url, max_retries=0)
    t2 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        list(pool.map(lambda r: client.chat.completions.create(**r.body), requests))
    plain = args.requests / (time.perf_counter() - t2)
    print(f"requests={args.requests} concurrency={args.concurrency} latency={args.latency}s "
          f"ideal={ideal:.1f} req/s")
    print(f"vlmdata async client: {ours:.1f} req/s = {ours / ideal:.1%} of ideal (goal >= 90%), {wall:.2f} s")
    print(f"immediate rerun: {rerun_requests} requests (goal 0), {rerun_s:.2f} s")
    print(f"plain openai client, thread pool of {args.concurrency}: {plain:.1f} req/s = {plain / ideal:.1%} of ideal")
    print(f"ratio vlmdata / plain: {ours / plain:.2f}")


if __name__ == "__main__":
    main()
