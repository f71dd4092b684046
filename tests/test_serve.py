"""The Ray Serve application for real (local Ray on the CPU, tiny models): batching, contract, errors, review loop."""

from __future__ import annotations

import base64
import io
import json
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

SUBMITTER = "submitter-key-0123456789"
REVIEWER = "reviewer-key-0123456789"
ADMIN = "admin-key-0123456789abc"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_b64(colour=(220, 20, 20), size=(32, 32)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def service(multimodal_run, tmp_path_factory):
    import ray
    from ray import serve as ray_serve

    from serve.app import build_app

    tmp = tmp_path_factory.mktemp("serve")
    # The tiny model's thresholds are arbitrary; pin them so that ordinary posts are allowed (and then, with
    # random_review_rate=1.0, sampled into review): the tests below check the service, not the tiny model.
    run = tmp / "run"
    shutil.copytree(multimodal_run, run)
    thresholds = json.loads((run / "thresholds.json").read_text())
    for cut in thresholds["categories"].values():
        cut.update(block=0.99999, review=0.9999)
    (run / "thresholds.json").write_text(json.dumps(thresholds))
    port = free_port()
    settings = {
        "run_dir": str(run), "queue_url": f"sqlite:///{tmp / 'queue.db'}", "port": port,
        "max_batch_size": 16, "batch_wait_timeout_s": 0.05, "max_ongoing_requests": 32,
        "max_posts_per_request": 8, "max_text_chars": 500, "max_request_bytes": 200_000,
        "max_image_pixels": 1_000_000, "random_review_rate": 1.0, "num_cpus_per_replica": 0.5,
        "api_keys": [{"name": "svc", "roles": ["submitter"], "key": SUBMITTER},
                     {"name": "rev", "roles": ["reviewer"], "key": REVIEWER},
                     {"name": "boss", "roles": ["admin"], "key": ADMIN}],
    }
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, ignore_reinit_error=True)
    ray_serve.start(http_options={"host": "127.0.0.1", "port": port})
    ray_serve.run(build_app(settings), name="moderation", route_prefix="/")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    yield client, tmp
    client.close()
    ray_serve.shutdown()
    ray.shutdown()


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def moderate(client, body, key=SUBMITTER, **kw):
    return client.post("/v1/moderate", json=body, headers=auth(key), **kw)


def test_response_contract(service):
    client, _ = service
    r = moderate(client, {"posts": [{"id": "a", "text": "the park threatword today"},
                                    {"id": "b", "text": "hello cats", "image_base64": png_b64()}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] and body["elapsed_ms"] > 0
    a, b = body["results"]
    assert a["id"] == "a" and a["action"] in {"allow", "review", "block"}
    assert set(a["categories"]) == {"toxicity", "hate", "harassment", "sexual", "violence", "self_harm"}
    cat = b["categories"]["sexual"]
    assert {"score", "text_score", "image_score", "action"} <= set(cat)
    assert cat["image_score"] is not None and a["categories"]["sexual"]["image_score"] is None
    single = moderate(client, {"id": "c", "text": "hello"})  # one post as the whole body
    assert single.status_code == 200 and single.json()["results"][0]["id"] == "c"


def test_batching_happens_under_concurrent_requests(service):
    client, _ = service
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda i: moderate(client, {"id": f"c{i}", "text": f"cats park {i}"}).status_code, range(48)))
    assert codes == [200] * 48
    metrics = client.get("/metrics").text
    count = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("moderation_batch_size_count")))
    singles = float(next(line.split()[-1] for line in metrics.splitlines()
                         if line.startswith('moderation_batch_size_bucket{le="1.0"}')))
    assert count >= 48 and singles < count  # some posts were scored in batches larger than 1


def test_auth(service):
    client, _ = service
    assert client.post("/v1/moderate", json={"id": "x", "text": "hi"}).status_code == 401
    assert moderate(client, {"id": "x", "text": "hi"}, key="wrong-key-000000000").status_code == 401
    assert moderate(client, {"id": "x", "text": "hi"}, key=REVIEWER).status_code == 403
    assert moderate(client, {"id": "x", "text": "hi"}, key=ADMIN).status_code == 200


@pytest.mark.parametrize("body, status, needle", [
    ({"id": "x", "image_base64": "%%%"}, 400, "image_base64: not valid base64"),
    ({"id": "x", "image_base64": base64.b64encode(b"plain text").decode()}, 400, "posts[0].image"),
    ({"id": "x", "text": "  "}, 422, "empty post"),
    ({"id": "x", "text": "a" * 600}, 422, "posts[0].text: 600 characters"),
    ({"posts": [{"id": str(i), "text": "hi"} for i in range(9)]}, 422, "at most 8"),
    ({"posts": [{"id": "x", "txt": "hi"}]}, 422, "posts[0].txt"),
    ({"posts": []}, 422, "posts"),
])
def test_bad_input_names_the_field(service, body, status, needle):
    client, _ = service
    r = moderate(client, body)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


def test_decompression_bomb_and_oversized_body(service):
    client, _ = service
    r = moderate(client, {"id": "bomb", "image_base64": png_b64(size=(2000, 2000))})  # 4 MP > 1 MP limit
    assert r.status_code == 400 and "posts[0].image" in r.json()["detail"]
    r = client.post("/v1/moderate", content=b"{" + b" " * 300_000 + b"}",
                    headers={**auth(SUBMITTER), "content-type": "application/json"})
    assert r.status_code == 413


def test_multipart_upload(service):
    client, _ = service
    buf = base64.b64decode(png_b64((20, 20, 220)))
    r = client.post("/v1/moderate", data={"id": "mp", "text": "hello"}, files={"image": ("x.png", buf, "image/png")},
                    headers=auth(SUBMITTER))
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["categories"]["hate"]["image_score"] is not None


def test_health_ready_openapi(service):
    client, _ = service
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model_version"]
    spec = client.get("/openapi.json").json()
    assert "/v1/moderate" in spec["paths"] and "multipart/form-data" in json.dumps(spec["paths"]["/v1/moderate"])


def test_review_round_trip_back_to_training_data(service):
    from moderation.data.generic import read_jsonl_rows

    client, tmp = service
    # A harmless-looking post: allowed by the model, so random_review_rate=1.0 samples it into review.
    r = moderate(client, {"id": "rt-1", "text": "the city park today", "image_base64": png_b64((20, 20, 220))})
    first = r.json()["results"][0]
    assert first["action"] == "review" and first["reason"] in ("random_sample", "threshold"), first
    item_id = first["review_item_id"]
    assert item_id is not None
    again = moderate(client, {"id": "rt-1", "text": "the city park today"}).json()["results"][0]
    assert again["review_item_id"] == item_id  # idempotent enqueue by post id
    claimed = []
    for _ in range(100):  # claim until we hold our item (others from earlier tests are in the queue too)
        batch = client.post("/v1/review/claim", json={"n": 10}, headers=auth(REVIEWER)).json()
        items = batch["items"] if isinstance(batch, dict) else batch
        if not items:
            break
        claimed += items
        if any(i["id"] == item_id for i in items):
            break
    assert any(i["id"] == item_id for i in claimed)
    d = client.post(f"/v1/review/items/{item_id}/decision", headers=auth(REVIEWER),
                    json={"action": "block", "labels": {"sexual": 1, "hate": 0}, "note": "test"})
    assert d.status_code == 200, d.text
    export = client.post("/v1/review/export", headers=auth(ADMIN))
    assert export.status_code == 200, export.text
    import zipfile

    zipfile.ZipFile(io.BytesIO(export.content)).extractall(tmp / "export")
    rows = read_jsonl_rows(tmp / "export" / "reviewed.jsonl",
                           ["toxicity", "hate", "harassment", "sexual", "violence", "self_harm"])
    row = next(r for r in rows if r["id"] == "rt-1")
    assert row["label__sexual"] == "1" and row["label__hate"] == "0" and row["label__violence"] is None
    assert row["image"] and Image.open(row["image"]).size == (32, 32)  # the image came back with the labels


def test_overload_answers_503_with_retry_after_and_recovers(service, multimodal_run):
    from ray import serve as ray_serve

    from serve.app import build_app

    client, tmp = service
    tight = {"run_dir": str(multimodal_run), "queue_url": f"sqlite:///{tmp / 'tight.db'}", "max_batch_size": 1,
             "batch_wait_timeout_s": 0.0, "max_ongoing_requests": 1, "max_queued_requests": 1,
             "num_cpus_per_replica": 0.1, "auth": "disabled", "random_review_rate": 0.0,
             "max_posts_per_request": 2}
    ray_serve.run(build_app(tight), name="tight", route_prefix="/tight")
    long_text = " ".join(["cats dogs park"] * 20)

    def call(i):
        return client.post("/tight/v1/moderate", json={"posts": [{"id": f"{i}-{j}", "text": long_text} for j in range(2)]})

    with ThreadPoolExecutor(24) as pool:
        responses = list(pool.map(call, range(48)))
    codes = {r.status_code for r in responses}
    assert codes <= {200, 503}, codes
    rejected = [r for r in responses if r.status_code == 503]
    assert rejected, "a bounded queue must shed load instead of queueing without limit"
    assert all(r.headers.get("retry-after") for r in rejected)
    # Posts of rejected requests may still be finishing; once they drain the service answers again.
    deadline = time.monotonic() + 30
    while (status := call("after").status_code) != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status == 200  # nothing hung
    ray_serve.delete("tight")


def test_cancelled_clients_do_not_hang_the_batcher(service):
    client, _ = service
    for i in range(8):
        try:
            httpx.post(str(client.base_url.join("/v1/moderate")), json={"id": f"gone-{i}", "text": "cats park"},
                       headers=auth(SUBMITTER), timeout=0.001)
        except httpx.TimeoutException:
            pass
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: moderate(client, {"id": f"after-{i}", "text": "cats"}).status_code, range(8)))
    assert codes == [200] * 8


def test_serve_deploy_config_builds(monkeypatch):
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from serve.app import build_app

    tree = yaml.safe_load(open("serve/serve_config.yaml"))
    ServeDeploySchema.model_validate(tree)
    monkeypatch.setenv("MODERATION_API_KEYS", "ops:admin:" + "k" * 24)
    app = tree["applications"][0]
    assert app["import_path"] == "serve.app:build_app"
    assert build_app(app["args"]) is not None
