"""Running the service on this machine (`moderation serve`): settings, local Ray, Serve, wait, clean stop.

`run_service` is all `moderation serve` does; tests start the service through it too, so what they check is
what users run. With no API keys configured it makes one admin key for this machine (kept in
`./.moderation-api-key`, readable by this user only) rather than run open. Ctrl-C or SIGTERM drains the
service (new requests 503, those in flight finish within `shutdown_grace_s`), then shuts Serve and Ray down
and returns normally. `/readyz` is its own small application (serve.probes), deployed first, so it answers
503 "starting" while the model loads.

The HTTP proxy listens on `settings.host` (127.0.0.1 by default). Ray 2.60's own internal services (GCS,
raylet, workers, the dashboard agent) still listen on every interface: checked with `ss -ltnp` under
`ray.init(_node_ip_address="127.0.0.1", dashboard_host="127.0.0.1")`, which moves the node address but not
the gRPC listeners, and no RAY_* setting found changes that. Ray 2.60 does require its cluster token on those
ports; still, a machine on an untrusted network needs a firewall in front of them.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .settings import MissingApiKeys, ServeSettings, load_settings

log = logging.getLogger(__name__)

KEY_FILE = Path(".moderation-api-key")
APP_NAME = "moderation"


def local_admin_key(path: Path = KEY_FILE) -> dict:
    """An admin API key kept in `path` (created once, readable by this user only)."""
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24) + "\n")
        path.chmod(0o600)
    log.warning("no API keys configured: using the local admin key in %s (send it as 'Authorization: Bearer <key>'; "
                "set MODERATION_API_KEYS for real deployments)", path.resolve())
    return {"name": "local-admin", "roles": ["admin"], "key": path.read_text().strip()}


def service_settings(settings_path: str | Path | None, overrides: dict[str, Any]) -> ServeSettings:
    """The settings `moderation serve` runs with: file, environment and overrides, plus a local admin key when
    auth is required and no key is configured."""
    try:
        return load_settings(settings_path, **overrides)
    except MissingApiKeys:
        return load_settings(settings_path, **{**overrides, "api_keys": [local_admin_key()]})


def start(settings: ServeSettings, num_cpus: int | None = None,
          on_ray_started: Callable[[], None] | None = None) -> None:
    """Start local Ray and Serve (HTTP on settings.host:port) and run the application built by `build_app`.
    `on_ray_started` runs right after `ray.init` (which installs its own signal handlers)."""
    import ray
    from ray import serve

    from .app import build_app

    app = build_app(settings)
    # Ray starts its own processes (GCS, raylet, monitors) in our process group and blocks only SIGINT in
    # them, so a SIGTERM sent to the whole group (systemd's default KillMode, `timeout`, `kill -TERM -PGID`)
    # killed the GCS under a graceful shutdown: the drain then waited 60 s for it and exited 1. A signal mask
    # is inherited across fork and exec, so holding SIGTERM while ray.init starts them keeps it from them;
    # ray.shutdown still stops them. A SIGTERM that arrives meanwhile waits and reaches our handler after.
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, configure_logging=False)
        if on_ray_started is not None:
            on_ray_started()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    from .probes import ReadinessProbe

    # First, so /readyz answers 503 "starting" (not 404) while the model loads.
    serve.run(ReadinessProbe.bind(APP_NAME), name=f"{APP_NAME}-readiness", route_prefix="/readyz")
    serve.run(app, name=APP_NAME, route_prefix="/")


def stop() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def drain(settings: ServeSettings) -> None:
    """Stop accepting requests and let those in flight finish, within `settings.shutdown_grace_s`."""
    from ray import serve

    try:
        handle = serve.get_app_handle(APP_NAME)
        left = handle.drain.remote(settings.shutdown_grace_s).result(timeout_s=settings.shutdown_grace_s + 5)
    except Exception:  # noqa: BLE001 - shutting down regardless; say why the drain was cut short
        log.warning("could not drain the service before stopping", exc_info=True)
        return
    if left:
        log.warning("%d requests were still running after the %g s grace period", left, settings.shutdown_grace_s)
    else:
        log.info("drained: no request in flight")


def run_service(settings_path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                num_cpus: int | None = None, on_ready: Callable[[ServeSettings], None] | None = None,
                stop_event: threading.Event | None = None) -> None:
    """Run the service until Ctrl-C, SIGTERM or `stop_event`, then drain it and stop; `on_ready(settings)` once
    it answers.

    SIGTERM and SIGINT (Ctrl-C) are handled here, in the main thread, replacing what `ray.init` installs (a
    stack dump and exit 15): new requests get 503, those in flight finish within `shutdown_grace_s`, Serve
    and Ray stop, and the caller returns normally (exit status 0).
    """
    settings = service_settings(settings_path, overrides or {})
    stop_event = stop_event or threading.Event()
    previous: dict[int, Any] = {}

    def handle_signals() -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                old = signal.signal(signum, lambda signum, _frame: _stop(stop_event, signum))
                previous.setdefault(signum, old)

    started = False
    try:
        handle_signals()  # a signal during start-up also stops cleanly
        start(settings, num_cpus, on_ray_started=handle_signals)  # again: ray.init replaced ours
        started = True
        if on_ready is not None and not stop_event.is_set():
            on_ready(settings)
        while not stop_event.wait(0.5):
            pass
        drain(settings)
    except KeyboardInterrupt:
        log.info("interrupted: shutting the service down")
    finally:
        if started or _ray_running():
            stop()
        for signum, old in previous.items():
            signal.signal(signum, old)


def _stop(stop_event: threading.Event, signum: int) -> None:
    log.info("%s received: draining the service, then stopping", signal.Signals(signum).name)
    stop_event.set()


def _ray_running() -> bool:
    import ray

    return ray.is_initialized()
