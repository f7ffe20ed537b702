import numpy as np
import pytest
import timm
import torch

from doracle import config, data, models
from doracle.errors import ConfigError, DoracleError


def test_own_models_are_registered_in_timm():
    import doracle.models.gan  # noqa: F401
    import doracle.models.resnets  # noqa: F401
    import doracle.models.small  # noqa: F401

    assert set(timm.list_models("doracle_*")) == set(models.OWN_MODELS + models.GAN_MODELS)
    assert len(models.OWN_MODELS + models.GAN_MODELS) == len(set(models.OWN_MODELS + models.GAN_MODELS))


def build(arch, in_chans=3, img_size=32, num_classes=10):
    """One of doracle's models with distinct per-channel statistics (to see them inside)."""
    mean, std = [0.3, 0.4, 0.5][:in_chans], [0.2, 0.25, 0.3][:in_chans]
    return models.create(arch, num_classes=num_classes, in_chans=in_chans, img_size=img_size, mean=mean, std=std)


# Input sizes per channel count: digits 8x8 and MNIST 28x28 (1 channel), CIFAR 32x32 and
# TinyImageNet 64x64 (3 channels); one model takes all sizes of its channel count. Batch 2 keeps
# the wide ResNets fast on a CPU.
SIZES = {1: (8, 28), 3: (32, 64)}


@pytest.mark.parametrize("in_chans", SIZES, ids=lambda c: f"{c}ch")
@pytest.mark.parametrize("arch", models.OWN_MODELS)
def test_models_take_unit_range_inputs_and_return_logits(arch, in_chans):
    mean, std = torch.tensor([0.3, 0.4, 0.5][:in_chans]), torch.tensor([0.2, 0.25, 0.3][:in_chans])
    for img_size in SIZES[in_chans]:
        # doracle_mlp's input layer depends on img_size; the convolutional models are built once
        if img_size == SIZES[in_chans][0] or arch == "doracle_mlp":
            m = build(arch, in_chans, img_size).train()
        m.zero_grad(set_to_none=True)
        x = torch.rand(2, in_chans, img_size, img_size, requires_grad=True)
        assert x.min() >= 0 and x.max() <= 1
        out = m(x)
        assert out.shape == (2, 10) and torch.isfinite(out).all(), img_size
        assert not torch.allclose(out.softmax(1).sum(1), out.sum(1))  # logits, not probabilities
        torch.nn.functional.cross_entropy(out, torch.tensor([0, 1])).backward()
        for name, p in m.named_parameters():  # every parameter is used and gets a finite gradient
            assert p.grad is not None and torch.isfinite(p.grad).all(), (img_size, name)
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0  # attacks need input gradients
    # normalisation lives inside the model, as buffers (saved with the weights, never trained)
    buffers = dict(m.named_buffers())
    assert torch.equal(buffers["mean"].flatten(), mean) and torch.equal(buffers["std"].flatten(), std)
    assert "mean" not in dict(m.named_parameters())


def wrn_parameters(depth, widen, num_classes=10, in_chans=3):
    """WideResNet-depth-widen's parameter count, in closed form from the architecture."""
    n = (depth - 4) // 6
    w = [16, 16 * widen, 32 * widen, 64 * widen]
    total = 9 * in_chans * w[0]  # stem 3x3 conv, no bias
    for a, b in zip(w, w[1:], strict=False):
        total += 2 * a + 9 * a * b + 2 * b + 9 * b * b + a * b  # first block: BN, conv, BN, conv, 1x1 shortcut
        total += (n - 1) * (2 * b + 9 * b * b) * 2  # the others: (BN + conv) twice, identity shortcut
    return total + 2 * w[3] + w[3] * num_classes + num_classes  # final BN, linear head


@pytest.mark.parametrize("arch,count", [
    # PreActResNet-18 with the final BN of Rice et al. / Wong et al. (1,024 parameters more than
    # kuangliu's pytorch-cifar PreActResNet18, 11,171,146, which has none)
    ("doracle_preact_resnet18", 11_172_170),
    ("doracle_wrn28_10", 36_479_194),  # 36.48M, as published (TRADES/Madry code, no sub_block1)
    ("doracle_wrn34_10", 46_160_474),  # 46.16M
])
def test_cifar_models_have_the_published_parameter_counts(arch, count):
    m = build(arch)
    assert sum(p.numel() for p in m.parameters()) == count
    if arch.startswith("doracle_wrn"):
        depth, widen = map(int, arch.removeprefix("doracle_wrn").split("_"))
        assert wrn_parameters(depth, widen) == count
    assert round(count / 1e6, 2) == {"doracle_preact_resnet18": 11.17, "doracle_wrn28_10": 36.48,
                                     "doracle_wrn34_10": 46.16}[arch]


@pytest.mark.parametrize("arch", models.OWN_MODELS)
def test_channels_last_inputs_give_the_same_logits(arch):
    m = build(arch).eval()
    x = torch.rand(2, 3, 32, 32)
    xl = x.contiguous(memory_format=torch.channels_last)
    assert xl.is_contiguous(memory_format=torch.channels_last) and not xl.is_contiguous()
    # float32 rounding only: the memory layout changes the kernels' summation order (a WRN-34-10 logit
    # of about 10 moved by 1.2e-5, relative 1.2e-6, with four pytest workers on two cores)
    with torch.no_grad():
        ref = m(x)
        torch.testing.assert_close(m(xl), ref, rtol=1e-5, atol=1e-5)
        m = m.to(memory_format=torch.channels_last)  # a channels_last model too
        torch.testing.assert_close(m(xl), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", models.OWN_MODELS)
def test_same_seed_same_weights_byte_for_byte(arch):
    from safetensors.torch import save

    def weights(seed):
        torch.manual_seed(seed)
        return build(arch).state_dict()

    a, b = weights(7), weights(7)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert save(a) == save(b)
    c = weights(8)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("arch", models.OWN_MODELS)
def test_no_pretrained_weights(arch):
    with pytest.raises(ValueError, match=f"{arch} has no pretrained weights"):
        timm.create_model(arch, pretrained=True)


def test_wide_resnet_options_pass_through_timm():
    from doracle.models.resnets import WideBasicBlock, wide_resnet

    m = timm.create_model("doracle_wrn28_10", num_classes=100, in_chans=1, dropout=0.3)
    blocks = [b for b in m.modules() if isinstance(b, WideBasicBlock)]
    assert len(blocks) == 12 and all(b.dropout == 0.3 for b in blocks)
    assert m.inner.fc.out_features == 100 and m.inner.conv1.in_channels == 1
    assert all(b.dropout == 0 for b in build("doracle_wrn34_10").modules() if isinstance(b, WideBasicBlock))
    small = wide_resnet(16, 2, num_classes=10)  # the factory under the registered WRNs
    assert sum(p.numel() for p in small.parameters()) == wrn_parameters(16, 2)
    with pytest.raises(ValueError, match="6n"):
        wide_resnet(30, 10)


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
