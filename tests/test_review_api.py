"""The reviewer HTTP API (serve.review_api) through FastAPI's TestClient over a temporary SQLite queue:
auth per role, claim -> decide, claim conflicts, label checks, images, export, thresholds and drivers per item,
and the page itself. Texts are synthetic placeholders. (The same router in the running service:
tests/test_serve.py.)"""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from moderation.policy import ClassThresholds, Sampling, Scoring, Thresholds
from serve.auth import Authenticator
from serve.db import NewItem, open_queue
from serve.review_api import ReviewContext, mount_review
from serve.settings import ServeSettings

CATEGORIES = ["toxicity", "hate", "violence"]
THRESHOLDS = Thresholds(categories={
    "toxicity": ClassThresholds(review=0.4, block=0.8, block_target_met=True),
    "hate": ClassThresholds(review=0.4, block=0.8, block_target_met=True),
    "violence": ClassThresholds(review=0.4, block=0.8, scoring=Scoring.ZERO_SHOT),
})
KEYS = {
    "alice": ("alice-reviewer-key-0001", ["reviewer"]),
    "bob": ("bob-reviewer-key-000002", ["reviewer"]),
    "poster": ("poster-submitter-key-03", ["submitter"]),
    "root": ("root-admin-key-00000004", ["admin"]),
}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name][0]}"}


def png_bytes(colour: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def post(post_id: str, hate: float, **fields) -> NewItem:
    fields.setdefault("text", f"placeholder post {post_id} about the weather")
    scores = {"toxicity": {"fused": 0.2, "text": 0.25, "image": None},
              "hate": {"fused": hate, "text": hate, "image": None}}
    return NewItem(post_id=post_id, scores=scores, action="review", model_version="m1", **fields)


def make_app(queue, auth: str = "required") -> FastAPI:
    keys = [{"key": key, "name": name, "roles": roles} for name, (key, roles) in KEYS.items()]
    settings = ServeSettings(auth=auth, api_keys=keys if auth == "required" else [], review_lease_s=120)
    app = FastAPI()
    context = ReviewContext(lambda: queue, settings, CATEGORIES, {"m1": THRESHOLDS}.get)
    authenticator = Authenticator(settings)
    mount_review(app, lambda: context, lambda: authenticator)
    return app


@pytest.fixture
def queue(tmp_path):
    with open_queue(f"sqlite:///{tmp_path / 'queue.db'}", categories=CATEGORIES) as q:
        yield q


@pytest.fixture
def client(queue):
    with TestClient(make_app(queue)) as c:
        yield c


def test_review_endpoints_need_a_reviewer_key(client):
    assert client.get("/v1/review/stats").status_code == 401
    assert client.get("/v1/review/stats", headers={"Authorization": "Bearer wrong-key-wrong-key"}).status_code == 401
    refused = client.post("/v1/review/claim", json={}, headers=bearer("poster"))
    assert refused.status_code == 403 and "reviewer" in refused.json()["detail"]
    assert client.get("/v1/review/items", headers=bearer("poster")).status_code == 403
    assert client.get("/v1/review/stats", headers=bearer("alice")).status_code == 200
    assert client.get("/v1/review/stats", headers=bearer("root")).status_code == 200  # admin implies reviewer
    assert client.get("/v1/review/audit", headers=bearer("alice")).status_code == 403  # audit is admin-only
    assert client.post("/v1/review/export", headers=bearer("alice")).status_code == 403


def test_claim_then_decide_round_trip(client, queue):
    queue.enqueue(post("low", hate=0.45), THRESHOLDS)
    urgent_id, _ = queue.enqueue(post("urgent", hate=0.79), THRESHOLDS)
    pending = client.get("/v1/review/items", headers=bearer("alice")).json()["items"]
    assert [i["post_id"] for i in pending] == ["urgent", "low"]  # claim order: closest to the block threshold

    answer = client.post("/v1/review/claim", json={"n": 1}, headers=bearer("alice"))
    assert answer.status_code == 200 and answer.json()["lease_s"] == 120
    [item] = answer.json()["items"]
    assert item["id"] == urgent_id and item["text"].startswith("placeholder post urgent")
    assert item["scores"]["hate"] == {"fused": 0.79, "text": 0.79, "image": None}
    assert item["model_action"] == "review" and item["reason"] == "review_band" and item["model_version"] == "m1"
    assert item["suggested_labels"] == {"toxicity": 0, "hate": 1} and item["image_url"] is None
    assert item["suggestion_rule"] == "fused score >= the category's review threshold"
    hate = item["thresholds"]["hate"]
    assert (hate["review"], hate["block"], hate["may_block"], hate["no_block_reason"]) == (0.4, 0.8, True, None)
    assert set(item["thresholds"]) == {"toxicity", "hate"}  # the categories the item was scored on
    assert item["drivers"] == ["hate"] and item["sampling"] is None

    body = {"action": "block", "labels": {"hate": 1, "toxicity": 0}, "note": "placeholder note"}
    decided = client.post(f"/v1/review/items/{urgent_id}/decision", json=body, headers=bearer("alice"))
    assert decided.status_code == 200, decided.text
    assert decided.json()["reviewer"] == "alice" and decided.json()["labels"] == {"hate": 1, "toxicity": 0}
    detail = client.get(f"/v1/review/items/{urgent_id}", headers=bearer("alice")).json()
    assert detail["status"] == "decided" and detail["decision"]["action"] == "block"
    stats = client.get("/v1/review/stats", headers=bearer("alice")).json()
    assert stats["pending"] == 1 and stats["decided"] == 1 and stats["by_action"] == {"block": 1}
    again = client.post(f"/v1/review/items/{urgent_id}/decision", json=body, headers=bearer("alice"))
    assert again.status_code == 409 and "already decided" in again.json()["detail"]


def test_second_reviewer_cannot_decide_or_release_the_first_ones_claim(client, queue):
    item_id, _ = queue.enqueue(post("p1", hate=0.6), THRESHOLDS)
    client.post("/v1/review/claim", json={}, headers=bearer("alice"))
    assert client.post("/v1/review/claim", json={}, headers=bearer("bob")).json()["items"] == []
    body = {"action": "allow", "labels": {"hate": 0}}
    refused = client.post(f"/v1/review/items/{item_id}/decision", json=body, headers=bearer("bob"))
    assert refused.status_code == 409 and "'alice'" in refused.json()["detail"]
    assert client.post(f"/v1/review/items/{item_id}/release", headers=bearer("bob")).status_code == 409
    extended = client.post(f"/v1/review/items/{item_id}/extend", json={"lease_s": 600}, headers=bearer("alice"))
    assert extended.status_code == 200 and extended.json()["claim_owner"] == "alice"
    released = client.post(f"/v1/review/items/{item_id}/release", headers=bearer("alice"))
    assert released.status_code == 200 and released.json()["status"] == "pending"
    assert client.post("/v1/review/claim", json={}, headers=bearer("bob")).json()["items"][0]["id"] == item_id


def test_bad_labels_and_unknown_items_are_refused_with_the_reason(client, queue):
    item_id, _ = queue.enqueue(post("p1", hate=0.6), THRESHOLDS)
    client.post("/v1/review/claim", json={}, headers=bearer("alice"))
    url = f"/v1/review/items/{item_id}/decision"
    unknown = client.post(url, json={"action": "block", "labels": {"spam": 1}}, headers=bearer("alice"))
    assert unknown.status_code == 422 and "'spam'" in unknown.json()["detail"] and "hate" in unknown.json()["detail"]
    bad_value = client.post(url, json={"action": "block", "labels": {"hate": 2}}, headers=bearer("alice"))
    assert bad_value.status_code == 422 and bad_value.json()["detail"][0]["loc"][-1] == "hate"
    bad_action = client.post(url, json={"action": "escalate", "labels": {}}, headers=bearer("alice"))
    assert bad_action.status_code == 422 and bad_action.json()["detail"][0]["loc"][-1] == "action"
    assert client.get(f"/v1/review/items/{item_id}", headers=bearer("alice")).json()["status"] == "claimed"
    missing = client.post("/v1/review/items/999/decision", json={"action": "allow"}, headers=bearer("alice"))
    assert missing.status_code == 404 and "999" in missing.json()["detail"]
    assert client.get("/v1/review/items/999", headers=bearer("alice")).status_code == 404


def test_image_endpoint_serves_the_bytes_with_their_mime_type(client, queue):
    image = png_bytes()
    item_id, _ = queue.enqueue(post("img", hate=0.6, image=image, image_mime="image/png"), THRESHOLDS)
    text_id, _ = queue.enqueue(post("txt", hate=0.5), THRESHOLDS)
    item = client.get(f"/v1/review/items/{item_id}", headers=bearer("alice")).json()
    assert item["image_url"] == f"/v1/review/items/{item_id}/image" and item["image_mime"] == "image/png"
    assert client.get(item["image_url"]).status_code == 401
    answer = client.get(item["image_url"], headers=bearer("alice"))
    assert answer.status_code == 200 and answer.content == image
    assert answer.headers["content-type"] == "image/png" and "sandbox" in answer.headers["content-security-policy"]
    none = client.get(f"/v1/review/items/{text_id}/image", headers=bearer("alice"))
    assert none.status_code == 404 and "no image" in none.json()["detail"]


def test_export_returns_generic_jsonl_rows_with_their_images(client, queue):
    image = png_bytes("blue")
    queue.enqueue(post("img", hate=0.7, image=image, image_mime="image/png"), THRESHOLDS)
    queue.enqueue(post("txt", hate=0.5), THRESHOLDS)
    for item in client.post("/v1/review/claim", json={"n": 2}, headers=bearer("alice")).json()["items"]:
        labels = {"hate": int(item["post_id"] == "img")}
        client.post(f"/v1/review/items/{item['id']}/decision", json={"action": "allow", "labels": labels},
                    headers=bearer("alice"))
    answer = client.post("/v1/review/export", json={}, headers=bearer("root"))
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    assert answer.headers["x-export-rows"] == "2"
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    rows = {row["id"]: row for row in map(json.loads, archive.read("reviewed.jsonl").decode().splitlines())}
    assert set(rows) == {"img", "txt"} and all(set(r) == {"id", "text", "image", "labels"} for r in rows.values())
    assert rows["img"]["labels"] == {"hate": 1} and rows["txt"]["labels"] == {"hate": 0}
    assert rows["txt"]["image"] is None and archive.read(rows["img"]["image"]) == image
    naive = client.post("/v1/review/export", json={"since": "2030-01-01T00:00:00"}, headers=bearer("root"))
    assert naive.status_code == 422 and naive.json()["detail"][0]["loc"][-1] == "since"
    events = client.get("/v1/review/audit", headers=bearer("root")).json()
    assert events[-1]["event"] == "exported" and events[-1]["details"]["rows"] == 2


def test_page_is_served_with_the_shortcuts(client):
    page = client.get("/review")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for key in ("A", "B", "1", "9", "S", "Enter"):
        assert f"<kbd>{key}</kbd>" in page.text
    assert 'data-auth="required"' in page.text and "__ROOT__" not in page.text
    assert client.get("/review/static/review.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/review/static/review.css").status_code == 200
    assert client.get("/review/static/..%2Fauth.py").status_code == 404


def test_auth_disabled_names_the_reviewer_from_the_header_and_flags_the_page(queue):
    with TestClient(make_app(queue, auth="disabled")) as client:
        assert 'data-auth="disabled"' in client.get("/review").text
        config = client.get("/v1/review/config", headers={"X-Reviewer": "carol"}).json()
        assert config["auth_disabled"] and config["reviewer"] == "carol" and config["categories"] == CATEGORIES
        assert client.get("/v1/review/config").json()["reviewer"] == "local-dev"


def test_item_shows_which_classes_never_block_its_drivers_and_sampling(client, queue):
    scores = {"hate": {"fused": 0.2, "text": 0.2, "image": None},
              "violence": {"fused": 0.95, "text": 0.95, "image": None}}
    item_id, _ = queue.enqueue(NewItem(post_id="zs", scores=scores, action="review", model_version="m1",
                                       text="placeholder post about a match", sampling=Sampling(random_review_rate=0.03)),
                               THRESHOLDS)
    item = client.get(f"/v1/review/items/{item_id}", headers=bearer("alice")).json()
    violence = item["thresholds"]["violence"]
    assert violence["may_block"] is False and "zero-shot" in violence["no_block_reason"]
    assert violence["scoring"] == "zero_shot"
    assert item["drivers"] == ["violence"]  # above its block threshold, but it may only send to review
    assert item["sampling"] == {"random_review_rate": 0.03, "block_review_rate": 0.0}


def test_unknown_model_version_falls_back_and_says_so(client, queue):
    scores = {"hate": {"fused": 0.6, "text": 0.6, "image": None}}
    item_id, _ = queue.enqueue(NewItem(post_id="old", scores=scores, action="review", model_version="m0",
                                       text="placeholder post"), THRESHOLDS)
    item = client.get(f"/v1/review/items/{item_id}", headers={"X-API-Key": KEYS["alice"][0]}).json()
    assert item["thresholds"] is None and item["drivers"] is None
    assert item["suggested_labels"] == {"hate": 1} and "no thresholds known for model version 'm0'" in item["suggestion_rule"]


def test_openapi_documents_both_key_schemes(client):
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schemes)
