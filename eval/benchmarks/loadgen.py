"""An HTTP load generator for loopback benchmarks, and the statistics of what it measured.

Two shapes of load, both bounded by a request count AND a wall time:
- closed loop: N clients, each sending its next request as soon as the previous one is answered; it finds
  the throughput the service sustains at that concurrency;
- open loop: Poisson arrivals at a target rate, sent whether or not earlier ones were answered; latency is
  measured from each request's scheduled arrival, so a stalled service cannot hide its queueing delay
  (no coordinated omission).

The generator takes `send(payload) -> status` (async), so the statistics are testable without a server;
`http_sender` builds one on an httpx.AsyncClient that refuses anything but loopback addresses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np

log = logging.getLogger(__name__)

Send = Callable[[dict], Awaitable[int]]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Outcome:
    start_s: float  # when the request was due, seconds after the run began
    latency_s: float  # from `start_s` to the answer
    status: int  # HTTP status; 0 = transport error or timeout


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100, numpy's linear interpolation); None for no values.

    >>> percentile([10, 20, 30, 40], 50)
    25.0
    """
    return float(np.percentile(np.asarray(values, np.float64), q)) if len(values) else None


def summarise(outcomes: Sequence[Outcome], wall_s: float) -> dict:
    """Throughput (answered with 2xx per second of wall time) and latency percentiles of the 2xx answers, in ms."""
    ok = [o.latency_s * 1000 for o in outcomes if 200 <= o.status < 300]
    errors: dict[int, int] = {}
    for o in outcomes:
        if not 200 <= o.status < 300:
            errors[o.status] = errors.get(o.status, 0) + 1
    return {"requests": len(outcomes), "ok": len(ok), "errors": errors, "wall_s": wall_s,
            "throughput_rps": len(ok) / wall_s if wall_s > 0 else 0.0,
            "p50_ms": percentile(ok, 50), "p95_ms": percentile(ok, 95), "p99_ms": percentile(ok, 99),
            "mean_ms": float(np.mean(ok)) if ok else None}


async def closed_loop(send: Send, payloads: Sequence[dict], concurrency: int, max_requests: int,
                      max_seconds: float) -> tuple[list[Outcome], float]:
    """`concurrency` clients back to back until `max_requests` are sent or `max_seconds` have passed."""
    if concurrency < 1 or max_requests < 1 or not payloads:
        raise ValueError(f"closed loop needs concurrency >= 1, max_requests >= 1 and payloads; got {concurrency}, "
                         f"{max_requests}, {len(payloads)} payloads")
    outcomes: list[Outcome] = []
    issued = 0
    t0 = time.perf_counter()

    async def client() -> None:
        nonlocal issued
        while issued < max_requests and time.perf_counter() - t0 < max_seconds:
            payload = payloads[issued % len(payloads)]
            issued += 1
            start = time.perf_counter()
            status = await send(payload)
            outcomes.append(Outcome(start - t0, time.perf_counter() - start, status))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return outcomes, time.perf_counter() - t0


def poisson_schedule(rate: float, max_requests: int, max_seconds: float, seed: int = 0) -> np.ndarray:
    """Arrival times (s) of a Poisson process at `rate` per second, cut at `max_requests` and `max_seconds`."""
    if rate <= 0:
        raise ValueError(f"open-loop rate must be > 0 requests/s, got {rate}")
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=max_requests)
    arrivals = np.cumsum(gaps) - gaps[0]  # the first request goes at t = 0
    return arrivals[arrivals < max_seconds]


async def open_loop(send: Send, payloads: Sequence[dict], rate: float, max_requests: int, max_seconds: float,
                    seed: int = 0) -> tuple[list[Outcome], float]:
    """Poisson arrivals at `rate`/s; every request is sent on schedule and timed from its due time."""
    schedule = poisson_schedule(rate, max_requests, max_seconds, seed)
    outcomes: list[Outcome] = []
    t0 = time.perf_counter()

    async def one(i: int, due: float) -> None:
        delay = t0 + due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        status = await send(payloads[i % len(payloads)])
        outcomes.append(Outcome(due, time.perf_counter() - (t0 + due), status))

    await asyncio.gather(*(one(i, float(due)) for i, due in enumerate(schedule)))
    return outcomes, time.perf_counter() - t0


def http_sender(client, url: str, headers: dict[str, str]) -> Send:
    """`send` for the generator: POST the payload as JSON; 0 on a transport error or timeout. Loopback only."""
    import httpx

    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"load generator target {url!r}: only loopback hosts {sorted(LOOPBACK)} are allowed")

    async def send(payload: dict) -> int:
        try:
            response = await client.post(url, json=payload, headers=headers)
        except httpx.HTTPError as exc:
            log.debug("request failed: %s", exc)
            return 0
        return response.status_code
    return send
