"""The OpenAI- and Perspective-compatible endpoints (serve.compat_openai, serve.compat_perspective).

Integration: the service started exactly as `moderation serve` starts it (`serve.local.run_service`, real
Ray, tiny model), called with the official `openai` client and with a Perspective-style request (`?key=`).
Unit: request parsing and the category tables, no Ray.
"""

from __future__ import annotations

import base64
import json
import shutil
import statistics

import httpx
import pytest
from fastapi import HTTPException

from tests.running_service import running_service
from tests.test_serve import ADMIN, REVIEWER, SUBMITTER, auth, free_port, png_b64

integration = pytest.mark.integration

# Placeholder posts from the tiny model's vocabulary: "insultword" marks toxicity (tests/synthetic.py).
TEXTS = ["insultword insultword the park today", "hello cats and dogs", "the city park insultword",
         "calm music and food", "insultword report update insultword", "thanks for the book"]


@pytest.fixture(scope="module")
def compat_service(multimodal_run, tmp_path_factory):
    """(client, base_url, settings): the service as `moderation serve` runs it, with toxicity's review threshold
    at the median score of TEXTS (so some are flagged and some are not) and no random sampling (so an OpenAI
    call and a /v1/moderate call of the same post decide alike)."""
    from moderation import Moderator

    tmp = tmp_path_factory.mktemp("compat")
    run = tmp / "run"
    shutil.copytree(multimodal_run, run)
    toxicity = [r["scores"]["toxicity"] for r in Moderator(run).score([{"id": str(i), "text": t}
                                                                        for i, t in enumerate(TEXTS)])]
    thresholds = json.loads((run / "thresholds.json").read_text())
    for name, cut in thresholds["categories"].items():
        review = statistics.median(toxicity) if name == "toxicity" else 0.9999
        cut.update(block=0.99999, review=review, block_target_met=True,
                   scoring="zero_shot" if name == "sexual" else "trained")
    (run / "thresholds.json").write_text(json.dumps(thresholds))
    port = free_port()
    settings = {
        "run_dir": str(run), "queue_url": f"sqlite:///{tmp / 'queue.db'}", "host": "127.0.0.1",
        "max_batch_size": 8, "batch_wait_timeout_s": 0.02, "max_posts_per_request": 8, "max_text_chars": 500,
        "max_request_bytes": 200_000, "random_review_rate": 0.0, "block_review_rate": 0.0,
        "num_cpus_per_replica": 0.5,
        "api_keys": [{"name": "svc", "roles": ["submitter"], "key": SUBMITTER},
                     {"name": "rev", "roles": ["reviewer"], "key": REVIEWER},
                     {"name": "boss", "roles": ["admin"], "key": ADMIN}],
    }
    with running_service(tmp, settings, port) as base_url:
        client = httpx.Client(base_url=base_url, timeout=60)
        yield client, base_url, settings
        client.close()


def openai_client(base_url: str, key: str = SUBMITTER):
    from openai import OpenAI

    return OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=60)


@integration
def test_official_openai_client_agrees_with_our_moderate_endpoint(compat_service):
    client, base_url, _ = compat_service
    response = openai_client(base_url).moderations.create(input=TEXTS, model="omni-moderation-latest")
    assert response.id.startswith("modr-") and response.model and len(response.results) == len(TEXTS)
    ours = client.post("/v1/moderate", headers=auth(SUBMITTER),
                       json={"posts": [{"id": f"o{i}", "text": t} for i, t in enumerate(TEXTS)]}).json()
    assert response.model == ours["model_version"]
    flagged = [r.flagged for r in response.results]
    assert flagged == [r["action"] != "allow" for r in ours["results"]]
    assert set(flagged) == {True, False}  # the thresholds split TEXTS: the comparison is not vacuous
    for result, our in zip(response.results, ours["results"]):
        assert result.category_scores.hate == pytest.approx(our["categories"]["hate"]["score"])
        assert result.category_scores.self_harm == pytest.approx(our["categories"]["self_harm"]["score"])
        assert result.categories.harassment is (our["categories"]["harassment"]["action"] != "allow")
        assert result.categories.model_extra["toxicity"] is (our["categories"]["toxicity"]["action"] != "allow")
        assert result.category_applied_input_types.hate == ["text"]
        # Categories we do not score are omitted, never invented (the client reads them as None).
        assert result.categories.illicit is None and result.category_scores.sexual_minors is None
        assert "violence/graphic" not in result.categories.model_dump(by_alias=True, exclude_none=True)


@integration
def test_openai_single_string_and_content_parts_with_an_image(compat_service):
    client, base_url, _ = compat_service
    openai = openai_client(base_url)
    [single] = openai.moderations.create(input=TEXTS[0]).results
    assert single.flagged is True
    parts = [{"type": "text", "text": "hello cats"}, {"type": "text", "text": "the park"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64," + png_b64()}}]
    [post] = openai.moderations.create(input=parts).results  # a list of parts is ONE post
    assert post.category_applied_input_types.hate == ["text", "image"]
    ours = client.post("/v1/moderate", headers=auth(SUBMITTER),
                       json={"id": "parts", "text": "hello cats\nthe park", "image_base64": png_b64()}).json()
    assert post.flagged == (ours["results"][0]["action"] != "allow")
    assert post.category_scores.sexual == pytest.approx(ours["results"][0]["categories"]["sexual"]["score"])


@integration
def test_openai_errors_name_the_field_and_flagged_posts_reach_review(compat_service):
    import openai

    client, base_url, _ = compat_service
    api = openai_client(base_url)
    remote = [{"type": "image_url", "image_url": {"url": "https://example.org/cat.png"}}]
    with pytest.raises(openai.BadRequestError) as error:
        api.moderations.create(input=remote)
    assert "input[0].image_url.url" in str(error.value) and "does not fetch" in str(error.value)
    with pytest.raises(openai.BadRequestError, match=r"input\[0\]: empty input"):
        api.moderations.create(input=[" "])
    with pytest.raises(openai.AuthenticationError):
        openai_client(base_url, key="wrong-key-000000000").moderations.create(input="hello")
    with pytest.raises(openai.PermissionDeniedError):
        openai_client(base_url, key=REVIEWER).moderations.create(input="hello")
    # A flagged post is enqueued for review as /v1/moderate enqueues it (once, however often it is sent).
    assert api.moderations.create(input=TEXTS[0]).results[0].flagged
    api.moderations.create(input=TEXTS[0])
    items = client.get("/v1/review/items", params={"limit": 200}, headers=auth(REVIEWER)).json()["items"]
    queued = [i for i in items if i["text"] == TEXTS[0] and i["post_id"].startswith("openai:")]
    assert len(queued) == 1 and queued[0]["reason"] == "review_band"


@integration
def test_perspective_request_with_key_in_the_query(compat_service):
    client, _, _ = compat_service
    body = {"comment": {"text": TEXTS[0]}, "languages": ["en"],
            "requestedAttributes": {"TOXICITY": {}, "INSULT": {}, "THREAT": {}, "IDENTITY_ATTACK": {},
                                    "SEXUALLY_EXPLICIT": {}}, "clientToken": "t-1", "doNotStore": True}
    r = client.post("/v1alpha1/comments:analyze", params={"key": SUBMITTER}, json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["languages"] == ["en"] and answer["clientToken"] == "t-1"
    assert set(answer["attributeScores"]) == {"TOXICITY", "INSULT", "THREAT", "IDENTITY_ATTACK", "SEXUALLY_EXPLICIT"}
    ours = client.post("/v1/moderate", headers=auth(SUBMITTER), json={"id": "p", "text": TEXTS[0]}).json()
    toxicity = answer["attributeScores"]["TOXICITY"]["summaryScore"]
    assert toxicity["type"] == "PROBABILITY"
    assert toxicity["value"] == pytest.approx(ours["results"][0]["categories"]["toxicity"]["score"])
    assert answer["attributeScores"]["THREAT"]["summaryScore"]["value"] == pytest.approx(
        ours["results"][0]["categories"]["violence"]["score"])
    # The usual header works too; ?key= is refused on the other routes (keys in URLs end up in logs).
    header = client.post("/v1alpha1/comments:analyze", headers={"X-API-Key": SUBMITTER}, json=body)
    assert header.status_code == 200
    assert client.post("/v1/moderate", params={"key": SUBMITTER}, json={"id": "q", "text": "hi"}).status_code == 401
    assert client.post("/v1alpha1/comments:analyze", params={"key": "wrong-key-000000000"}, json=body).status_code == 401


@integration
def test_perspective_refuses_what_it_cannot_serve(compat_service):
    client, _, _ = compat_service

    def analyze(**changes):
        body = {"comment": {"text": "hello cats"}, "requestedAttributes": {"TOXICITY": {}}, **changes}
        return client.post("/v1alpha1/comments:analyze", params={"key": SUBMITTER}, json=body)

    for attribute in ("SEVERE_TOXICITY", "PROFANITY", "FLIRTATION"):
        r = analyze(requestedAttributes={"TOXICITY": {}, attribute: {}})
        assert r.status_code == 400 and f"requestedAttributes.{attribute}" in r.json()["error"]["message"], r.text
        assert r.json()["error"]["status"] == "INVALID_ARGUMENT"
    r = analyze(languages=["de"])
    assert r.status_code == 400 and "languages" in r.json()["error"]["message"]
    r = analyze(requestedAttributes={"TOXICITY": {"scoreThreshold": 1.0}})  # below the threshold: left out
    assert r.status_code == 200 and r.json()["attributeScores"] == {}
    r = analyze(spanAnnotations=True)
    assert r.json()["attributeScores"]["TOXICITY"]["spanScores"][0]["end"] == len("hello cats")


@integration
def test_openapi_documents_the_compatible_routes_and_the_query_key(compat_service):
    client, _, _ = compat_service
    spec = client.get("/openapi.json").json()
    assert "/v1/moderations" in spec["paths"] and "/v1alpha1/comments:analyze" in spec["paths"]
    schemes = spec["components"]["securitySchemes"]
    assert any(s.get("in") == "query" and s.get("name") == "key" for s in schemes.values())
    analyze = spec["paths"]["/v1alpha1/comments:analyze"]["post"]
    assert "requestedAttributes" in json.dumps(analyze["requestBody"])


@integration
def test_metrics_count_compat_routes_errors_queue_and_model(compat_service):
    from tests.test_metrics import alert_rule_metric_names, exposed_names

    client, base_url, _ = compat_service
    client.post("/v1/moderations", headers=auth(SUBMITTER), json={"input": []})  # a 400
    client.post("/v1/moderations", json={"input": "x"})  # a 401, answered before routing
    text = client.get("/metrics").text
    assert 'route="/v1/moderations",status="400"' in text
    assert 'status="401"' in text and "moderation_request_duration_seconds_bucket" in text
    assert "moderation_model_info{model_version=" in text and "moderation_review_queue_pending " in text
    assert alert_rule_metric_names() <= exposed_names(text)


# -- unit: parsing and tables, no Ray ----------------------------------------------------------------------------


def test_openai_input_forms_become_posts():
    from serve.compat_openai import parse_moderations_request
    from serve.settings import ServeSettings

    settings = ServeSettings(auth="disabled", max_posts_per_request=3, max_text_chars=20)
    parse = lambda body: parse_moderations_request(json.dumps(body).encode(), settings)  # noqa: E731
    [one] = parse({"input": "hello"})
    assert one.text == "hello" and one.id.startswith("openai:") and one.id == parse({"input": "hello"})[0].id
    assert [p.text for p in parse({"input": ["a", "b"]})] == ["a", "b"]
    png = base64.b64decode(png_b64())
    [post] = parse({"input": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"},
                              {"type": "image_url", "image_url": {"url": "data:image/png;base64," + png_b64()}}]})
    assert (post.text, post.image_bytes, post.image_mime) == ("a\nb", png, "image/png")
    for body, status, needle in [
        ({"input": ["a"] * 4}, 400, "at most 3"),
        ({"input": "x" * 21}, 400, "input: 21 characters"),
        ({"input": []}, 400, "input: empty list"),
        ({"inputs": "x"}, 400, "input"),
        ({"input": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}, 400,
         "input[0].image_url.url: remote URL"),
        ({"input": [{"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGk="}}]}, 400,
         "media type 'text/plain'"),
        ({"input": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}]}, 400, "not valid base64"),
        ({"input": [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + png_b64()}}] * 2}, 400,
         "input[1]: a second image"),
    ]:
        with pytest.raises(HTTPException) as error:
            parse(body)
        assert error.value.status_code == status and needle in error.value.detail, error.value.detail


def test_category_tables_map_onto_our_categories_only():
    from serve.compat_openai import OPENAI_CATEGORIES, openai_name
    from serve.compat_perspective import NOT_SERVED, PERSPECTIVE_ATTRIBUTES
    from tests.synthetic import CATEGORIES

    assert set(OPENAI_CATEGORIES) <= set(CATEGORIES) and set(PERSPECTIVE_ATTRIBUTES.values()) <= set(CATEGORIES)
    assert openai_name("self_harm") == "self-harm" and openai_name("toxicity") == "toxicity"
    assert set(PERSPECTIVE_ATTRIBUTES) | set(NOT_SERVED) == {
        "TOXICITY", "SEVERE_TOXICITY", "IDENTITY_ATTACK", "INSULT", "PROFANITY", "THREAT", "SEXUALLY_EXPLICIT"}
    guide = open("docs/migration.md").read()  # the documented tables say the same
    for ours, theirs in OPENAI_CATEGORIES.items():
        assert f"| {ours} | {theirs} |" in guide.replace("`", "")
    for theirs, ours in PERSPECTIVE_ATTRIBUTES.items():
        assert f"| {theirs} | {ours} |" in guide.replace("`", "")


def test_perspective_requests_are_checked_before_scoring():
    from serve.compat_perspective import check_languages, parse_analyze_request, served_attributes
    from serve.settings import ServeSettings

    settings = ServeSettings(auth="disabled", max_text_chars=20)
    parse = lambda body: parse_analyze_request(json.dumps(body).encode(), settings)  # noqa: E731
    ok = parse({"comment": {"text": "hello"}, "requestedAttributes": {"TOXICITY": {}}, "clientToken": "c"})
    assert ok.comment.text == "hello" and not ok.doNotStore
    for body, needle in [
        ({"comment": {"text": "x" * 21}, "requestedAttributes": {"TOXICITY": {}}}, "comment.text: 21 characters"),
        ({"comment": {"text": " "}, "requestedAttributes": {"TOXICITY": {}}}, "comment.text: empty"),
        ({"comment": {"text": "hi"}, "requestedAttributes": {}}, "requestedAttributes"),
        ({"comment": {"text": "hi"}, "requestedAttributes": {"TOXICITY": {"scoreType": "RAW"}}}, "scoreType"),
        ({"comment": {"text": "hi", "type": "HTML"}, "requestedAttributes": {"TOXICITY": {}}}, "comment.type"),
    ]:
        with pytest.raises(HTTPException) as error:
            parse(body)
        assert error.value.status_code == 400 and needle in error.value.detail, error.value.detail
    attributes = parse({"comment": {"text": "hi"}, "requestedAttributes": {"THREAT": {}}}).requestedAttributes
    with pytest.raises(HTTPException, match="requestedAttributes.THREAT: unknown or not scored by this model"):
        served_attributes(attributes, ["toxicity", "hate"])  # a model without a violence class
    assert check_languages(None) == ["en"] and check_languages(["de", "en-GB"]) == ["en-GB"]
    with pytest.raises(HTTPException, match=r"languages: \['fr'\] not supported"):
        check_languages(["fr"])
