"""The service: settings (unit tests), and the Ray Serve application for real, started exactly as
`moderation serve` starts it (`serve.local.run_service` on local Ray, CPU, tiny models): batching, contract,
errors, the review loop, and a review item that shows its model's thresholds and driving categories."""

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
import yaml
from PIL import Image

from tests.running_service import running_service

integration = pytest.mark.integration

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
    """(client, tmp): the service as `moderation serve --config FILE` runs it, in a thread, until the module ends."""
    tmp = tmp_path_factory.mktemp("serve")
    # The tiny model's thresholds are arbitrary; pin them: toxicity's review threshold is 0, so every post
    # goes to review driven by toxicity; sexual is zero-shot (never blocks); the rest are out of reach.
    run = tmp / "run"
    shutil.copytree(multimodal_run, run)
    thresholds = json.loads((run / "thresholds.json").read_text())
    for name, cut in thresholds["categories"].items():
        cut.update(block=0.99999, review=0.0 if name == "toxicity" else 0.9999, block_target_met=True,
                   scoring="zero_shot" if name == "sexual" else "trained")
    (run / "thresholds.json").write_text(json.dumps(thresholds))
    port = free_port()
    settings = {
        "run_dir": str(run), "queue_url": f"sqlite:///{tmp / 'queue.db'}", "host": "127.0.0.1",
        "max_batch_size": 16, "batch_wait_timeout_s": 0.05, "max_ongoing_requests": 32,
        "max_posts_per_request": 8, "max_text_chars": 500, "max_request_bytes": 200_000,
        "max_image_pixels": 1_000_000, "random_review_rate": 1.0, "num_cpus_per_replica": 0.5,
        "api_keys": [{"name": "svc", "roles": ["submitter"], "key": SUBMITTER},
                     {"name": "rev", "roles": ["reviewer"], "key": REVIEWER},
                     {"name": "boss", "roles": ["admin"], "key": ADMIN}],
    }
    with running_service(tmp, settings, port) as base_url:
        client = httpx.Client(base_url=base_url, timeout=60)
        yield client, tmp
        client.close()


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def moderate(client, body, key=SUBMITTER, **kw):
    return client.post("/v1/moderate", json=body, headers=auth(key), **kw)


@integration
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


@integration
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


@integration
def test_auth(service):
    client, _ = service
    assert client.post("/v1/moderate", json={"id": "x", "text": "hi"}).status_code == 401
    assert moderate(client, {"id": "x", "text": "hi"}, key="wrong-key-000000000").status_code == 401
    assert moderate(client, {"id": "x", "text": "hi"}, key=REVIEWER).status_code == 403
    assert moderate(client, {"id": "x", "text": "hi"}, key=ADMIN).status_code == 200


@integration
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


@integration
def test_decompression_bomb_and_oversized_body(service):
    client, _ = service
    r = moderate(client, {"id": "bomb", "image_base64": png_b64(size=(2000, 2000))})  # 4 MP > 1 MP limit
    assert r.status_code == 400 and "posts[0].image" in r.json()["detail"]
    r = client.post("/v1/moderate", content=b"{" + b" " * 300_000 + b"}",
                    headers={**auth(SUBMITTER), "content-type": "application/json"})
    assert r.status_code == 413


@integration
def test_multipart_upload(service):
    client, _ = service
    buf = base64.b64decode(png_b64((20, 20, 220)))
    r = client.post("/v1/moderate", data={"id": "mp", "text": "hello"}, files={"image": ("x.png", buf, "image/png")},
                    headers=auth(SUBMITTER))
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["categories"]["hate"]["image_score"] is not None


@integration
def test_health_ready_openapi(service):
    client, _ = service
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model_version"]
    spec = client.get("/openapi.json").json()
    assert "/v1/moderate" in spec["paths"] and "multipart/form-data" in json.dumps(spec["paths"]["/v1/moderate"])


@integration
def test_review_round_trip_back_to_training_data(service):
    from moderation.data.generic import read_jsonl_rows

    client, tmp = service
    # A harmless-looking post: allowed by the model, so random_review_rate=1.0 samples it into review.
    r = moderate(client, {"id": "rt-1", "text": "the city park today", "image_base64": png_b64((20, 20, 220))})
    first = r.json()["results"][0]
    assert first["action"] == "review" and first["reason"] == "review_band" and first["drivers"] == ["toxicity"], first
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


@integration
def test_review_item_shows_the_models_thresholds_and_driving_categories(service):
    client, _ = service
    result = moderate(client, {"id": "wired-1", "text": "placeholder post about the weather"}).json()["results"][0]
    assert (result["action"], result["reason"], result["drivers"]) == ("review", "review_band", ["toxicity"])
    item = client.get(f"/v1/review/items/{result['review_item_id']}", headers=auth(REVIEWER)).json()
    assert item["thresholds"] is not None, item["suggestion_rule"]  # the production wiring bug: never "unknown"
    assert item["thresholds"]["toxicity"]["review"] == 0.0 and item["thresholds"]["hate"]["block"] == 0.99999
    assert item["thresholds"]["sexual"]["may_block"] is False and "zero-shot" in item["thresholds"]["sexual"]["no_block_reason"]
    assert item["drivers"] == ["toxicity"] and item["reason"] == "review_band"
    assert item["suggestion_rule"] == "fused score >= the category's review threshold"
    assert item["suggested_labels"]["toxicity"] == 1
    assert item["sampling"] == {"random_review_rate": 1.0, "block_review_rate": 0.02}  # the rates in force
    model = client.get("/v1/model").json()
    assert set(model["never_block"]) == {"sexual"} and model["thresholds"]["sexual"]["scoring"] == "zero_shot"
    assert model["thresholds"]["hate"]["may_block"] is True and model["model_version"] == item["model_version"]


@integration
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


@integration
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


# -- settings: unit tests, no Ray ------------------------------------------------------------------------------


def test_every_setting_comes_from_the_environment_and_keys_keep_their_compact_form(monkeypatch):
    from serve.settings import ServeSettings, load_settings

    monkeypatch.setenv("MODERATION_API_KEYS", "ops:admin+reviewer:" + "k" * 24 + ", svc:submitter:" + "s" * 24)
    monkeypatch.setenv("MODERATION_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("MODERATION_LOG_CONTENT", "true")
    monkeypatch.setenv("MODERATION_BLOCK_REVIEW_RATE", "0.5")
    settings = load_settings()
    assert settings.max_batch_size == 8 and settings.log_content and settings.block_review_rate == 0.5
    assert [(k.name, k.roles) for k in settings.api_keys] == [("ops", ["admin", "reviewer"]), ("svc", ["submitter"])]
    assert settings.sampling.block_review_rate == 0.5
    assert ServeSettings.model_config["env_prefix"] == "MODERATION_"
    monkeypatch.setenv("MODERATION_API_KEYS", "only-a-name")
    with pytest.raises(ValueError, match="api_keys.*'only-a-name': expected name:role\\+role:key"):
        load_settings()


def test_precedence_overrides_then_environment_then_file(tmp_path, monkeypatch):
    from serve.settings import load_settings

    path = tmp_path / "settings.yaml"
    path.write_text("auth: disabled\nport: 9001\nqueue_url: sqlite:///file.db\nrandom_review_rate: 0.2\n")
    monkeypatch.setenv("MODERATION_QUEUE_URL", "sqlite:///env.db")
    settings = load_settings(path, random_review_rate=0.3, port=None)
    assert (settings.port, settings.queue_url, settings.random_review_rate) == (9001, "sqlite:///env.db", 0.3)
    with pytest.raises(ValueError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml")
    path.write_text("auth: disabled\nmax_batchsize: 4\n")
    with pytest.raises(ValueError, match="max_batchsize: Extra inputs are not permitted"):
        load_settings(path)


def test_cross_checks_run_however_the_settings_are_built():
    from serve.settings import MissingApiKeys, ServeSettings, load_settings

    with pytest.raises(ValueError, match="max_ongoing_requests \\(8\\) must be >= max_batch_size"):
        ServeSettings.model_validate({"auth": "disabled", "max_batch_size": 16, "max_ongoing_requests": 8})
    with pytest.raises(ValueError, match="not both"):
        ServeSettings(auth="disabled", run_dir="a", registry_dir="b")
    with pytest.raises(MissingApiKeys, match="no api_keys are configured"):
        load_settings(auth="required")
    with pytest.raises(ValueError, match="max_batch_size") as error:
        load_settings(auth="required", max_batch_size=0)
    assert not isinstance(error.value, MissingApiKeys)  # only "no keys" alone gets the local admin key


def test_batch_defaults_are_set_in_the_settings_only():
    from serve.scorer import Scorer
    from serve.settings import ServeSettings, default

    batch = Scorer.func_or_class.score
    if not hasattr(batch, "_get_max_batch_size"):
        pytest.skip("this Ray's @serve.batch does not expose its settings")
    assert (batch._get_max_batch_size(), batch._get_batch_wait_timeout_s()) == (
        default("max_batch_size"), default("batch_wait_timeout_s"))
    assert ServeSettings.model_fields["max_batch_size"].default == default("max_batch_size")


def test_example_settings_file_documents_every_field_and_loads():
    from serve.settings import MissingApiKeys, ServeSettings, load_settings

    path = "serve/serve_settings.example.yaml"
    tree = yaml.safe_load(open(path))
    assert set(tree) == set(ServeSettings.model_fields)
    with pytest.raises(MissingApiKeys):  # as shipped it names no key: `moderation serve` then makes a local one
        load_settings(path)
    assert load_settings(path, auth="disabled").queue_url == ServeSettings.model_fields["queue_url"].default


def test_local_admin_key_is_made_once_when_no_key_is_configured(tmp_path, monkeypatch):
    from serve.local import KEY_FILE, service_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODERATION_API_KEYS", raising=False)
    first = service_settings(None, {})
    [key] = first.api_keys
    assert key.roles == ["admin"] and (tmp_path / KEY_FILE).read_text().strip() == key.key
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert service_settings(None, {}).api_keys[0].key == key.key  # the same key on the next start
    assert service_settings(None, {"auth": "disabled"}).api_keys == []


def test_thresholds_lookup_knows_every_registry_version(tmp_path):
    from moderation.policy import Thresholds
    from moderation.runfiles import write_thresholds
    from serve.service import ModelThresholds

    for folder, version, review in (("v1", "v1", 0.3), ("v2-folder", "v2", 0.6)):
        run = tmp_path / "registry" / "runs" / folder
        run.mkdir(parents=True)
        (run / "model.json").write_text(json.dumps({"version": version}))
        write_thresholds(run, Thresholds(categories={"hate": {"review": review, "block": 0.9}}))
    lookup = ModelThresholds(registry_dir=str(tmp_path / "registry"))
    assert lookup("v1")["hate"].review == 0.3 and lookup("v2")["hate"].review == 0.6
    assert lookup("v3") is None and lookup("../v1") is None
    served = Thresholds(categories={"hate": {"review": 0.1, "block": 0.2}})
    lookup.add("v9", served)  # what the Scorer reports for the model it serves
    assert lookup("v9") == served


# -- request parsing: unit tests, no Ray ------------------------------------------------------------------------


def starlette_request(body: bytes, content_type: str):
    from starlette.requests import Request

    chunks = [body[:7], body[7:]]  # streamed in two pieces, as a client may send it

    async def receive():
        return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)} if chunks \
            else {"type": "http.disconnect"}

    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    return Request({"type": "http", "method": "POST", "path": "/v1/moderate", "headers": headers}, receive)


def test_multipart_and_json_parse_from_the_bytes_read_under_the_limit():
    import asyncio

    import httpx as _httpx
    from fastapi import HTTPException

    from serve.requests import parse_moderate_request, read_limited_body
    from serve.settings import ServeSettings

    settings = ServeSettings(auth="disabled", max_posts_per_request=2)
    png = base64.b64decode(png_b64())
    form = _httpx.Request("POST", "http://x/", data={"id": "mp", "text": "hello"}, files={"image": ("x.png", png)})
    form.read()

    async def parse(body, content_type, limit=10_000):
        request = starlette_request(body, content_type)
        return await parse_moderate_request(request, await read_limited_body(request, limit), settings)

    [post] = asyncio.run(parse(form.content, form.headers["content-type"]))
    assert (post.id, post.text, post.image_bytes) == ("mp", "hello", png)
    [post] = asyncio.run(parse(json.dumps({"id": "j", "text": "hi"}).encode(), "application/json"))
    assert (post.id, post.text) == ("j", "hi")
    for body, content_type, status, needle in [
        (b"x" * 20_000, "application/json", 413, "exceeds the limit"),
        (b"{", "application/json", 400, "not valid JSON"),
        (b"id=1", "text/plain", 415, "application/json or multipart/form-data"),
        (json.dumps({"posts": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}).encode(), "application/json",
         422, "posts[1].id: duplicate id 'a'"),
    ]:
        with pytest.raises(HTTPException) as error:
            asyncio.run(parse(body, content_type))
        assert error.value.status_code == status and needle in error.value.detail
