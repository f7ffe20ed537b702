"""Preemption-safe training: a job killed or preempted (SIGTERM / SIGUSR1, what SLURM sends before
a time limit) and run again ends with the same weights, bit for bit on CPU, as an uninterrupted one."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from doracle import config
from doracle.defenses import make_defense
from doracle.defenses.resume import checkpoint_path
from doracle.defenses.training import train
from doracle.errors import EXIT_PREEMPTED
from project import params_with

EPOCHS = 16


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    pf = d / "params.yaml"
    pf.write_text(yaml.safe_dump(params_with({"baselines": {"methods": ["dale", "l2l", "pgd_at"], "epochs": EPOCHS}})))
    subprocess.run([sys.executable, "-m", "doracle", "data", "--params", str(pf), "--out", str(d / "data.safetensors")],
                   check=True, capture_output=True)
    return d, pf


def train_cmd(d: Path, pf: Path, method: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "doracle", "train", "--params", str(pf), "--role", "baseline", "--method", method,
            "--data", str(d / "data.safetensors"), "--out", str(out)]


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the job ended before its first checkpoint: {proc.communicate()}"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)


@pytest.mark.parametrize("method,sig", [("dale", signal.SIGTERM), ("l2l", signal.SIGUSR1),
                                        ("pgd_at", signal.SIGKILL)])
def test_interrupted_training_resumes_to_the_same_weights(job, tmp_path, method, sig):
    d, pf = job
    ref = tmp_path / "ref" / "model.safetensors"
    subprocess.run(train_cmd(d, pf, method, ref), check=True, capture_output=True)
    out = tmp_path / "run" / "model.safetensors"
    ckpt = checkpoint_path(out)
    # the job in the command's own process (no fork server: SIGKILL to the command would reach a
    # forked job a moment later, not at once; tests/test_forkserver.py checks that it does)
    env = {**os.environ, "DORACLE_FORKSERVER": "0"}
    proc = subprocess.Popen(train_cmd(d, pf, method, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    wait_for(ckpt.with_suffix(".json"), proc)  # the first epoch is done and saved (its sidecar is renamed last)
    time.sleep(0.3)  # somewhere inside a later epoch
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == EXIT_PREEMPTED, err
        assert "preempted" in err and "rerun the job to resume" in err
    assert not out.exists() and ckpt.exists(), "the job must leave its state, not a half-written model"
    state = json.loads(ckpt.with_suffix(".json").read_text())
    assert state["kind"] == "training_state"
    res = subprocess.run(train_cmd(d, pf, method, out), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "resuming training from" in res.stdout + res.stderr
    assert sha(out) == sha(ref), f"{method}: resumed weights differ from an uninterrupted run"
    assert not ckpt.exists(), "the state is removed once the model is saved"
    resumed, fresh = (json.loads(p.with_suffix(".json").read_text())["training"] for p in (out, ref))
    assert resumed["loss_history"] == fresh["loss_history"] and resumed["compute"] == fresh["compute"]


def test_a_state_made_for_other_settings_is_not_resumed(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 1, 4, 4, generator=g), torch.randint(0, 2, (64,), generator=g)
    p = config.validate({"training": {"batch_size": 16}})

    def run(fingerprint, epochs):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
        logs = []
        train(m, make_defense("erm", p), x, y, p.training, epochs=epochs, seed=0, checkpoint=tmp_path / "s.safetensors",
              fingerprint=fingerprint, log=logs.append)
        return m[1].weight.detach().clone(), logs

    run("other settings", 3)  # leaves a finished state behind (nobody removed it)
    w, logs = run("these settings", 2)
    assert any("not resuming" in m for m in logs)
    (tmp_path / "s.safetensors").unlink()
    fresh, _ = run("these settings", 2)
    assert torch.equal(w, fresh)


def test_a_corrupt_state_starts_over(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 1, 4, 4, generator=g), torch.randint(0, 2, (32,), generator=g)
    p = config.validate({})
    ck = tmp_path / "s.safetensors"
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    train(m, make_defense("erm", p), x, y, p.training, epochs=1, seed=0, checkpoint=ck, fingerprint="f")
    data = bytearray(ck.read_bytes())
    data[-1] ^= 0xFF
    ck.write_bytes(bytes(data))
    logs = []
    train(m, make_defense("erm", p), x, y, p.training, epochs=1, seed=0, checkpoint=ck, fingerprint="f",
          log=logs.append)
    assert any("unreadable" in m and "sha256" in m for m in logs)


def test_signals_are_handed_back_after_training(tmp_path):
    p = config.validate({})
    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 2, (8,))
    before = signal.getsignal(signal.SIGTERM)
    train(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), make_defense("erm", p), x, y, p.training, epochs=1, seed=0,
          checkpoint=tmp_path / "s.safetensors")
    assert signal.getsignal(signal.SIGTERM) is before


class _SignalAt:
    """Wraps a defense: sends this process ``sig`` during batch ``at`` (then behaves as the defense)."""

    def __init__(self, defense, at: int, sig=signal.SIGUSR1):
        self.d, self.at, self.sig, self.n = defense, at, sig, 0

    def __getattr__(self, name):
        return getattr(self.d, name)

    def loss(self, model, x, y, gen):
        self.n += 1
        if self.n == self.at:
            os.kill(os.getpid(), self.sig)
        return self.d.loss(model, x, y, gen)


@pytest.mark.parametrize("method,optimizer,schedule", [("amp", "sgd", "cyclic"), ("erm", "adam", "cyclic"),
                                                       ("trades", "sgd", "constant")])
def test_in_process_preemption_mid_epoch_resumes_bit_for_bit(tmp_path, method, optimizer, schedule):
    """Preempted in the middle of an epoch (batch 7 of 4 per epoch x 3 epochs), resumed: the same
    weights as an uninterrupted run, also for AMP, whose optimizer wraps another (its learning
    rate schedule must reach the optimizer restored underneath)."""
    from doracle.errors import Preempted

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 1, 4, 4, generator=g), torch.randint(0, 2, (64,), generator=g)
    p = config.validate({"training": {"batch_size": 16, "optimizer": optimizer, "lr": 0.05,
                                      "lr_schedule": schedule}})

    def fresh():
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))

    ref = fresh()
    train(ref, make_defense(method, p), x, y, p.training, epochs=3, seed=1)
    m, ck = fresh(), tmp_path / "s.safetensors"
    with pytest.raises(Preempted):
        train(m, _SignalAt(make_defense(method, p), at=7), x, y, p.training, epochs=3, seed=1, checkpoint=ck,
              fingerprint="f")
    m = fresh()  # a new process would start from a fresh model
    train(m, make_defense(method, p), x, y, p.training, epochs=3, seed=1, checkpoint=ck, fingerprint="f")
    for a, b in zip(ref.parameters(), m.parameters(), strict=True):
        assert torch.equal(a, b)


def test_without_a_checkpoint_signals_keep_their_handlers(tmp_path):
    """Nothing to save: SIGTERM must still stop the job at once, not wait for the end of training."""
    seen = []

    class Probe:
        def __init__(self, d):
            self.d = d

        def __getattr__(self, name):
            return getattr(self.d, name)

        def loss(self, model, x, y, gen):
            seen.append(signal.getsignal(signal.SIGTERM))
            return self.d.loss(model, x, y, gen)

    p = config.validate({})
    before = signal.getsignal(signal.SIGTERM)
    train(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), Probe(make_defense("erm", p)), torch.rand(8, 1, 4, 4),
          torch.randint(0, 2, (8,)), p.training, epochs=1, seed=0)
    assert seen and all(h is before for h in seen)
