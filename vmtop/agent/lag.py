"""Event-loop lag: a periodic ``call_later`` probe that notes how late it runs.

Free when the loop is idle, one timer callback per interval otherwise. A blocking call of
0.3 s on the loop thread shows as a lag of ~0.3 s on the next probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from typing import Any

INTERVAL = 0.025  # a blocking call is under-reported by at most this much
WINDOW = 10.0  # seconds the p50/p99/max figures cover


class LagProbe:
    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = INTERVAL) -> None:
        self.loop = loop
        self.interval = interval
        self.samples: deque[tuple[float, float]] = deque(maxlen=int(WINDOW / interval) + 8)
        self.max_total = 0.0
        self.last_tick = time.monotonic()
        self._handle: Any = None
        self._expected = 0.0
        self._stopped = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Arm the probe (from any thread)."""
        self.last_tick = time.monotonic()
        with contextlib.suppress(RuntimeError):  # loop closed meanwhile
            self.loop.call_soon_threadsafe(self._arm)

    def _arm(self) -> None:
        if self._stopped:
            return
        self._expected = self.loop.time() + self.interval
        self._handle = self.loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        lag = max(0.0, self.loop.time() - self._expected)
        now = time.monotonic()
        self.last_tick = now
        self.samples.append((now, lag))
        if lag > self.max_total:
            self.max_total = lag
        self._arm()

    def stop(self) -> None:
        self._stopped = True
        handle = self._handle
        if handle is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(handle.cancel)

    def figures(self) -> tuple[float | None, float | None, float | None]:
        """(p50, p99, max) of the lag over the last ``WINDOW`` seconds, None before a sample."""
        cutoff = time.monotonic() - WINDOW
        lags = sorted(lag for t, lag in list(self.samples) if t >= cutoff)
        if not lags:
            return None, None, None
        n = len(lags)
        return lags[n // 2], lags[min(n - 1, int(n * 0.99))], lags[-1]

    def blocked_for(self) -> float:
        """Seconds the loop has gone without running the probe beyond its interval."""
        return max(0.0, time.monotonic() - self.last_tick - self.interval)
