"""The prediction log (serve.db.prediction_log) on both backends: SQLite in a temporary file, and PostgreSQL in
a fresh database per test on 127.0.0.1:5432 (REVIEW_QUEUE_TEST_PG overrides the admin URL; skipped, with the
reason, when the server is unreachable; those runs are integration tests). Texts are synthetic placeholders."""

from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from serve.db import LoggedPrediction, open_prediction_log, open_queue
from serve.settings import ServeSettings
from tests.conftest import database_url

START = datetime(2030, 1, 1, tzinfo=timezone.utc)
PNG = b"\x89PNG\r\n\x1a\n placeholder bytes"


class FakeClock:
    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def entry(post_id: str, hate: float = 0.3, action: str = "allow", version: str = "m1", **fields) -> LoggedPrediction:
    fields.setdefault("text", f"placeholder post {post_id} about the weather")
    return LoggedPrediction(post_id=post_id, model_version=version, scores={"hate": hate, "violence": 1 - hate},
                            action=action, **fields)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def url(request, tmp_path):
    yield from database_url(request, tmp_path, "prediction_log")


@pytest.fixture
def clock():
    return FakeClock()


def test_record_and_read_back(url, clock):
    with open_prediction_log(url, clock=clock) as log:
        assert log.record([entry("p1", 0.1), entry("p2", 0.9, "block", drivers=["hate"], reason="threshold"),
                           entry("p3", 0.5, "review", version="m2", reason="review_band", review_item_id=7)]) == 3
        categories, scores = log.scores(model_version="m1")
        assert categories == ["hate", "violence"]
        np.testing.assert_allclose(scores, [[0.1, 0.9], [0.9, 0.1]])
        assert log.count() == 3 and log.count(model_version="m2") == 1
        assert log.versions() == {"m1": 2, "m2": 1}
        window = log.window()
        assert window.actions == ["allow", "block", "review"]
        assert window.reasons == [None, "threshold", "review_band"]
        [row] = log.content("p3")
        assert row["review_item_id"] == 7 and row["created_at"] == START and row["drivers"] == []
        assert log.content("p2")[0]["drivers"] == ["hate"]


def test_time_window_is_since_inclusive_until_exclusive(url, clock):
    with open_prediction_log(url, clock=clock) as log:
        log.record([entry(f"p{h}", created_at=START + timedelta(hours=h)) for h in range(5)])
        assert log.count(since=START + timedelta(hours=1), until=START + timedelta(hours=3)) == 2
        window = log.window(limit=2)  # the newest rows, returned oldest first
        assert [t.hour for t in window.created_at] == [3, 4]
        with pytest.raises(ValueError, match="naive"):
            log.count(since=datetime(2030, 1, 1))


def test_content_is_stored_only_when_enabled(url, clock):
    with open_prediction_log(url, clock=clock) as log:
        log.record([entry("quiet", image=PNG, image_mime="image/png")])
        [row] = log.content("quiet")
        assert (row["text"], row["image"], row["image_mime"]) == (None, None, None)
    with open_prediction_log(url, log_content=True, clock=clock) as log:
        log.record([entry("kept", image=PNG, image_mime="image/png")])
        [row] = log.content("kept")
        assert row["text"] == "placeholder post kept about the weather"
        assert bytes(row["image"]) == PNG and row["image_mime"] == "image/png"


def test_retention_purge_empties_content_but_keeps_scores(url, clock):
    with open_prediction_log(url, log_content=True, retention_days=7, clock=clock) as log:
        log.record([entry("old", 0.8, "block", image=PNG, image_mime="image/png")])
        clock.now = START + timedelta(days=3)
        log.record([entry("new", 0.2)])
        assert log.purge_expired(now=START + timedelta(days=6)) == 0
        assert log.purge_expired(now=START + timedelta(days=8)) == 1
        [old], [new] = log.content("old"), log.content("new")
        assert (old["text"], old["image"], old["image_mime"]) == (None, None, None)
        assert old["scores"] == {"hate": 0.8, "violence": pytest.approx(0.2)} and old["action"] == "block"
        assert new["text"] is not None
        assert log.purge_expired(now=START + timedelta(days=8)) == 0  # nothing left to empty
    # Opening purges too, whatever log_content is now (content logged earlier still expires).
    with open_prediction_log(url, retention_days=7, clock=FakeClock(START + timedelta(days=11))) as log:
        assert log.content("new")[0]["text"] is None
        assert log.count() == 2


def test_long_lived_writers_purge_hourly_and_readers_never_purge(url, clock):
    with open_prediction_log(url, log_content=True, retention_days=1, clock=clock) as log:
        log.record([entry("old")])  # the first record purges (nothing yet), then not again for an hour
        clock.now = START + timedelta(days=2)
        with open_prediction_log(url, retention_days=1, clock=clock, purge=False) as reader:
            reader.record([entry("by-reader")])
            assert reader.content("old")[0]["text"] is not None
        log.record([entry("new")])  # over an hour since the last purge: this one purges
        assert log.content("old")[0]["text"] is None and log.content("new")[0]["text"] is not None


def test_concurrent_writers_lose_nothing(url, clock):
    # Two open logs stand in for two replicas; four threads each, one transaction per "request".
    logs = [open_prediction_log(url, clock=clock) for _ in range(2)]
    errors = []

    def writer(log, worker: int) -> None:
        try:
            for request in range(10):
                log.record([entry(f"w{worker}-r{request}-{i}", hate=i / 4) for i in range(3)])
        except Exception as exc:  # surfaced below: an exception in a thread would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(logs[w % 2], w)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert logs[0].count() == 8 * 10 * 3
    for log in logs:
        log.close()


def test_shares_the_queue_database_and_rejects_bad_entries(url, clock):
    with open_queue(url) as queue, open_prediction_log(url, clock=clock) as log:
        assert queue.stats()["pending"] == 0  # both schemas live side by side, one migration history
        with pytest.raises(ValueError, match="'maybe'"):
            log.record([entry("p", action="maybe")])
        with pytest.raises(ValueError, match="'hate' is nan"):
            log.record([LoggedPrediction("p", "m1", {"hate": math.nan}, "allow")])
        assert log.record([]) == 0 and log.count() == 0
    with pytest.raises(ValueError, match="retention_days = 0"):
        open_prediction_log(url, retention_days=0)


def test_serve_settings_wire_the_log():
    settings = ServeSettings(auth="disabled", queue_url="sqlite:///q.db")
    assert settings.prediction_log and not settings.log_content and settings.log_url == "sqlite:///q.db"
    with pytest.raises(ValueError, match="log_content is on but prediction_log is off"):
        ServeSettings(auth="disabled", prediction_log=False, log_content=True)
