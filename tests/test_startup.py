"""A job imports only what it runs: doracle's architectures are built without timm (and still
registered in timm's registry whenever timm is imported), and the light jobs import no torch.
Each check runs in a fresh interpreter (benchmarks/bench_startup.py measures the start-up)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from doracle import models


def python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


ALL = (*models.OWN_MODELS, *models.GAN_MODELS)
KWARGS = {  # small inputs where the family allows them (the WRNs build at any size)
    "doracle_cnn_small": "num_classes=10, in_chans=1, img_size=8",
    "doracle_mlp": "num_classes=10, in_chans=1, img_size=8",
    "doracle_preact_resnet18": "num_classes=10, in_chans=3",
    "doracle_wrn28_10": "num_classes=10, in_chans=3",
    "doracle_wrn34_10": "num_classes=10, in_chans=3",
    "doracle_gen_mlp": "img_size=8, in_chans=1, latent_dim=4",
    "doracle_disc_mlp": "img_size=8, in_chans=1",
    "doracle_gen_dcgan": "img_size=8, in_chans=1, latent_dim=4",
    "doracle_disc_dcgan": "img_size=8, in_chans=1",
}


@pytest.mark.parametrize("timm_first", [False, True], ids=["doracle-then-timm", "timm-then-doracle"])
def test_timm_create_model_builds_every_doracle_architecture(timm_first):
    """After `import doracle.models`, in either order with `import timm`: the same registry entries."""
    imports = "import timm, doracle.models" if timm_first else "import doracle.models, timm"
    built = "; ".join(f"print(type(timm.create_model({n!r}, {KWARGS[n]})).__name__)" for n in ALL)
    out = python(f"{imports}\nprint(sorted(timm.list_models('doracle_*')))\n{built}").splitlines()
    assert json.loads(out[0].replace("'", '"')) == sorted(ALL)
    assert len(out) == 1 + len(ALL) and all(out[1:])


def test_building_doracle_models_does_not_import_timm():
    out = python("import sys, doracle.models as m\n"
                 "net = m.create('doracle_cnn_small', num_classes=10, in_chans=1, img_size=8, mean=(0.5,), std=(0.5,))\n"
                 "g = m.create_gan('doracle_gen_dcgan', 'generator', img_size=8, in_chans=1, latent_dim=4)\n"
                 "print('timm' in sys.modules, 'torchvision' in sys.modules, type(net).__name__)")
    assert out.split() == ["False", "False", "Normalized"]


def test_built_without_timm_is_the_same_model_timm_builds():
    """Same seed, same weights, whichever path builds it."""
    out = python("import torch, doracle.models as m, timm\n"
                 "kw = dict(num_classes=10, in_chans=1, img_size=8, mean=(0.5,), std=(0.5,))\n"
                 "torch.manual_seed(3); a = m.create('doracle_cnn_small', **kw)\n"
                 "torch.manual_seed(3); b = timm.create_model('doracle_cnn_small', **kw)\n"
                 "print(all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values())))")
    assert out.strip() == "True"


def test_light_commands_import_no_torch(tmp_path):
    """The params checks and the game registry (what every light job runs first) stay torch-free."""
    out = python("import sys\nfrom doracle import config, pipeline\nfrom doracle.games import game_of\n"
                 "for f in ('params.yaml', 'params-gan.yaml'):\n"
                 "    p = config.load(f); g = game_of(p); pipeline.jobs(p, f); config.check_names(p)\n"
                 "from doracle.evaluation import metrics\nfrom doracle.report import summary, gan\n"
                 "print('torch' in sys.modules, 'timm' in sys.modules)")
    assert out.split() == ["False", "False"]


@pytest.mark.slow
def test_jobs_of_the_shared_run_import_only_what_they_run(shared):
    """Every job of the shared run (both games): none imported timm (they build doracle_cnn_small
    and doracle's GAN nets); solve, prune, metrics and report imported no torch."""
    seen = {}
    for line in shared.modules.read_text().splitlines():
        rec = json.loads(line)
        cmd = " ".join(rec["argv"][:2]) if rec["argv"][0] == "do" else rec["argv"][0]
        seen.setdefault(cmd, []).append(rec)
    assert {"do solve", "do prune", "metrics", "report", "train", "do best-response", "evaluate"} <= set(seen)
    for cmd, recs in seen.items():
        for rec in recs:
            assert "timm" not in rec["packages"], f"{cmd} imported timm"
            if cmd in ("do solve", "do prune", "metrics", "report"):
                assert "torch" not in rec["packages"], f"{cmd} imported torch: {rec['argv']}"
    assert len(seen["report"]) == 2 and len(seen["metrics"]) == 2  # both experiments'
