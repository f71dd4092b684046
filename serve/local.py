"""Running the service on this machine (`moderation serve`): settings, local Ray, Serve, wait, clean stop.

`run_service` is all `moderation serve` does; tests start the service through it too, so what they check is
what users run. With no API keys configured it makes one admin key for this machine (kept in
`./.moderation-api-key`, readable by this user only) rather than run open. Ctrl-C or SIGTERM shuts Serve and
Ray down before returning. The HTTP proxy listens on `settings.host` (127.0.0.1 by default); Ray 2.60's own
internal services (GCS, raylet, workers) still listen on every interface and offer no setting to change that,
so a machine on an untrusted network needs a firewall in front of them.
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


def start(settings: ServeSettings, num_cpus: int | None = None) -> None:
    """Start local Ray and Serve (HTTP on settings.host:port) and run the application built by `build_app`."""
    import ray
    from ray import serve

    from .app import build_app

    app = build_app(settings)
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, configure_logging=False)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(app, name="moderation", route_prefix="/")


def stop() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def run_service(settings_path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                num_cpus: int | None = None, on_ready: Callable[[ServeSettings], None] | None = None,
                stop_event: threading.Event | None = None) -> None:
    """Run the service until Ctrl-C, SIGTERM or `stop_event`; `on_ready(settings)` once it answers."""
    settings = service_settings(settings_path, overrides or {})
    stop_event = stop_event or threading.Event()
    previous = None
    try:
        start(settings, num_cpus)
        if threading.current_thread() is threading.main_thread():
            # ray.init installed its own SIGTERM handling (a stack dump, then exit): drain through ours instead.
            previous = signal.signal(signal.SIGTERM, lambda *_: stop_event.set())
        if on_ready is not None:
            on_ready(settings)
        while not stop_event.wait(1.0):
            pass
    except KeyboardInterrupt:
        log.info("interrupted: shutting the service down")
    finally:
        stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
