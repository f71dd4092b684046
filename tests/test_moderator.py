"""The public Python API (`from moderation import Moderator`): one item or a list, every kind of item, the one
scoring path, decisions through the one policy, and batch prediction that marks what it cannot score."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from moderation import Action, Moderator, Reason
from moderation.moderator import UnscorablePost
from tests.synthetic import CATEGORIES


@pytest.fixture(scope="module")
def moderator(multimodal_run) -> Moderator:
    return Moderator(multimodal_run)


def png(colour=(220, 20, 20)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_exported_from_the_package_root():
    import moderation

    assert {"Moderator", "Action", "Reason", "Thresholds", "decide"} <= set(moderation.__all__)


def test_predict_one_item_gives_floats_and_a_list_gives_lists(moderator):
    one = moderator.predict("hello cats weather")
    many = moderator.predict(["hello cats weather", "slurword park"])
    assert set(one) == set(CATEGORIES) and all(isinstance(v, float) for v in one.values())
    assert all(len(v) == 2 for v in many.values())
    assert many["hate"][0] == pytest.approx(one["hate"], abs=1e-5)


def test_every_kind_of_item_is_accepted(moderator, tmp_path):
    path = tmp_path / "red.png"
    path.write_bytes(png())
    items = ["cats", {"text": "dogs", "image": png()}, path, png(), Image.open(io.BytesIO(png())), {"image": str(path)}]
    results = moderator.score(items)
    assert len(results) == len(items)
    assert results[0]["image_scores"] is None and results[2]["text_scores"] is None
    assert results[1]["text_scores"] is not None and results[1]["image_scores"] is not None
    # The same picture as a path, bytes and a PIL image scores the same.
    assert results[2]["scores"] == results[3]["scores"] == results[4]["scores"]


def test_score_matches_score_arrays_and_predict_proba(moderator):
    texts = ["slurword cats", "hello dogs", "threatword today"]
    arrays = moderator.score_arrays(texts)
    np.testing.assert_allclose(moderator.predict_proba(texts), arrays.fused)
    for i, result in enumerate(moderator.score(texts)):
        assert result["scores"] == pytest.approx({c: float(arrays.fused[i, j]) for j, c in enumerate(CATEGORIES)},
                                                 abs=1e-6)


def test_decide_goes_through_the_policy_with_the_model_version(moderator):
    from moderation.policy import decide

    for post in moderator.decide(["slurword slurword", "hello cats"]):
        assert post.model_version == moderator.version
        again = decide(post.scores, moderator.thresholds)
        assert post.decision.action == again.action and post.decision.drivers == again.drivers
        assert isinstance(post.decision.action, Action) and isinstance(post.decision.reason, Reason)
        assert post.to_dict()["action"] == post.action


def test_an_unscorable_post_raises_by_default_and_is_marked_on_request(moderator):
    with pytest.raises(UnscorablePost, match="'empty'"):
        moderator.score([{"id": "empty", "text": "   "}])
    results = moderator.score([{"id": "ok", "text": "cats"}, {"id": "bad", "image": b"not an image"},
                               {"id": "empty", "text": ""}], unscorable="mark")
    assert "scores" in results[0]
    assert results[1] == {"id": "bad", "error": pytest.approx(results[1]["error"])}
    assert "not an image" in results[1]["error"] and "nothing this model can score" in results[2]["error"]


def test_a_wrong_item_type_names_itself(moderator):
    with pytest.raises(TypeError, match="int"):
        moderator.predict([3])
    with pytest.raises(ValueError, match="'text' and/or 'image'"):
        moderator.predict({"body": "x"})
