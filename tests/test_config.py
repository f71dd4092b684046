"""Config schema: complete files validate, typos and bad values are reported with their key paths."""

from pathlib import Path

import pytest
import yaml

from moderation.config import ConfigError, apply_override, config_from_dict, dump_config, load_config
from tests.synthetic import category_config

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def minimal(**extra) -> dict:
    return {"categories": category_config(), "datasets": {"d": {"loader": "jsonl", "path": "x.jsonl"}}, **extra}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate(path):
    config = load_config(path)
    assert config.categories and config.datasets
    assert path.read_text().startswith("#"), "configs open with a comment saying what they are for"


def test_every_error_reported_at_once_with_key_paths():
    tree = minimal(train={"epochs": 0, "lrr": 0.1}, head={"fusion": "sum"})
    with pytest.raises(ConfigError) as err:
        config_from_dict(tree)
    msg = str(err.value)
    assert "train.epochs" in msg and "train.lrr: unknown key" in msg and "head.fusion" in msg
    assert "3 problem(s)" in msg



def test_several_heads_need_a_frozen_encoder():
    config_from_dict(minimal(head={"members": 5}))
    with pytest.raises(ConfigError, match=r"head.members: 5 heads train on one frozen encoder.*'lora'"):
        config_from_dict(minimal(head={"members": 5}, text_encoder={"finetune": "lora"}))


def test_an_adapted_encoder_is_then_used_frozen():
    config_from_dict(minimal(head={"members": 5}, text_encoder={"adapt": {}}))
    with pytest.raises(ConfigError, match=r"adapt: the adapted encoder is then used frozen; finetune is 'lora'"):
        config_from_dict(minimal(text_encoder={"finetune": "lora", "adapt": {"rows_per_source": 100}}))

def test_label_map_must_name_categories():
    tree = minimal()
    tree["datasets"]["d"]["label_map"] = {"toxic": {"field": "x", "positive": [1]}}
    with pytest.raises(ConfigError, match=r"datasets.d.label_map.toxic: not a category"):
        config_from_dict(tree)


def test_label_rule_values_become_strings_and_conflicts_rejected():
    tree = minimal()
    tree["datasets"]["d"]["label_map"] = {"hate": {"field": "x", "positive": [1], "negative": [0]}}
    assert config_from_dict(tree).datasets["d"].label_map["hate"].positive == ["1"]
    tree["datasets"]["d"]["label_map"] = {"hate": {"field": "x", "positive": [1], "negative": [1]}}
    with pytest.raises(ConfigError, match="listed twice"):
        config_from_dict(tree)


def test_overrides_parse_yaml_values_and_nested_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    config = load_config(path, ["train.epochs=3", "datasets.d.max_samples=10", "head.fusion=text_only"])
    assert config.train.epochs == 3 and config.datasets["d"].max_samples == 10
    assert Path(config.datasets["d"].path) == (tmp_path / "x.jsonl").resolve()  # relative to the config file
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_config(path, ["train.epochs"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("categories: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_dump_round_trips():
    config = config_from_dict(minimal())
    again = config_from_dict(yaml.safe_load(dump_config(config)))
    assert again == config


def test_apply_override_into_lists():
    tree = {"a": [{"b": 1}]}
    apply_override(tree, "a.0.b=2")
    assert tree == {"a": [{"b": 2}]}


def test_min_block_sources_needs_the_false_block_bound():
    from moderation.config import ThresholdConfig

    assert ThresholdConfig(min_block_sources=2).min_block_sources == 2
    with pytest.raises(ValueError, match="set max_false_block_rate too"):
        ThresholdConfig(max_false_block_rate=None, min_block_sources=2)
    with pytest.raises(ValueError):
        ThresholdConfig(min_block_sources=0)


def test_research_more_text_config_is_the_default_recipe_plus_extra_training_sets():
    """configs/research_more_text.yaml measures what more (not permissively licensed) training data gives on the
    default's held-out sources, so everything else must stay the default's: its recipe, datasets and label maps.
    The extra sets' label maps are configs/all_datasets.yaml's, which tests/test_sources.py checks against the data."""
    default = load_config(CONFIG_DIR / "default.yaml").model_dump(mode="json")
    research = load_config(CONFIG_DIR / "research_more_text.yaml").model_dump(mode="json")
    all_datasets = load_config(CONFIG_DIR / "all_datasets.yaml").model_dump(mode="json")["datasets"]
    extra = set(research["datasets"]) - set(default["datasets"])
    assert extra == {"ethos", "gab_hate_corpus", "hatexplain_mbib", "exist2021_sexism_en"}
    for name in extra:
        dataset = research["datasets"].pop(name)
        assert dataset.pop("use") == "train_only", f"{name}: an extra set trains only, never held out"
        assert dataset == {k: v for k, v in all_datasets[name].items() if k != "use"}, f"{name}: as in all_datasets.yaml"
    assert research.pop("run")["permissive_only"] is False and default.pop("run")["permissive_only"] is True
    assert research == default, "keep configs/research_more_text.yaml in step with configs/default.yaml"
