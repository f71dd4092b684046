"""The review queue (serve.db) on both backends: SQLite in a temporary file, and PostgreSQL in a fresh
database per test on 127.0.0.1:5432 (REVIEW_QUEUE_TEST_PG overrides the admin URL; skipped, with the reason,
when the server is unreachable; those runs are integration tests). Texts are synthetic placeholders."""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from moderation.policy import Sampling, Thresholds
from serve.db import ClaimError, ItemNotFound, NewItem, compute_priority, open_queue
from serve.db.schema import VERSION_TABLE, metadata
from tests.conftest import database_url

CATEGORIES = ["toxicity", "hate", "harassment", "sexual", "violence", "self_harm"]
THRESHOLDS = Thresholds(categories={c: {"block": 0.8, "review": 0.4} for c in CATEGORIES})
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
SPAWN = mp.get_context("spawn")  # children open their own queue; a forked engine's pool must never be shared


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2030, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def post(post_id: str, fused: float = 0.6, category: str = "hate", **fields) -> NewItem:
    fields.setdefault("text", f"placeholder post {post_id} about the weather")
    scores = {category: {"fused": fused, "text": fused, "image": None}}
    return NewItem(post_id=post_id, scores=scores, action="review", model_version="m1", **fields)


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    yield from database_url(request, tmp_path, "review_queue")


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def queue(url, clock):
    with open_queue(url, categories=CATEGORIES, clock=clock) as q:
        yield q


def test_priority_is_closeness_to_block_threshold_times_severity():
    thresholds = Thresholds(categories={"hate": {"block": 0.8, "review": 0.4}, "violence": {"block": 0.8, "review": 0.4}})
    at_block = compute_priority({"hate": {"fused": 0.8}}, thresholds)
    near = compute_priority({"hate": {"fused": 0.7}}, thresholds)
    far = compute_priority({"hate": {"fused": 0.1}}, thresholds)
    assert at_block == 1.0 and at_block > near > far > 0
    assert compute_priority({"hate": {"fused": 0.4}}, thresholds) == pytest.approx(0.5)  # edge of the band
    # The most urgent category wins, weighted by severity.
    scores = {"hate": {"fused": 0.8}, "violence": {"fused": 0.6}}
    assert compute_priority(scores, thresholds, {"violence": 4.0}) == pytest.approx(4.0 * 2 / 3)
    with pytest.raises(ValueError, match="violence"):
        compute_priority(scores, Thresholds(categories={"hate": thresholds["hate"]}))
    # A plain {category: {"review", "block"}} is validated into Thresholds (review <= block).
    assert compute_priority({"hate": {"fused": 0.8}}, {"hate": {"block": 0.8, "review": 0.4}}) == 1.0
    with pytest.raises(ValueError, match="review threshold 0.9 is above the block threshold 0.8"):
        compute_priority({"hate": {"fused": 0.8}}, {"hate": {"block": 0.8, "review": 0.9}})


def test_enqueue_is_idempotent_and_never_overwrites_a_decision(queue):
    item_id, created = queue.enqueue(post("p1", fused=0.6), THRESHOLDS)
    assert created
    assert queue.enqueue(post("p1", fused=0.6), THRESHOLDS) == (item_id, False)
    [item] = queue.claim("alice", lease_seconds=60)
    queue.decide(item.id, "alice", "block", {"hate": 1})
    again = post("p1", fused=0.1, text="a different placeholder")
    assert queue.enqueue(again, THRESHOLDS) == (item_id, False)
    stored = queue.get(item_id)
    assert stored.status == "decided" and stored.scores["hate"]["fused"] == 0.6 and "different" not in stored.text
    assert queue.decision(item_id).labels == {"hate": 1}
    assert queue.stats()["pending"] == 0 and queue.stats()["by_reason"] == {"review_band": 1}


def test_enqueue_rejects_unknown_categories_and_bad_input(queue):
    with pytest.raises(ValueError, match="nudity"):
        queue.enqueue(post("p1", category="nudity"), Thresholds(categories={**THRESHOLDS.categories, "nudity": THRESHOLDS["hate"]}))
    with pytest.raises(ValueError, match="fused"):
        post("p2", fused=1.5)
    with pytest.raises(ValueError, match="image_mime"):
        post("p3", image=b"raw", image_mime=None)


def test_claims_serve_highest_priority_then_oldest(queue, clock):
    fused = {"far": 0.1, "tie_old": 0.6, "at_block": 0.8, "tie_new": 0.6, "near": 0.75}
    for post_id, score in fused.items():
        queue.enqueue(post(post_id, fused=score), THRESHOLDS)
        clock.advance(1)
    queue.enqueue(post("severe", fused=0.5, category="self_harm"), THRESHOLDS, severities={"self_harm": 3.0})
    expected = ["severe", "at_block", "near", "tie_old", "tie_new", "far"]
    assert [i.post_id for i in queue.list_pending(limit=10)] == expected
    assert [i.post_id for i in queue.list_pending(limit=2, offset=1)] == expected[1:3]
    claimed = queue.claim("alice", 60, n=4) + queue.claim("bob", 60, n=4)
    assert [i.post_id for i in claimed] == expected
    assert {i.claim_owner for i in claimed[:4]} == {"alice"} and queue.claim("carol", 60) == []


def test_expired_lease_returns_the_item_to_the_queue(queue, clock):
    item_id, _ = queue.enqueue(post("p1"), THRESHOLDS)
    queue.claim("alice", lease_seconds=30)
    assert queue.claim("bob", 30) == []
    assert queue.stats()["claimed"] == 1
    clock.advance(31)
    assert queue.stats()["pending"] == 1 and queue.stats()["oldest_pending_age_s"] == pytest.approx(31)
    [item] = queue.claim("bob", 30)
    assert item.id == item_id and item.claim_owner == "bob"
    with pytest.raises(ClaimError, match="claimed by 'bob'"):
        queue.decide(item_id, "alice", "allow", {})
    queue.decide(item_id, "bob", "allow", {"hate": 0})
    expired = [e for e in queue.audit(item_id) if e.event == "lease_expired"]
    assert len(expired) == 1 and expired[0].details["previous_owner"] == "alice"


def test_release_and_extend_lease(queue, clock):
    item_id, _ = queue.enqueue(post("p1"), THRESHOLDS)
    queue.claim("alice", 30)
    with pytest.raises(ClaimError, match="alice"):
        queue.release(item_id, "bob")
    clock.advance(20)
    assert queue.extend_lease(item_id, "alice", 30).lease_expires_at == clock.now + timedelta(seconds=30)
    clock.advance(20)  # past the first lease, inside the extended one
    assert queue.claim("bob", 30) == []
    assert queue.release(item_id, "alice").status == "pending"
    assert [i.id for i in queue.claim("bob", 30)] == [item_id]
    clock.advance(31)
    with pytest.raises(ClaimError, match="expired"):
        queue.extend_lease(item_id, "bob", 30)


def test_only_the_claimer_can_decide(queue):
    item_id, _ = queue.enqueue(post("p1"), THRESHOLDS)
    with pytest.raises(ClaimError, match="not claimed"):
        queue.decide(item_id, "alice", "block", {"hate": 1})
    queue.claim("alice", 60)
    with pytest.raises(ClaimError, match="claimed by 'alice'.*not by 'mallory'"):
        queue.decide(item_id, "mallory", "allow", {"hate": 0})
    with pytest.raises(ItemNotFound, match="12345"):
        queue.decide(12345, "alice", "block", {})
    decision = queue.decide(item_id, "alice", "block", {"hate": 1, "violence": 0}, note="placeholder note")
    assert (decision.item_id, decision.reviewer, decision.action) == (item_id, "alice", "block")
    with pytest.raises(ClaimError, match="already decided"):
        queue.decide(item_id, "alice", "allow", {})
    assert queue.decision(item_id) == decision


def test_decide_rejects_bad_labels_naming_them(queue, url):
    item_id, _ = queue.enqueue(post("p1"), THRESHOLDS)
    queue.claim("alice", 60)
    with pytest.raises(ValueError, match="'nudity'.*configured"):
        queue.decide(item_id, "alice", "block", {"hate": 1, "nudity": 1})
    for bad in (2, "1", 1.0, None):
        with pytest.raises(ValueError, match=r"labels\['violence'\]"):
            queue.decide(item_id, "alice", "block", {"violence": bad})
    with pytest.raises(ValueError, match="'escalate'.*allow"):
        queue.decide(item_id, "alice", "escalate", {})
    assert queue.get(item_id).status == "claimed" and queue.decision(item_id) is None
    assert "decided" not in [e.event for e in queue.audit(item_id)]
    # Without configured categories, labels are checked against the categories the item was scored on.
    with open_queue(url) as bare:
        with pytest.raises(ValueError, match="'violence'"):
            bare.decide(item_id, "alice", "block", {"violence": 1})


def test_audit_log_is_complete_and_append_only(queue, clock, tmp_path):
    item_id, _ = queue.enqueue(post("p1"), THRESHOLDS)
    queue.enqueue(post("p1"), THRESHOLDS)
    queue.claim("alice", 30)
    queue.release(item_id, "alice")
    queue.claim("bob", 30)
    queue.extend_lease(item_id, "bob", 60)
    clock.advance(61)
    queue.claim("carol", 30)
    queue.decide(item_id, "carol", "block", {"harassment": 1}, note="placeholder")
    queue.export_decisions(tmp_path / "out.jsonl")
    events = [(e.event, e.actor) for e in queue.audit(item_id)]
    assert events == [
        ("enqueued", "system"),
        ("enqueue_duplicate", "system"),
        ("claimed", "alice"),
        ("released", "alice"),
        ("claimed", "bob"),
        ("lease_extended", "bob"),
        ("lease_expired", "system"),
        ("claimed", "carol"),
        ("decided", "carol"),
    ]
    assert queue.audit(item_id)[-1].details["labels"] == {"harassment": 1}
    assert [e.event for e in queue.audit()][-1] == "exported"
    for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), queue.engine.begin() as conn:
            conn.execute(sa.text(statement))
    assert len(queue.audit()) == len(events) + 1


def _png(color: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _decide_all(queue, labels_by_post: dict[str, dict[str, int]]) -> None:
    for item in queue.claim("alice", 60, n=len(labels_by_post)):
        queue.decide(
            item.id,
            "alice",
            "block" if 1 in labels_by_post[item.post_id].values() else "allow",
            labels_by_post[item.post_id],
        )


def test_export_writes_generic_jsonl_with_images(queue, clock, tmp_path):
    red, blue = _png("red"), _png("blue")
    queue.enqueue(post("text-only"), THRESHOLDS)
    queue.enqueue(post("img", text=None, image=red, image_mime="image/png"), THRESHOLDS)
    queue.enqueue(post("user/42 both", image=blue, image_mime="image/png"), THRESHOLDS)
    labels = {"text-only": {"hate": 0}, "img": {"sexual": 1, "violence": 0}, "user/42 both": {}}
    _decide_all(queue, labels)
    queue.enqueue(post("undecided"), THRESHOLDS)
    out = tmp_path / "export" / "reviewed.jsonl"
    assert queue.export_decisions(out) == 3
    rows = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == set(labels)
    for post_id, row in rows.items():
        assert set(row) == {"id", "text", "image", "labels"} and row["labels"] == labels[post_id]
    assert rows["img"]["text"] is None and rows["text-only"]["image"] is None
    for post_id, image in (("img", red), ("user/42 both", blue)):
        path = rows[post_id]["image"]
        assert path.startswith("images/") and path.endswith(".png") and not Path(path).is_absolute()
        assert (out.parent / path).read_bytes() == image
    assert rows["img"]["image"] != rows["user/42 both"]["image"]
    clock.advance(60)
    since = clock.now
    queue.enqueue(post("later", fused=0.8), THRESHOLDS)  # served before "undecided"
    _decide_all(queue, {"later": {"toxicity": 1}})
    assert queue.export_decisions(tmp_path / "since.jsonl", since=since) == 1
    assert json.loads((tmp_path / "since.jsonl").read_text())["id"] == "later"


def test_export_reads_back_with_the_generic_loader(tmp_path):
    generic = pytest.importorskip("moderation.data.generic")
    with open_queue(f"sqlite:///{tmp_path / 'q.db'}", categories=CATEGORIES) as queue:
        queue.enqueue(post("a"), THRESHOLDS)
        queue.enqueue(post("b", text=None, image=_png("green"), image_mime="image/png"), THRESHOLDS)
        _decide_all(queue, {"a": {"hate": 1}, "b": {"sexual": 0}})
        queue.export_decisions(tmp_path / "data" / "reviewed.jsonl")
    rows = generic.read_jsonl_rows(tmp_path / "data" / "reviewed.jsonl", CATEGORIES)
    by_id = {row["id"]: row for row in rows}
    assert sorted(by_id) == ["a", "b"]
    assert by_id["a"]["image"] is None and Path(by_id["b"]["image"]).is_file()


def _claim_until_empty(queue, reviewer: str, n: int) -> list[int]:
    ids = []
    while batch := queue.claim(reviewer, lease_seconds=600, n=n):
        ids.extend(item.id for item in batch)
        time.sleep(0.001)  # a reviewer reads between claims; lets every claimer in, so they really contend
    return ids


def _fill(queue, count: int) -> set[int]:
    return {queue.enqueue(post(f"p{i}", fused=(i % 50) / 50), THRESHOLDS)[0] for i in range(count)}


def test_concurrent_claimers_in_threads_never_share_an_item(queue):
    all_ids = _fill(queue, 120)
    results: dict[str, list[int]] = {}
    start = threading.Barrier(4)

    def worker(name: str, n: int) -> None:
        start.wait()
        results[name] = _claim_until_empty(queue, name, n)

    threads = [threading.Thread(target=worker, args=(f"t{k}", k + 1)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    claimed = [i for ids in results.values() for i in ids]
    assert len(claimed) == len(set(claimed)) and set(claimed) == all_ids
    assert sum(1 for ids in results.values() if ids) >= 2  # they really did share the work


def _process_claimer(url: str, name: str, n: int, opened, filled, results) -> None:
    with open_queue(url, categories=CATEGORIES) as queue:  # all open a fresh database at once: one migrates
        opened.wait(timeout=60)
        filled.wait(timeout=60)
        results.put((name, _claim_until_empty(queue, name, n)))


def test_concurrent_claimers_in_processes_never_share_an_item(url):
    opened, filled, results = SPAWN.Barrier(4), SPAWN.Barrier(4), SPAWN.Queue()
    args = [(url, f"proc{k}", k + 1, opened, filled, results) for k in range(3)]
    procs = [SPAWN.Process(target=_process_claimer, args=a) for a in args]
    for proc in procs:
        proc.start()
    opened.wait(timeout=60)
    with open_queue(url, categories=CATEGORIES) as queue:
        all_ids = _fill(queue, 120)
    filled.wait(timeout=60)
    got = dict(results.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    claimed = [i for ids in got.values() for i in ids]
    assert len(claimed) == len(set(claimed)) and set(claimed) == all_ids


def _claim_decide_then_hang(url: str, decide: bool, lease_seconds: int, done) -> None:
    queue = open_queue(url, categories=CATEGORIES)
    [item] = queue.claim("doomed", lease_seconds=lease_seconds)
    if decide:
        queue.decide(item.id, "doomed", "block", {"violence": 1}, note="placeholder")
    done.set()  # the call has returned: from here on, nothing may be lost
    time.sleep(600)


def _kill_after(url: str, decide: bool, lease_seconds: int) -> None:
    done = SPAWN.Event()
    child = SPAWN.Process(target=_claim_decide_then_hang, args=(url, decide, lease_seconds, done))
    child.start()
    try:
        assert done.wait(timeout=60), "the child never reported back"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL


def test_decision_survives_sigkill_right_after_decide(url):
    with open_queue(url, categories=CATEGORIES) as queue:
        item_id, _ = queue.enqueue(post("p1"), THRESHOLDS)
    _kill_after(url, decide=True, lease_seconds=600)
    with open_queue(url, categories=CATEGORIES) as reopened:
        decision = reopened.decision(item_id)
        assert decision is not None and decision.labels == {"violence": 1} and decision.reviewer == "doomed"
        assert reopened.get(item_id).status == "decided"
        assert [e.event for e in reopened.audit(item_id)][-1] == "decided"


def test_item_claimed_by_killed_process_returns_after_its_lease(url):
    with open_queue(url, categories=CATEGORIES) as queue:
        item_id, _ = queue.enqueue(post("p1"), THRESHOLDS)
    _kill_after(url, decide=False, lease_seconds=30)
    with open_queue(url, categories=CATEGORIES) as reopened:
        assert reopened.claim("alice", 60) == []  # the lease is still live
    later = FakeClock(datetime.now(timezone.utc) + timedelta(seconds=31))
    with open_queue(url, categories=CATEGORIES, clock=later) as reopened:
        assert [i.id for i in reopened.claim("alice", 60)] == [item_id]
        assert reopened.audit(item_id)[-2].details["previous_owner"] == "doomed"


def test_migrated_schema_matches_schema_module(queue, url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with queue.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, metadata) == []
    open_queue(url).close()  # opening an up-to-date database again is a no-op


def test_open_queue_rejects_unsupported_urls(tmp_path):
    with pytest.raises(ValueError, match="'mysql'.*sqlite:///"):
        open_queue("mysql://user@localhost/db")
    with pytest.raises(ValueError, match="in-memory"):
        open_queue("sqlite://")


def test_second_review_reopens_a_decided_item_for_someone_else(queue, tmp_path):
    item_id, _ = queue.enqueue(post("p1"), THRESHOLDS)
    with pytest.raises(ClaimError, match="pending, not decided"):
        queue.request_second_review(item_id, "lead")
    queue.claim("alice", 60)
    first = queue.decide(item_id, "alice", "block", {"hate": 1})
    assert queue.request_second_review(item_id, "lead", note="spot check").status == "pending"
    assert queue.claim("alice", 60) == []  # never back to the reviewer who already decided it
    [item] = queue.claim("bob", 60)
    second = queue.decide(item.id, "bob", "allow", {"hate": 0})
    assert queue.decisions_for(item_id) == [first, second] and queue.decision(item_id) == first
    assert [e.event for e in queue.audit(item_id)][-3:] == ["second_review_requested", "claimed", "decided"]
    [review] = list(queue.reviews())
    assert review.decisions == (first, second) and review.reason == "review_band"
    # Exports hold each post once, with the latest decision's labels.
    assert queue.export_decisions(tmp_path / "out.jsonl") == 1
    assert json.loads((tmp_path / "out.jsonl").read_text())["labels"] == {"hate": 0}
    with pytest.raises(sa.exc.IntegrityError):  # the database itself refuses a second vote by one reviewer
        with queue.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO decisions (item_id, reviewer, action, labels, note, decided_at) "
                                 "VALUES (:i, 'alice', 'allow', '{}', '', :t)"), {"i": item_id, "t": first.decided_at})


def test_migration_0003_keeps_decisions_made_before_it(url):
    from alembic import command

    from serve.db.engine import alembic_config, create_queue_engine, write_transaction

    engine = create_queue_engine(url)
    config = alembic_config()
    with write_transaction(engine) as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    with write_transaction(engine) as conn:
        conn.execute(sa.text("INSERT INTO items (post_id, scores, action, model_version, priority, status, reason, "
                             "created_at) VALUES ('old', '{}', 'review', 'm0', 0.5, 'decided', 'review_band', :t)"),
                     {"t": now.replace(tzinfo=None)})
        conn.execute(sa.text("INSERT INTO decisions (item_id, reviewer, action, labels, note, decided_at) "
                             "VALUES (1, 'alice', 'block', '{\"hate\": 1}', '', :t)"), {"t": now.replace(tzinfo=None)})
    engine.dispose()
    with open_queue(url, categories=CATEGORIES) as queue:
        assert queue.decision(1).labels == {"hate": 1} and queue.decision(1).reviewer == "alice"
        queue.request_second_review(1, "lead")
        [item] = queue.claim("bob", 60)
        queue.decide(item.id, "bob", "block", {"hate": 1})
        assert [d.reviewer for d in queue.decisions_for(1)] == ["alice", "bob"]


def test_items_and_reviews_carry_the_sampling_rates_they_were_enqueued_under(queue):
    rates = Sampling(random_review_rate=0.05, block_review_rate=0.2)
    sampled, _ = queue.enqueue(post("sampled", fused=0.1, reason="random_sample", sampling=rates), THRESHOLDS)
    plain, _ = queue.enqueue(post("plain"), THRESHOLDS)
    assert queue.get(sampled).sampling == rates and queue.get(plain).sampling is None
    reviews = {r.post_id: r for r in queue.reviews()}
    assert reviews["sampled"].sampling == rates and reviews["sampled"].reason == "random_sample"
    assert reviews["plain"].sampling is None
    with pytest.raises(ValueError, match="sampling must be a moderation.policy.Sampling"):
        post("bad", sampling={"random_review_rate": 0.1})


def test_migration_0004_leaves_older_items_without_sampling(url):
    from alembic import command

    from serve.db.engine import alembic_config, create_queue_engine, write_transaction

    engine = create_queue_engine(url)
    config = alembic_config()
    with write_transaction(engine) as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0003")
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    with write_transaction(engine) as conn:
        conn.execute(sa.text("INSERT INTO items (post_id, scores, action, model_version, priority, status, reason, "
                             "created_at) VALUES ('old', :s, 'review', 'm0', 0.5, 'pending', 'random_sample', :t)"),
                     {"s": json.dumps({"hate": {"fused": 0.1, "text": 0.1, "image": None}}), "t": now.replace(tzinfo=None)})
    engine.dispose()
    with open_queue(url, categories=CATEGORIES) as queue:
        assert queue.get(1).sampling is None and next(queue.reviews()).sampling is None
        new_id, _ = queue.enqueue(post("new", sampling=Sampling(random_review_rate=0.5)), THRESHOLDS)
        assert queue.get(new_id).sampling == Sampling(random_review_rate=0.5)


def test_a_reviewer_undoes_their_own_decision_within_the_window_only(queue, clock):
    item_id, _ = queue.enqueue(post("u1"), THRESHOLDS)
    with pytest.raises(ClaimError, match="pending, not decided"):
        queue.undo_decision(item_id, "alice", 120, 60)
    queue.claim("alice", 60)
    queue.decide(item_id, "alice", "block", {"hate": 1}, note="slip")
    with pytest.raises(ClaimError, match="made by 'alice', not by 'bob'"):
        queue.undo_decision(item_id, "bob", 120, 60)
    clock.advance(30)
    item = queue.undo_decision(item_id, "alice", 120, 60)
    assert (item.status, item.claim_owner) == ("claimed", "alice") and queue.decision(item_id) is None
    assert queue.audit(item_id)[-1].event == "decision_undone" and queue.audit(item_id)[-1].details["note"] == "slip"
    queue.decide(item_id, "alice", "allow", {"hate": 0})  # decided anew on the claim the undo gave back
    clock.advance(121)
    with pytest.raises(ClaimError, match="can be undone within 120 s"):
        queue.undo_decision(item_id, "alice", 120, 60)
    assert queue.decision(item_id).action == "allow"
    with pytest.raises(ItemNotFound):
        queue.undo_decision(10_000, "alice", 120, 60)


def test_claims_can_be_limited_to_a_category_a_reason_and_enqueue_dates(queue, clock):
    from serve.db.queries import ClaimFilter

    queue.enqueue(post("hate-high", 0.7, "hate"), THRESHOLDS)
    clock.advance(3600)
    queue.enqueue(post("violence-high", 0.7, "violence"), THRESHOLDS)
    queue.enqueue(post("hate-low", 0.2, "hate", reason="random_sample"), THRESHOLDS)
    later = clock.now
    ids = lambda items: [i.post_id for i in items]  # noqa: E731

    def claim(**only):
        claimed = queue.claim("alice", 60, n=10, only=ClaimFilter(**only))
        for item in claimed:
            queue.release(item.id, "alice")
        return sorted(ids(claimed))

    assert claim(category="hate", category_min={"m1": 0.4}) == ["hate-high"]  # at or above hate's review threshold
    assert claim(category="hate", category_min={"m1": 0.1}) == ["hate-high", "hate-low"]
    assert claim(category="hate", default_min=0.5) == ["hate-high"]  # unknown versions: 0.5
    assert claim(reason="random_sample") == ["hate-low"]
    assert claim(since=later) == ["hate-low", "violence-high"] and claim(until=later) == ["hate-high"]
    assert claim(category="violence", reason="random_sample") == []
    assert queue.open_versions() == ["m1"]
