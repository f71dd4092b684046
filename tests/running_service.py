"""The moderation service started for a test exactly as `moderation serve --config FILE` starts it
(`serve.local.run_service` with a settings YAML file), in a thread, and stopped cleanly afterwards."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml


@contextmanager
def running_service(folder: Path, settings: dict, port: int, num_cpus: int = 2) -> Iterator[str]:
    """Write `settings` to `folder/serve_settings.yaml`, serve on `port`; yields the base URL."""
    from serve.local import run_service

    path = Path(folder) / "serve_settings.yaml"
    path.write_text(yaml.safe_dump(settings))
    ready, stop, failed = threading.Event(), threading.Event(), []

    def serve_until_stopped():
        try:
            run_service(path, {"port": port}, num_cpus, lambda s: ready.set(), stop_event=stop)
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            failed.append(exc)
            ready.set()

    thread = threading.Thread(target=serve_until_stopped, daemon=True)
    thread.start()
    assert ready.wait(timeout=600) and not failed, failed
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        thread.join(timeout=120)
        assert not thread.is_alive(), "run_service did not shut down"
