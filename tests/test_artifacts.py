import os

import pytest
import torch

from doracle import artifacts
from doracle.errors import ArtifactError


def test_tensors_round_trip_with_hash_check(tmp_path):
    p = tmp_path / "w.safetensors"
    t = {"a": torch.arange(6.0).view(2, 3), "b": torch.tensor([1, 2])}
    artifacts.save_tensors(p, t, artifacts.metadata("test", experiment="t", params={"x": 1}, seed=7))
    back, meta = artifacts.load_tensors(p)
    assert torch.equal(back["a"], t["a"]) and torch.equal(back["b"], t["b"])
    assert meta["seed"] == 7 and meta["params"] == {"x": 1} and meta["kind"] == "test"
    assert meta["versions"]["torch"]


def test_a_changed_file_is_refused(tmp_path):
    p = tmp_path / "w.safetensors"
    artifacts.save_tensors(p, {"a": torch.zeros(4)}, artifacts.metadata("test", experiment="t", params={}, seed=0))
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match"):
        artifacts.load_tensors(p)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ArtifactError, match="missing"):
        artifacts.read_json(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        artifacts.read_json(tmp_path / "bad.json")


def test_inputs_are_hashed(tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("hello")
    meta = artifacts.metadata("test", experiment="t", params={}, seed=1, inputs=[f])
    assert meta["inputs"][str(f)] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "x.json"
    artifacts.write_json(p, {"v": 1})

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        artifacts.write_json(p, {"v": 2})
    assert artifacts.read_json(p)["v"] == 1
    assert [q.name for q in tmp_path.iterdir()] == ["x.json"]  # no temp file left


def test_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        artifacts.write_json(tmp_path / "n.json", {"v": float("nan")})
    assert not (tmp_path / "n.json").exists()
