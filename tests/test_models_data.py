import numpy as np
import pytest
import timm
import torch

from doracle import config, data, models
from doracle.errors import ConfigError, DoracleError


def test_own_models_are_registered_in_timm():
    import doracle.models.small  # noqa: F401

    assert set(timm.list_models("doracle_*")) == set(models.OWN_MODELS)


@pytest.mark.parametrize("arch", models.OWN_MODELS)
def test_models_take_unit_range_inputs_and_return_logits(arch):
    m = models.create(arch, num_classes=10, in_chans=1, img_size=8, mean=[0.3], std=[0.4])
    x = torch.rand(5, 1, 8, 8)
    out = m(x)
    assert out.shape == (5, 10)
    assert not torch.allclose(out.softmax(1).sum(1), out.sum(1))  # logits, not probabilities
    # normalisation lives inside the model
    assert torch.allclose(m.mean.flatten(), torch.tensor([0.3])) and torch.allclose(m.std.flatten(), torch.tensor([0.4]))


def test_unknown_arch():
    with pytest.raises(ConfigError, match="unknown model 'resnet9000'"):
        models.check_arch("resnet9000")


def test_any_timm_model_is_wrapped_with_normalisation():
    m = models.create("resnet18", num_classes=10, in_chans=3, img_size=32, mean=[0.5] * 3, std=[0.25] * 3)
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_digits_split_is_deterministic_stratified_and_disjoint(tmp_path):
    p = config.validate({})
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    ma, mb = data.prepare(p, a), data.prepare(p, b)
    assert a.read_bytes() == b.read_bytes() and ma["split_indices_sha256"] == mb["split_indices_sha256"]
    assert sum(ma["splits"].values()) == 1797
    ds = data.load(a)
    assert ds.x["train"].min() >= 0 and ds.x["train"].max() <= 1 and ds.shape == (1, 8, 8)
    for s in data.SPLITS:  # every class in every split, in proportion
        counts = np.bincount(ds.y[s].numpy(), minlength=10)
        assert counts.min() > 0.8 * counts.mean()
    raw = data.load_digits_raw()
    idx = data.split_indices(raw.y, dict(p.data.splits), p.seed)
    together = np.concatenate(list(idx.values()))
    assert len(np.unique(together)) == len(together) == 1797
    other = data.split_indices(raw.y, dict(p.data.splits), p.seed + 1)
    assert not np.array_equal(idx["test"], other["test"])


def test_offline_dataset_fails_fast_saying_what_to_download(tmp_path):
    p = config.validate({"data": {"dataset": "mnist", "root": str(tmp_path / "d"), "download": False}})
    with pytest.raises(DoracleError, match=r"download the four MNIST idx files .* into .*/MNIST/raw"):
        data.prepare(p, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
