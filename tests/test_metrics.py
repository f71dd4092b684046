"""Prometheus metrics (serve.metrics): base-unit names, answers counted by route and status (errors included),
the queue gauges refreshed on scrape, the model info; docs/prometheus-alerts.yaml uses only exposed names.
Unit tests on a small FastAPI app; tests/test_compat.py checks the same against the running service."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ALERTS = Path(__file__).resolve().parent.parent / "docs" / "prometheus-alerts.yaml"


def alert_rule_metric_names() -> set[str]:
    """The metric names the example alert rules use (parsed as YAML, names read from each `expr`)."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    exprs = [rule["expr"] for group in groups for rule in group["rules"]]
    return {name for expr in exprs for name in re.findall(r"\b(moderation_[a-z_]+)\b", expr)}


def exposed_names(text: str) -> set[str]:
    """Every series name a /metrics text can carry, samples or not (a labelled counter with no sample yet
    still has its # TYPE line; a histogram's series are name_bucket / _sum / _count)."""
    names = {line.split("{")[0].split()[0] for line in text.splitlines() if line and not line.startswith("#")}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "info": ("_info",)}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            base = name.removesuffix("_total")
            names |= {base + s for s in suffixes.get(kind, ("",))}
    return names


def instrumented_app(queue_stats=None):
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import PlainTextResponse

    from serve.metrics import ServiceMetrics, instrument

    metrics = ServiceMetrics(queue_stats=queue_stats)
    app = FastAPI()

    @app.get("/items/{item_id}")
    def item(item_id: int):
        if item_id == 0:
            raise HTTPException(422, "no item 0")
        if item_id == 1:
            raise RuntimeError("boom")
        return {"id": item_id}

    @app.get("/metrics")
    def render():
        return PlainTextResponse(metrics.render())

    instrument(app, lambda: metrics)
    return app, metrics


def sample(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.split()[-1])
    return None


def test_answers_are_counted_by_route_template_and_status_errors_included():
    from fastapi.testclient import TestClient

    app, _ = instrumented_app()
    client = TestClient(app, raise_server_exceptions=False)
    for path in ("/items/5", "/items/6", "/items/0", "/items/1", "/nowhere"):
        client.get(path)
    text = client.get("/metrics").text
    total = "moderation_http_requests_total"
    assert sample(text, total, route="/items/{item_id}", method="GET", status="200") == 2  # the template, not the path
    assert sample(text, total, route="/items/{item_id}", status="422") == 1
    assert sample(text, total, route="/items/{item_id}", status="500") == 1  # an unhandled error counts as 500
    assert sample(text, total, route="unmatched", status="404") == 1
    assert "_ms" not in text and "moderation_request_duration_seconds_bucket" in text


def test_queue_gauges_are_read_on_scrape_at_most_every_few_seconds():
    from fastapi.testclient import TestClient

    calls = []

    def stats():
        calls.append(1)
        return {"pending": 7, "claimed": 2, "oldest_pending_age_s": 30.5}

    app, metrics = instrumented_app(stats)
    client = TestClient(app)
    first = client.get("/metrics").text
    client.get("/metrics")
    assert len(calls) == 1  # the second scrape reused the stats (QUEUE_STATS_MAX_AGE_S)
    assert sample(first, "moderation_review_queue_pending") == 7
    assert sample(first, "moderation_review_queue_oldest_pending_age_seconds") == 30.5
    metrics.set_model_version("v3")
    assert sample(metrics.render().decode(), "moderation_model_info", model_version="v3") == 1


def test_a_failing_queue_read_does_not_fail_the_scrape():
    from fastapi.testclient import TestClient

    def broken():
        raise OSError("database gone")

    app, _ = instrumented_app(broken)
    assert TestClient(app).get("/metrics").status_code == 200


def test_alert_rules_parse_and_use_only_exposed_metrics():
    from serve.metrics import ServiceMetrics

    used = alert_rule_metric_names()
    assert {"moderation_http_requests_total", "moderation_request_duration_seconds_bucket",
            "moderation_review_queue_pending", "moderation_model_info"} <= used
    exposed = exposed_names(ServiceMetrics().render().decode())
    assert used <= exposed, used - exposed
