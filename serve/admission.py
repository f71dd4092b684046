"""What the ingress does before FastAPI sees a request: liveness, the key check, the body deadline, draining.

A pure ASGI middleware (no `BaseHTTPMiddleware`: that one reads and buffers the body), run in front of every
route, so that:
- `GET /healthz` is answered here, before routing, body reading or any limit: a flood of other requests
  cannot make the liveness probe fail;
- a request that may carry a body (POST, PUT, PATCH, DELETE) is refused with 401 *before its body is read*
  when it presents no valid key: FastAPI reads and validates a route's body before its dependencies run, so
  a key dependency alone lets unauthenticated slow or huge bodies hold the replica. Roles are still checked
  by the routes' dependencies (`serve.auth`);
- the whole body must arrive within `body_timeout_s` of the route's first read of it, or the request ends with
  408: a slow client cannot hold a slot for longer than that. The clock starts at that read, not when the
  request arrived: under load the event loop may reach a request seconds late, and that wait is the server's,
  not the client's (a body already received is never refused for it);
- while the service drains for shutdown, new requests other than the probes get 503 + Retry-After, and
  requests already running finish (`in_flight` counts them);
- a scoring request (`SCORING_PATHS`) beyond `max_scoring` in flight on this replica is answered 503 +
  Retry-After at once, before its body is read: work the Scorers cannot finish within a second or two is
  refused while refusing is still cheap, instead of queueing in the event loop until its deadline.

`WorkBudget` is admission's second stage, once a request's posts are parsed and what they cost is known.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from urllib.parse import parse_qs

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PROBES = frozenset({"/healthz", "/readyz"})
SCORING_PATHS = frozenset({"/v1/moderate", "/v1/moderations", "/v1alpha1/comments:analyze"})
RECEIVED_FLOOR_S = 0.05  # past the body deadline, how long a read may still wait for bytes already received
DRAIN_QUIET_S = 0.5  # a drain ends only once no request has arrived for this long (Gate.drain)


class AdmissionMiddleware:
    def __init__(self, app, gate: Callable[[], Gate]):
        """`gate()` -> this replica's `Gate`, looked up per request (the middleware is built before the replica)."""
        self.app, self.gate = app, gate

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope.get("path", ""), scope.get("method", "GET")
        if path == "/healthz" and method in ("GET", "HEAD"):
            return await _json(send, 200, {"status": "ok"})
        gate = self.gate()
        if path not in PROBES:  # probes poll all the time: they would hold a drain open (Gate.drain)
            gate.last_arrival = time.monotonic()
            if gate.draining:
                return await _json(send, 503, {"detail": "the service is shutting down; retry shortly"},
                                   {"retry-after": str(gate.retry_after_s)})
            if method in BODY_METHODS and not gate.key_ok(scope):
                return await _json(send, 401, {"detail": "missing or unknown API key (send Authorization: Bearer <key>)"},
                                   {"www-authenticate": "Bearer"})
        scoring = path in SCORING_PATHS and method == "POST"
        if scoring and gate.max_scoring is not None and gate.scoring_in_flight >= gate.max_scoring:
            return await _json(send, 503, {"detail": "the service is at capacity; retry shortly"},
                               {"retry-after": str(gate.retry_after_s)})
        timeout_s = gate.body_timeout_s
        deadline = None  # set by the route's first read of the body
        body_done, timed_out, answered = False, False, False

        async def receive_by_deadline():
            nonlocal body_done, timed_out, deadline
            if body_done or timed_out:  # after the body only a disconnect can come: no deadline on it
                return await receive() if not timed_out else {"type": "http.disconnect"}
            if deadline is None:
                deadline = time.monotonic() + timeout_s
            try:
                # The floor lets a part already buffered through however late the loop gets here.
                message = await asyncio.wait_for(receive(), timeout=max(deadline - time.monotonic(), RECEIVED_FLOOR_S))
            except asyncio.TimeoutError:
                # Not raised from here: middlewares built on task groups would wrap it in an ExceptionGroup.
                # The app sees a disconnect, and its answer is replaced by the 408 below.
                timed_out = True
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def send_unless_timed_out(message):
            nonlocal answered
            if timed_out:
                if not answered:
                    answered = True
                    await _json(send, 408, {"detail": f"request body not received within {timeout_s:g} s"},
                                {"connection": "close"})
                return
            await send(message)

        gate.in_flight += 1
        gate.scoring_in_flight += scoring
        try:
            await self.app(scope, receive_by_deadline, send_unless_timed_out)
        except Exception:
            if not timed_out:
                raise
        finally:
            gate.in_flight -= 1
            gate.scoring_in_flight -= scoring
        if timed_out and not answered:
            await _json(send, 408, {"detail": f"request body not received within {timeout_s:g} s"},
                        {"connection": "close"})


class Gate:
    """One replica's admission state: its key check, body deadline, draining flag and requests in flight."""

    def __init__(self, authenticator, body_timeout_s: float, retry_after_s: int = 1, max_scoring: int | None = None):
        self.authenticator, self.body_timeout_s, self.retry_after_s = authenticator, body_timeout_s, retry_after_s
        self.max_scoring = max_scoring  # scoring requests this replica admits at once (None: no bound)
        self.draining = False
        self.in_flight = 0
        self.scoring_in_flight = 0
        self.last_arrival = time.monotonic()

    def key_ok(self, scope) -> bool:
        if self.authenticator.disabled:
            return True
        return self.authenticator.identify(presented_token(scope)) is not None

    async def drain(self, grace_s: float) -> int:
        """Refuse new requests and wait up to `grace_s` for those in flight; returns how many are still running.
        It also waits until no request has arrived for `DRAIN_QUIET_S`: requests the HTTP proxy took just before
        are still on their way here, and stopping under them would reset their connections; answered 503 +
        Retry-After instead, their clients can retry elsewhere."""
        self.draining = True
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and (self.in_flight or time.monotonic() - self.last_arrival < DRAIN_QUIET_S):
            await asyncio.sleep(0.05)
        return self.in_flight


class WorkBudget:
    """One replica's scoring work in flight, in typical posts (`ServeSettings.post_cost`), so that one large
    request cannot fill the queue small ones wait in: `admit` counts a request's cost or refuses it (413 when
    it could never be scored within the deadline, 503 + Retry-After when it does not fit beside the work in
    flight: a large request is refused while small ones keep the queue short, never the other way round);
    `release` uncounts it once it is scored or failed."""

    def __init__(self, settings, retry_after_s: int = 1):
        self.settings, self.retry_after_s = settings, retry_after_s
        self.in_flight = 0.0  # the cost of the requests admitted and not yet released
        self.requests = 0  # how many they are (the float sum alone can stay a hair above 0 when idle)

    def admit(self, posts) -> float:
        """`posts` (each with `text` and `image_bytes`) -> their cost, now counted as in flight."""
        from fastapi import HTTPException

        s = self.settings
        cost = sum(s.post_cost(p.text, p.image_bytes is not None) for p in posts)
        if cost > s.max_request_cost:
            raise HTTPException(413, f"this request would take about {cost / s.capacity_posts_per_s:.1f} s to score "
                                f"at this service's measured capacity ({s.capacity_posts_per_s:g} posts/s), more than "
                                f"its {s.request_deadline_s:g} s deadline: send fewer or shorter posts per request")
        if self.requests and self.in_flight + cost > s.ingress_admission_limit:
            raise HTTPException(503, "the service is at capacity; retry shortly",
                                headers={"Retry-After": str(self.retry_after_s)})
        self.in_flight += cost
        self.requests += 1
        return cost

    def release(self, cost: float) -> None:
        self.requests -= 1
        self.in_flight = self.in_flight - cost if self.requests else 0.0


def presented_token(scope) -> str | None:
    """The key a request presents, read from the headers the way `serve.auth` reads it (Bearer or X-API-Key),
    or `?key=`."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    authorization = headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    if headers.get("x-api-key"):
        return headers["x-api-key"]
    # `?key=` (the Perspective-compatible route takes it): accepted here for the early check only; the
    # route's own dependency decides whether that route accepts a query key at all.
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("key")
    return values[0] if values else None


async def _json(send, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
