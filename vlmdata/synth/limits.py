"""Requests-per-minute and tokens-per-minute limits as async token buckets.

A bucket holds at most one minute's allowance and refills continuously, so a build starts at full
speed and then settles at the limit instead of bursting into 429s. A single request larger than the
whole allowance waits for a full bucket rather than forever.
"""

from __future__ import annotations

import asyncio
import time


class Bucket:
    def __init__(self, *, per_minute: int) -> None:
        if per_minute < 1:
            raise ValueError(f"a per-minute limit must be >= 1, got {per_minute}")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, amount: float) -> None:
        amount = min(amount, self.capacity)
        async with self._lock:  # FIFO: requests are admitted in the order they asked
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.level >= amount:
                    self.level -= amount
                    return
                await asyncio.sleep((amount - self.level) / self.rate)


class Limits:
    """rpm and tpm together; either may be None (unlimited)."""

    def __init__(self, *, rpm: int | None, tpm: int | None) -> None:
        self.rpm = Bucket(per_minute=rpm) if rpm else None
        self.tpm = Bucket(per_minute=tpm) if tpm else None

    async def admit(self, tokens: int) -> None:
        if self.rpm is not None:
            await self.rpm.take(1)
        if self.tpm is not None:
            await self.tpm.take(tokens)
