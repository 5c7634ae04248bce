"""The async OpenAI-compatible client: bounded concurrency, rpm/tpm limits, retries, preflight.

Retries cover what is worth retrying — 429, 5xx, timeouts and dropped connections — with exponential
backoff and full jitter (seeded by the request key, so runs are reproducible), and honour the
server's `Retry-After` / `retry-after-ms`, capped at `max_retry_after_s` (default 120 s). `timeout_s`
is a deadline for a whole request (connect, headers and body), not a per-read timeout. Other 4xx answers are final. The openai client's own
retries are off so that every attempt is counted and limited here.

`preflight()` runs before the first request is sent: a missing key or an unreachable endpoint stops
the build with a message that says how to fix it, instead of rejecting every row.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from vlmdata.redact import Redactor, safe_url
from vlmdata.rows import BuildError
from vlmdata.synth.cache import Response
from vlmdata.synth.limits import Limits
from vlmdata.synth.prompt import Request
from vlmdata.synth.spec import SynthesizeSpec

BACKOFF_BASE_S = 0.5
SHARD_CONNECTIONS = 16  # connections per HTTP pool (see SynthClient.__aenter__)
BACKOFF_CAP_S = 60.0
DEADLINE_SLACK_S = 0.5  # the event loop's backstop beyond timeout_s, for a server that never sends headers


class SynthError(BuildError):
    """A job cannot run at all (no key, endpoint unreachable): raised before any row is lost."""


@dataclass(frozen=True)
class Failure:
    """A request that got no usable answer after its retries; becomes a reject with this reason."""

    reason: str
    detail: str


def retry_after(headers: Any) -> float | None:
    """Seconds the server asked us to wait, from `retry-after-ms` or `retry-after` (seconds or a date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            from datetime import datetime, timezone

            return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None


def backoff(attempt: int, *, key: str, hint: float | None) -> float:
    if hint is not None:
        return hint + random.Random(f"{key}:{attempt}").uniform(0, 0.1)
    return random.Random(f"{key}:{attempt}").uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** attempt))


class SynthClient:
    """One job's connection; create it inside the event loop that uses it (`async with`)."""

    def __init__(self, *, spec: SynthesizeSpec, job_index: int) -> None:
        self.spec = spec
        self.where = spec.where(job_index)
        self.base_url = spec.base_url()
        self.redact = Redactor(env_names=[spec.endpoint.api_key_env], urls=[self.base_url])
        self.shown_url = safe_url(self.base_url)  # the only form of the URL a message may hold
        self.semaphore = asyncio.Semaphore(spec.concurrency)
        self.limits = Limits(rpm=spec.rpm, tpm=spec.tpm)
        self.api: Any = None  # shard 0: preflight and the Batch API use it
        self._shards: list[Any] = []
        self._inflight: list[int] = []
        self._threads: Any = None
        self.attempts = 0

    def api_key(self) -> str:
        env = self.spec.endpoint.api_key_env
        key = os.environ.get(env)
        if not key:
            raise SynthError(f"{self.where}: the API key variable ${env} is not set. Export it (`export {env}=...`; "
                             f"any non-empty value for a local server that needs none), or point "
                             f"endpoint.api_key_env at the variable that holds your key.")
        return key

    async def __aenter__(self) -> SynthClient:
        """The async openai client (preflight, Batch API) and, for completions, sharded sync clients
        driven from a thread pool of `concurrency` threads.

        Why threads: a request's socket sends and receives, TLS and HTTP parsing release the GIL in a
        thread, but run one after another on an event loop; at 64 requests in flight that serial work,
        not the server, capped throughput. Why shards: the HTTP pool checks every one of its connections
        (a socket poll each) for each request it places, so pools of `SHARD_CONNECTIONS` cost a quarter
        of one pool of 64. A request goes to the shard with the fewest in flight, so none waits for a
        connection while another is free. Limits, retries and backoff stay here, on the event loop.
        """
        from concurrent.futures import ThreadPoolExecutor

        import httpx2
        from openai import AsyncOpenAI, OpenAI

        key = self.api_key()
        self.api = AsyncOpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.spec.timeout_s)
        n = max(1, -(-self.spec.concurrency // SHARD_CONNECTIONS))
        per = -(-self.spec.concurrency // n)
        for _ in range(n):
            http = httpx2.Client(limits=httpx2.Limits(max_connections=per, max_keepalive_connections=per),
                                 timeout=self.spec.timeout_s)
            self._shards.append(OpenAI(api_key=key, base_url=self.base_url, max_retries=0,
                                       timeout=self.spec.timeout_s, http_client=http))
        self._inflight = [0] * n
        self._threads = ThreadPoolExecutor(max_workers=self.spec.concurrency, thread_name_prefix="vlmdata-synth")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)
        for api in self._shards:
            api.close()
        await self.api.close()

    def _post(self, shard: int, body: dict[str, Any], persist: Callable[[Response], None] | None,
              deadline: float) -> Response | Failure:
        """One chat.completions call in a worker thread, parsed and persisted there too (off the event
        loop). The raw body, not a typed ChatCompletion: the SDK's request transform and response models
        cost more CPU than the call; its status errors still apply.

        `deadline` (time.monotonic) bounds the whole request: the body is read in chunks and the
        connection is dropped once it passes, so a server that drips a byte a second cannot hold a
        request longer than `timeout_s` (the HTTP timeouts only bound each read)."""
        import openai
        from openai._constants import RAW_RESPONSE_HEADER

        raw = self._shards[shard].post("/chat/completions", body=body, cast_to=bytes,
                                       options={"headers": {RAW_RESPONSE_HEADER: "stream"}})
        http = raw.http_response
        chunks: list[bytes] = []
        try:
            for chunk in http.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise openai.APITimeoutError(request=http.request)
        finally:
            http.close()
        got = response_from_body(json.loads(b"".join(chunks)))
        if persist is not None and isinstance(got, Response):
            persist(got)  # committed before the request counts as done: a kill -9 after this loses nothing
        return got

    async def preflight(self) -> None:
        """GET /models: proves the endpoint answers and accepts the key before any row is processed."""
        import openai

        try:
            await self.api.models.list(timeout=min(15.0, self.spec.timeout_s))
        except openai.AuthenticationError as e:
            raise SynthError(f"{self.where}: {self.shown_url} refused the key in ${self.spec.endpoint.api_key_env} "
                             f"(HTTP {e.status_code}); check the key, or the base_url it is meant for.") from None
        except openai.APIConnectionError as e:
            raise SynthError(f"{self.where}: cannot reach {self.shown_url} ({type(e).__name__}: "
                             f"{self.redact(str(e))}); check "
                             f"endpoint.base_url or $OPENAI_BASE_URL, and that the server is up.") from None
        except openai.APIStatusError as e:
            if e.status_code == 403:
                raise SynthError(f"{self.where}: {self.shown_url} denied access (HTTP 403): "
                                 f"{self.redact(e.message)}") from None
            # other statuses (e.g. a proxy without /models) still prove the endpoint is there

    async def complete(self, request: Request, *, tokens: int,
                       persist: Callable[[Response], None] | None = None) -> Response | Failure:
        """`_complete`, with any secret a server echoed (e.g. "Incorrect API key provided: ...") taken
        out of the failure's detail before it reaches rejects.jsonl or a log."""
        got = await self._complete(request, tokens=tokens, persist=persist)
        if isinstance(got, Failure) and self.redact:
            return Failure(got.reason, self.redact(got.detail))
        return got

    async def _complete(self, request: Request, *, tokens: int,
                        persist: Callable[[Response], None] | None = None) -> Response | Failure:
        """One request with retries; `tokens` is its estimate for the tpm limit; `persist` stores a good
        answer from the worker thread (the cache write, so the event loop only schedules requests)."""
        import openai

        async with self.semaphore:
            last = Failure("request_failed", "no attempt made")
            for attempt in range(self.spec.max_retries + 1):
                await self.limits.admit(tokens)
                self.attempts += 1
                hint = None
                shard = min(range(len(self._shards)), key=self._inflight.__getitem__)
                self._inflight[shard] += 1
                deadline = time.monotonic() + self.spec.timeout_s
                try:
                    work = asyncio.get_running_loop().run_in_executor(self._threads, self._post, shard,
                                                                      request.body, persist, deadline)
                    # the thread stops reading at the deadline too; this bounds the wait for the headers
                    return await asyncio.wait_for(work, timeout=self.spec.timeout_s + DEADLINE_SLACK_S)
                except asyncio.TimeoutError:
                    last = Failure("timeout", f"no complete answer within timeout_s={self.spec.timeout_s}")
                except openai.RateLimitError as e:
                    last, hint = Failure("rate_limited", f"HTTP 429: {e.message}"), retry_after(e.response.headers)
                except openai.InternalServerError as e:
                    last, hint = Failure("server_error", f"HTTP {e.status_code}: {e.message}"), retry_after(e.response.headers)
                except openai.APITimeoutError:
                    last = Failure("timeout", f"no complete answer within timeout_s={self.spec.timeout_s}")
                except openai.APIConnectionError as e:
                    last = Failure("connection_error", f"{type(e).__name__}: {e}")
                except openai.APIStatusError as e:
                    return Failure("request_error", f"HTTP {e.status_code}: {e.message}")
                except (openai.APIResponseValidationError, ValueError, TypeError, AttributeError) as e:
                    return Failure("bad_response", f"{type(e).__name__}: {e}")
                finally:
                    self._inflight[shard] -= 1
                if attempt < self.spec.max_retries:
                    if hint is not None:
                        hint = min(hint, self.spec.max_retry_after_s)  # honoured, but never an hour's stall
                    await asyncio.sleep(backoff(attempt, key=request.key, hint=hint))
            return Failure(last.reason, f"{last.detail} (after {self.spec.max_retries + 1} attempts)")


def response_from_body(body: dict[str, Any]) -> Response | Failure:
    """A chat.completions JSON body (as the Batch API returns it) -> Response."""
    choices = body.get("choices") or []
    if not choices:
        return Failure("bad_response", "the response has no choices")
    msg = choices[0].get("message") or {}
    usage = body.get("usage") or {}
    return Response(text=msg.get("content") or "", finish_reason=choices[0].get("finish_reason") or "stop",
                    prompt_tokens=int(usage.get("prompt_tokens") or 0),
                    completion_tokens=int(usage.get("completion_tokens") or 0), refusal=msg.get("refusal"))
