"""`/readyz` from the first second of start-up: a tiny deployment that answers for the main application.

`moderation serve` runs it as its own application on the `/readyz` route before the main one is deployed
(which takes as long as loading the model), so a probe gets 503 "starting" instead of 404 while the model
loads, and once the service runs it asks the ingress (`ModerationIngress.readiness`: a live scoring replica,
a queue that can be written and read back, not shutting down). Its own replica and request limit mean a
flood of API requests does not queue the probe behind them.
"""

import asyncio

from fastapi.responses import JSONResponse
from ray import serve

PROBE_TIMEOUT_S = 5.0  # longer than the readiness checks' own timeouts, so their reason comes back


@serve.deployment(name="ReadinessProbe", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
class ReadinessProbe:
    def __init__(self, app_name: str):
        self.app_name = app_name

    async def __call__(self, request) -> JSONResponse:
        try:
            status = serve.status().applications.get(self.app_name)
        except Exception as exc:  # noqa: BLE001 - a probe reports every failure as a reason
            return _not_ready(f"Serve's controller did not answer: {exc}")
        if status is None or status.status != "RUNNING":
            state = "starting" if status is None or status.status == "DEPLOYING" else str(status.status).lower()
            return _not_ready(f"{state}: the model is loading" if state == "starting" else f"application {state}")
        try:
            handle = serve.get_app_handle(self.app_name)
            ready = await asyncio.wait_for(handle.readiness.remote(), timeout=PROBE_TIMEOUT_S)
        except asyncio.TimeoutError:
            return _not_ready(f"the service did not answer within {PROBE_TIMEOUT_S:g} s")
        except Exception as exc:  # noqa: BLE001
            return _not_ready(f"the service is unreachable ({type(exc).__name__})")
        return JSONResponse(ready, status_code=200 if ready.get("status") == "ready" else 503)


def _not_ready(reason: str) -> JSONResponse:
    return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
