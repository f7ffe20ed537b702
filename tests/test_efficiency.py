"""The GPU efficiency switches (training.precision, channels_last, compile, data_placement) and
the sync-free attack loop: correctness on the CPU here, on a GPU where one is present (``gpu``)."""

from __future__ import annotations

import pytest
import torch

from doracle import config, models
from doracle.attacks import ATTACKS
from doracle.attacks.noise import KeyedNoise
from doracle.defenses import make_defense
from doracle.defenses.training import place_training_split, train
from doracle.models.mixture import Mixture


def _data(device="cpu", n=96, size=16):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, size, size, generator=g)
    y = (x[:, 0].mean((1, 2)) > x[:, 1].mean((1, 2))).long()  # a learnable label
    return x.to(device), y.to(device)


def _trained(device="cpu", method="pgd_at", arch="doracle_preact_resnet18", n=96, **switches):
    """(initial weights, trained model, stats) of one epoch of ``method`` with ``switches``."""
    p = config.validate({"training": {"epochs": 1, "batch_size": 32, "optimizer": "sgd", "lr": 0.05, **switches},
                         "threat_model": {"eps": "8/255"},
                         "defenses": {"pgd_at": {"attack": {"name": "pgd", "steps": 2, "rel_step_size": 0.5}}}})
    x, y = _data(device, n=n)
    torch.manual_seed(0)
    m = models.create(arch, num_classes=2, in_chans=3, img_size=16, mean=[0.5] * 3, std=[0.25] * 3).to(device)
    init = {k: v.detach().clone() for k, v in m.state_dict().items()}
    stats = train(m, make_defense(method, p), x, y, p.training, epochs=1, seed=0)
    return init, m, stats


def _update(init, model) -> torch.Tensor:
    """The whole weight update of a run (every floating tensor, flattened)."""
    state = model.state_dict()
    return torch.cat([(state[k].float() - init[k].float()).flatten() for k in init if init[k].is_floating_point()])


def _cosine(a, b) -> float:
    a, b = a.double(), b.double()
    return float(a @ b / (a.norm() * b.norm()))


def _max_rel_diff(a, b):
    """The largest relative difference between two networks' weights."""
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].float() - sb[k].float()).norm() / sb[k].float().norm().clamp_min(1e-12))
               for k in sa if sa[k].is_floating_point())


# tolerances of one training step of PreActResNet-18 (SGD, batch 32), as the cosine similarity of
# the weight update with the fp32 / NCHW one: measured on this CPU (2026-11-22) 1 - 2.5e-9 for
# channels_last and 0.99988 for bf16; asserted with margin
CHANNELS_LAST_COSINE = 1 - 1e-6
BF16_COSINE = 0.999


@pytest.fixture(scope="module")
def reference():
    # ERM: PGD's sign steps would turn rounding differences into different adversarial examples
    return _trained(method="erm", n=32)


def test_channels_last_trains_the_same_network(reference):
    # without BatchNorm the NHWC kernels agree with NCHW to float rounding, weight for weight
    plain = _trained(arch="doracle_cnn_small")[1]
    fast, stats = _trained(arch="doracle_cnn_small", channels_last=True)[1:]
    assert stats["channels_last"] and _max_rel_diff(fast, plain) < 1e-4
    # PreActResNet-18: one training step's update points the same way
    init, m, _ = _trained(method="erm", n=32, channels_last=True)
    assert m.inner.conv1.weight.is_contiguous()  # saved and evaluated in the usual format
    assert _cosine(_update(init, m), _update(reference[0], reference[1])) > CHANNELS_LAST_COSINE


def test_bf16_autocast_step_matches_fp32(reference):
    init, m, stats = _trained(method="erm", n=32, precision="bf16")
    assert stats["precision"] == "bf16"
    assert stats["loss_history"][0] == pytest.approx(reference[2]["loss_history"][0], rel=2e-2)
    assert _cosine(_update(init, m), _update(reference[0], reference[1])) > BF16_COSINE


@pytest.mark.slow
def test_compiled_training_matches_eager():
    _, plain, ref = _trained(arch="doracle_cnn_small")
    _, m, stats = _trained(arch="doracle_cnn_small", compile=True)
    assert stats["compile"]
    assert stats["compute"] == ref["compute"]  # passes still counted through the compiled module
    assert _max_rel_diff(m, plain) < 1e-4


def test_on_a_cpu_the_training_split_stays_where_it_is():
    x, _ = _data()
    placed, where = place_training_split(x, "cpu", "pinned")
    assert where == "device" and placed.device.type == "cpu"


# ----------------------------------------------------------------------------- on a GPU


@pytest.mark.gpu
def test_gpu_bf16_channels_last_step_matches_fp32_and_stays_in_the_ball():
    init, ref, _ = _trained("cuda", method="erm", n=32)
    _, fast, _ = _trained("cuda", method="erm", n=32, precision="bf16", channels_last=True)
    assert _cosine(_update(init, fast), _update(init, ref)) > BF16_COSINE
    x, y = _data("cuda")
    spec = config.AttackSpec(name="pgd", steps=10, rel_step_size=0.25)
    eps = 8 / 255
    with torch.autocast("cuda", dtype=torch.bfloat16):
        xa = ATTACKS.get("pgd")(Mixture([fast.eval()]), x, y, eps=eps, norm="linf", spec=spec,
                                generator=KeyedNoise(0, torch.arange(len(x))))
    assert xa.dtype == torch.float32 and (xa - x).abs().max() <= eps + 1e-6 and 0 <= xa.min() and xa.max() <= 1


@pytest.mark.gpu
def test_gpu_attack_loop_never_waits_for_the_host():
    x, y = _data("cuda")
    torch.manual_seed(0)
    m = models.create("doracle_cnn_small", num_classes=2, in_chans=3, img_size=16, mean=[0.5] * 3,
                      std=[0.25] * 3).cuda().eval()
    spec = config.AttackSpec(name="pgd", steps=5, rel_step_size=0.25, restarts=2)
    noise = KeyedNoise(0, torch.arange(len(x)))  # keys on the host, as a training job gives them
    ATTACKS.get("pgd")(Mixture([m]), x, y, eps=8 / 255, norm="linf", spec=spec, generator=noise)  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:  # fresh noise: its host keys are copied to the device inside the checked call
        ATTACKS.get("pgd")(Mixture([m]), x, y, eps=8 / 255, norm="linf", spec=spec,
                           generator=KeyedNoise(0, torch.arange(len(x))))
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.gpu
def test_gpu_pinned_placement_trains_the_same_network():
    x, y = _data("cpu")
    placed, where = place_training_split(x, "cuda", "pinned")
    assert where == "pinned" and placed.device.type == "cpu"  # batches go through pinned memory
    p = config.validate({"training": {"epochs": 1, "batch_size": 32}})
    nets = []
    for data in (x.cuda(), placed):
        torch.manual_seed(0)
        m = models.create("doracle_cnn_small", num_classes=2, in_chans=3, img_size=16, mean=[0.5] * 3,
                          std=[0.25] * 3).cuda()
        train(m, make_defense("erm", p), data, y.to(data.device), p.training, epochs=1, seed=0)
        nets.append(m)
    assert _max_rel_diff(*nets) < 1e-6
