"""What the serving benchmark runs against: a local Ray Serve app on loopback, and a CPU meter per process.

`local_ray` starts a private local Ray (never an existing cluster) with the model replica's torch threads set
to the cores the in-process comparison uses, so served and in-process runs get the same compute; `deploy`
runs an application from the Serve app builder it is given (the benchmark never imports our `serve`
package: the CLI hands `serve.app.build_app` in, or an import path names it). `CpuMeter` reads the CPU time
of this process and of every Ray process it started, by role, which is how a gap between served and
in-process throughput gets a measured cause. `speed_only_multimodal_run` builds a text+image run directory
for timing only. `moderation_serve` runs the service the way users do, `moderation serve --config FILE` in
its own process, and stops it with SIGTERM as a container platform would.
"""

from __future__ import annotations

import importlib
import logging
import os
import secrets
import shutil
import socket
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

ROLES = {"Scorer": "model replica (Scorer)", "ModerationAPI": "ingress (ModerationAPI)", "ProxyActor": "HTTP proxy"}
OTHER_RAY = "Ray control (raylet, GCS, controller)"
SELF = "load generator (this process)"


def resolve_app_builder(import_path: str) -> Callable[[dict], object]:
    """'package.module:function' -> the function (the form `serve run` takes)."""
    module, _, name = import_path.partition(":")
    if not module or not name:
        raise ValueError(f"--app {import_path!r}: expected 'package.module:function', e.g. serve.app:build_app")
    return getattr(importlib.import_module(module), name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_settings(run_dir: str | None, queue_dir: Path, port: int, max_batch_size: int, batch_wait_s: float,
                   max_concurrency: int) -> tuple[dict, str]:
    """(serve settings, API key): loopback, one submitter key, SQLite queue in `queue_dir`, no random review."""
    key = secrets.token_urlsafe(24)
    settings = {
        "run_dir": run_dir, "queue_url": f"sqlite:///{queue_dir / 'queue.db'}", "host": "127.0.0.1", "port": port,
        "random_review_rate": 0.0, "max_batch_size": max_batch_size, "batch_wait_timeout_s": batch_wait_s,
        # Room for every client's request, so overload answers 503 only beyond what the benchmark offers:
        # the Scorer's queue, and the ingress's admission (capacity_posts_per_s x max_queue_s of work, under a
        # second by default, which sheds at 32 closed-loop clients and at 4 captioned image posts).
        "max_ongoing_requests": max(64, max_concurrency), "max_queued_requests": 4 * max(64, max_concurrency),
        "max_queue_s": 120.0,
        "request_deadline_s": 120.0,  # closed-loop latency is measured, not shed (serve sheds at 2 s by default)
        "use_gpu": "no", "api_keys": [{"name": "bench", "roles": ["submitter"], "key": key}],
    }
    return settings, key


@contextmanager
def local_ray(threads: int, port: int, wait_policy: str | None = "PASSIVE"):
    """A private local Ray + Serve on 127.0.0.1:`port`; torch in its workers uses `threads` threads.

    `wait_policy` is OpenMP's OMP_WAIT_POLICY for the workers (None: the library default). PASSIVE makes
    idle OpenMP threads sleep instead of spin, which matters when the replica shares its cores with the
    proxy, the ingress and the clients: spinning threads take CPU from the very processes they wait on."""
    import ray
    from ray import serve as ray_serve

    # Ray sets OMP_NUM_THREADS to an actor's num_cpus (1 for the replica) unless it is set already; the
    # replica must get the same threads as the in-process run it is compared with. Workers inherit this env.
    env = {"OMP_NUM_THREADS": str(threads), **({"OMP_WAIT_POLICY": wait_policy} if wait_policy else {})}
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, configure_logging=False,
             log_to_driver=False)
    try:
        ray_serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield
    finally:
        ray_serve.shutdown()
        ray.shutdown()
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def deploy(build_app: Callable[[dict], object], settings: dict) -> None:
    """Run (or replace) the benchmark application; returns when its replicas are ready."""
    from ray import serve as ray_serve

    ray_serve.run(build_app(dict(settings)), name="bench", route_prefix="/")


class ServedProcess:
    """A `moderation serve` process: its base URL, what `/readyz` said while it started, and after the stop its
    exit status and how long the stop took."""

    def __init__(self, base: str, process, log_path: Path):
        self.base, self.process, self.log_path = base, process, log_path
        self.starting: list[tuple[int, str]] = []  # (status, reason) of each /readyz answer before it was ready
        self.exit_status: int | None = None
        self.stop_s: float | None = None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@contextmanager
def moderation_serve(folder: Path, settings: dict, num_cpus: int | None = None, ready_timeout_s: float = 600,
                     stop_timeout_s: float = 120):
    """`moderation serve --config folder/serve_settings.yaml` in its own process (cwd `folder`, offline); yields
    a `ServedProcess` once `/readyz` answers 200, and stops it with SIGTERM afterwards, as a container platform
    would (exit status and stop time recorded; killed if it outlives `stop_timeout_s`). Used by the production
    benchmark and by the tests that probe the service the way users run it."""
    import signal
    import subprocess
    import sys
    import time

    import httpx
    import yaml

    folder = Path(folder)
    config, log_path = folder / "serve_settings.yaml", folder / "serve.log"
    config.write_text(yaml.safe_dump(settings))
    base = f"http://{settings.get('host', '127.0.0.1')}:{settings['port']}"
    command = [sys.executable, "-m", "moderation.cli", "serve", "--config", str(config)]
    command += ["--num-cpus", str(num_cpus)] if num_cpus else []
    with open(log_path, "wb") as log_file:
        # Its own session, as a shell job or a service manager starts it: a signal to its process group
        # (Ctrl-C, systemd's default KillMode) reaches the service and the Ray processes it starts, never us.
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=folder,
                                   env={**os.environ, "HF_HUB_OFFLINE": "1"}, start_new_session=True)
        served = ServedProcess(base, process, log_path)
        try:
            deadline = time.monotonic() + ready_timeout_s
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"moderation serve exited with status {process.returncode} before it was "
                                       f"ready:\n{served.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moderation serve not ready within {ready_timeout_s:g} s:\n{served.log_tail()}")
                try:
                    r = httpx.get(f"{base}/readyz", timeout=10)
                    if r.status_code == 200:
                        break
                    served.starting.append((r.status_code, r.json().get("reason", "")))
                except (httpx.TransportError, ValueError):
                    pass
                time.sleep(0.3)
            yield served
        finally:
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)  # a no-op when a test already stopped it
            try:
                served.exit_status = process.wait(stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                served.exit_status = process.wait()
            served.stop_s = time.monotonic() - started


class CpuMeter:
    """CPU seconds (user + system) by role: this process, and each Ray process started under it."""

    def __init__(self):
        import psutil

        self.me = psutil.Process()

    def _role(self, proc) -> str:
        try:
            title = " ".join(proc.cmdline())
        except Exception:  # a process that exits between listing and reading is simply skipped
            return OTHER_RAY
        return next((role for needle, role in ROLES.items() if needle in title), OTHER_RAY)

    def snapshot(self) -> dict[str, float]:
        import psutil

        out = {SELF: sum(self.me.cpu_times()[:2])}
        for proc in self.me.children(recursive=True):
            try:
                cpu = sum(proc.cpu_times()[:2])
            except psutil.Error:
                continue
            role = self._role(proc)
            out[role] = out.get(role, 0.0) + cpu
        return out

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {role: max(0.0, after.get(role, 0.0) - before.get(role, 0.0)) for role in after}


def speed_only_multimodal_run(out: Path, image_kind: str = "efficientnet_lite0", image_size: int = 224) -> Path:
    """A text+image run directory for timing only: the default model's text side and config, an image
    encoder, and a late-fusion head whose image branch is untrained (seeded random). Never for quality."""
    import torch
    import yaml

    from moderation import runfiles
    from moderation.config import ImageEncoderConfig
    from moderation.encoders.image import build_image_encoder
    from moderation.model import ModerationModel

    src = runfiles.resolve_run_dir(None)
    out.mkdir(parents=True, exist_ok=True)
    tree = yaml.safe_load((src / runfiles.CONFIG).read_text())
    # Pixel features only (no OCR), into a trained-style late-fusion image branch: the timing of that path.
    tree["image_encoder"] = {"kind": image_kind, "image_size": image_size}
    tree["head"] = {**tree.get("head", {}), "image_branch": "trained"}
    tree["lexical"] = {"weight": 0.0}  # the timing model has no lexical view (a trained image branch takes none)
    (out / runfiles.CONFIG).write_text(yaml.safe_dump(tree, sort_keys=False))
    image_dim = build_image_encoder(ImageEncoderConfig(kind=image_kind, image_size=image_size)).dim
    trained, meta = ModerationModel.load(src)
    torch.manual_seed(0)
    model = ModerationModel(trained.categories, "late", meta["text_dim"], image_dim, meta["hidden_dim"],
                            meta["dropout"], trained.zero_shot, members=meta.get("members", 1))
    model.save(out, {"version": "speed-only-text+image", "note": "untrained image branch: timing only"})
    shutil.copy(src / runfiles.THRESHOLDS, out / runfiles.THRESHOLDS)
    return out
