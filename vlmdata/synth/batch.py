"""Batch API mode: half the price, answers within 24 h, and a ledger so nothing is submitted twice.

    misses → JSONL (one chat.completions body per line, custom_id = request key) → files.create →
    batches.create → ledger row → poll → download output (+ error file) → cache → rows

The ledger (the cache DB's `batches` table) is keyed by the hash of the exact set of request keys, so a
rerun while a batch is in flight attaches to it instead of paying again. The uploaded file's id is written
to the ledger before `batches.create` (status `submitting`), so a kill between the create and the
ledger update is recovered on rerun by finding the batch made from that file (or tagged with the
keyset in its metadata) instead of creating a second one. The spool JSONL is removed once the batch's
results are collected; `batch_wait_s` bounds how long
one build waits (the rows still pending are rejected `batch_pending`, a later build collects them).
Requests the batch failed are retried online (`batch_failures: online`) or rejected.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from vlmdata.synth.cache import SUBMITTING, ResponseCache
from vlmdata.synth.client import Failure, SynthClient, response_from_body
from vlmdata.synth.prompt import Request

TERMINAL = {"completed", "failed", "expired", "cancelled"}
MAX_LISTED = 1000  # batches scanned when recovering an unconfirmed create (an organisation may have many)
KEYSET_TAG = 64  # batch metadata values are at most 512 characters; the keyset hash is 64


def keyset_hash(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()


def write_jsonl(path: Path, requests: list[Request]) -> bytes:
    lines = [json.dumps({"custom_id": r.key, "method": "POST", "url": "/v1/chat/completions", "body": r.body},
                        ensure_ascii=False) for r in requests]
    data = ("\n".join(lines) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


async def _find_batch(api: Any, *, input_file_id: str, keyset: str) -> Any | None:
    """The batch created from `input_file_id` (or tagged with this keyset), if the server has one."""
    page = await api.batches.list(limit=100)
    seen = 0
    async for batch in page:  # newest first: the one we look for was created just before the kill
        meta = getattr(batch, "metadata", None) or {}
        if batch.input_file_id == input_file_id or meta.get("vlmdata_keyset") == keyset[:KEYSET_TAG]:
            return batch
        seen += 1
        if seen >= MAX_LISTED:
            break
    return None


async def _submit(*, api: Any, cache: ResponseCache, requests: list[Request], job: str, keyset: str,
                  spool_file: Path) -> str:
    """Create the batch exactly once: the uploaded file id goes into the ledger before `batches.create`,
    so a build killed between the two finds (on rerun) the batch it created instead of creating another."""
    pending = cache.submitting(keyset)
    if pending is not None:
        placeholder, input_file_id = pending
        found = await _find_batch(api, input_file_id=input_file_id, keyset=keyset)
        if found is not None:
            cache.submitted(placeholder, batch_id=found.id, status=found.status)
            return str(found.id)
    else:
        data = write_jsonl(spool_file, requests)
        uploaded = await api.files.create(file=(f"vlmdata-{job}-{keyset[:12]}.jsonl", data), purpose="batch")
        input_file_id = uploaded.id
        placeholder = cache.begin_batch(job=job, keyset=keyset, input_file_id=input_file_id, n=len(requests))
    batch = await api.batches.create(input_file_id=input_file_id, endpoint="/v1/chat/completions",
                                     completion_window="24h",
                                     metadata={"vlmdata_job": job, "vlmdata_keyset": keyset[:KEYSET_TAG]})
    cache.submitted(placeholder, batch_id=batch.id, status=batch.status)
    return str(batch.id)


async def run_batch(*, client: SynthClient, cache: ResponseCache, requests: list[Request], job: str,
                    spool: Path) -> dict[str, Failure]:
    """Send `requests` (all cache misses) through the Batch API; answers land in the cache.

    Returns the requests that got no answer, with why (already retried online when configured).
    """
    spec, api = client.spec, client.api
    keyset = keyset_hash([r.key for r in requests])
    known = cache.open_batch(keyset)
    spool_file = spool / f"{keyset[:16]}.jsonl"
    if known is not None and known[1] not in ("failed", "expired", "cancelled", SUBMITTING):
        batch_id = known[0]
    else:
        batch_id = await _submit(api=api, cache=cache, requests=requests, job=job, keyset=keyset, spool_file=spool_file)
    started = time.monotonic()
    while True:
        batch = await api.batches.retrieve(batch_id)
        cache.set_batch_status(batch_id, batch.status)
        if batch.status in TERMINAL:
            break
        if spec.batch_wait_s is not None and time.monotonic() - started >= spec.batch_wait_s:
            detail = f"batch {batch_id} is still {batch.status}; rerun the build to collect it (it will not be resubmitted)"
            return {r.key: Failure("batch_pending", detail) for r in requests}
        await asyncio.sleep(spec.poll_s)
    failed: dict[str, Failure] = {}
    for file_id in (batch.output_file_id, batch.error_file_id):
        if not file_id:
            continue
        content = await api.files.content(file_id)
        for line in content.text.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, resp = item.get("custom_id"), item.get("response") or {}
            if resp.get("status_code") == 200 and isinstance(resp.get("body"), dict):
                got = response_from_body(resp["body"])
                if not isinstance(got, Failure):
                    cache.put(key, got, job=job, model=spec.model)
                    continue
                failed[key] = got
            else:
                err = item.get("error") or (resp.get("body") or {}).get("error") or {}
                failed[key] = Failure("batch_failed", f"HTTP {resp.get('status_code')}: {err.get('message', err)}")
    spool_file.unlink(missing_ok=True)  # collected: every answer is in the cache now
    answered = cache.has([r.key for r in requests])
    for r in requests:
        if r.key not in answered and r.key not in failed:
            failed[r.key] = Failure("batch_failed", f"batch {batch_id} ended {batch.status} without this request")
    if spec.batch_failures == "reject" or not failed:
        return failed
    retry = [r for r in requests if r.key in failed]
    results = await asyncio.gather(*(client.complete(r, tokens=0) for r in retry))
    still: dict[str, Failure] = {}
    for r, got in zip(retry, results, strict=True):
        if isinstance(got, Failure):
            still[r.key] = got
        else:
            cache.put(r.key, got, job=job, model=spec.model)
    return still
