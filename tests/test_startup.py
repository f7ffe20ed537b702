"""A job imports only what it runs: doracle's architectures are built without timm (and still
registered in timm's registry whenever timm is imported), and the light jobs import no torch.
Each check runs in a fresh interpreter (bench/bench_startup.py measures the start-up)."""

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


def test_the_command_line_builds_its_parser_without_pydantic():
    """Every command builds the whole parser (the jobs' subcommands from the job table) before it
    runs; only the job that runs reads params. The table and the paths it names must not pull in
    the params schema (pydantic, about 0.1 s)."""
    out = python("import sys\nfrom doracle.cli import build_parser\nbuild_parser().format_help()\n"
                 "print('pydantic' in sys.modules, 'doracle.config' in sys.modules, 'doracle.jobtable' in sys.modules)")
    assert out.split() == ["False", "False", "True"]


def test_light_commands_import_no_torch(tmp_path):
    """The params checks and the game registry (what every light job runs first) stay torch-free."""
    out = python("import sys\nfrom doracle import config, pipeline\nfrom doracle.games import game_of\n"
                 "from doracle.games.checks import check_names\n"
                 "for f in ('params.yaml', 'params-gan.yaml'):\n"
                 "    p = config.load(f); g = game_of(p); pipeline.jobs(p, f); check_names(p)\n"
                 "from doracle.evaluation import metrics\nfrom doracle.report import at, do, gan\n"
                 "print('torch' in sys.modules, 'timm' in sys.modules)")
    assert out.split() == ["False", "False"]


@pytest.mark.slow
def test_jobs_of_the_shared_run_import_only_what_they_run(shared):
    """Every job of the shared run (both games): none imported timm (they build doracle_cnn_small
    and doracle's GAN nets), torch._dynamo (the training jobs step PyTorch's optimizers through
    runtime.optimizer_step) or torchmetrics (the GAN evaluations compute FID and IS themselves);
    solve, prune, metrics and report imported no torch."""
    seen = {}
    for line in shared.modules.read_text().splitlines():
        rec = json.loads(line)
        cmd = " ".join(rec["argv"][:2]) if rec["argv"][0] == "do" else rec["argv"][0]
        seen.setdefault(cmd, []).append(rec)
    assert {"do solve", "do prune", "metrics", "report", "train", "do best-response", "evaluate"} <= set(seen)
    for cmd, recs in seen.items():
        for rec in recs:
            assert "timm" not in rec["packages"], f"{cmd} imported timm"
            assert not {"torch._dynamo", "torchmetrics"} & set(rec["heavy"]), f"{cmd} imported {rec['heavy']}"
            if cmd in ("do solve", "do prune", "metrics", "report"):
                assert "torch" not in rec["packages"], f"{cmd} imported torch: {rec['argv']}"
    assert len(seen["report"]) == 2 and len(seen["metrics"]) == 2  # both experiments'


OPTIMIZER_STEPS = """
import sys, warnings, torch
from doracle import runtime
runtime.eager_optimizers()
def run(make, use_helper, closure, hook=False):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 3))
    opt = make(net.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
    calls = []
    if hook:
        opt.register_step_post_hook(lambda *a: calls.append(1))
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 3, (8,))
    for _ in range(4):
        def f():
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            return loss
        if closure:
            out = runtime.optimizer_step(opt, f) if use_helper else opt.step(f)
            assert torch.is_tensor(out) and out.ndim == 0  # the closure's loss comes back
        else:
            f()
            runtime.optimizer_step(opt) if use_helper else opt.step()
        sched.step()
    assert len(calls) == (4 if hook else 0)
    return [p.detach().clone() for p in net.parameters()], opt.state_dict()
makers = {"adam": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-3),
          "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)}
with warnings.catch_warnings():
    warnings.simplefilter("error")  # an LR scheduler stepped 'before optimizer.step()' would warn
    ours = {(n, c): run(m, True, c)[0] for n, m in makers.items() for c in (True, False)}
    print("torch._dynamo" in sys.modules)
    # a step hook registered: the public call runs, and runs the hook
    hooked = {(n, c): run(m, True, c, hook=True)[0] for n, m in makers.items() for c in (True, False)}
    theirs = {(n, c): run(m, False, c)[0] for n, m in makers.items() for c in (True, False)}  # PyTorch's step
print(all(torch.equal(u, v) and torch.equal(u, w) for k in ours for u, v, w in zip(ours[k], hooked[k], theirs[k])))
"""


def test_optimizer_steps_give_pytorchs_update_without_importing_dynamo():
    """runtime.optimizer_step (every training loop's step) is PyTorch's update bit for bit (Adam with
    weight decay, Nesterov SGD; with and without a closure; an LR scheduler attached, which does not
    warn), and neither it nor the optimizers' other calls import torch._dynamo (as long as one
    second of each training job's start-up); with a step hook registered the public call runs."""
    assert python(OPTIMIZER_STEPS).split() == ["False", "True"]


_EXIT = """
import atexit, sys
{imports}
from doracle import cli

class Teardown:  # runs only in the interpreter's teardown (module globals freed)
    def __del__(self):
        sys.__stderr__.write("teardown ran\\n")

keep = Teardown()
atexit.register(lambda: open(sys.argv[1], "w").write("exit handlers ran"))
job = lambda *args: (print("job output", end=""), sys.stderr.write("job error"), 3)[-1]
if sys.argv[2] == "forwarded":  # the command's side of a job the fork server ran
    from doracle import forkserver
    forkserver.routed = forkserver.enabled = lambda *args: True
    forkserver.forward = job
    forkserver.run()
cli.main = job
cli.run()
"""


@pytest.mark.parametrize("kind", ["torch-job", "light-job", "forwarded"])
def test_a_torch_job_exits_without_the_interpreters_teardown(tmp_path, kind):
    """``doracle``'s console script (cli.run): a job that imported torch skips the teardown (0.3-0.5 s
    of freeing torch's modules), yet its exit code, its buffered output (a pipe: block-buffered) and
    the exit handlers (logging's, coverage.py's) are kept; a light job exits the ordinary way. A
    command whose job the fork server ran leaves the same fast way (errors.leave), its exit
    handlers run too."""
    flag = tmp_path / "flag"
    code = _EXIT.format(imports="import torch" if kind == "torch-job" else "")
    proc = subprocess.run([sys.executable, "-c", code, str(flag), kind], capture_output=True, text=True)
    assert proc.returncode == 3
    assert proc.stdout == "job output" and "job error" in proc.stderr
    assert flag.read_text() == "exit handlers ran"
    assert ("teardown ran" in proc.stderr) is (kind == "light-job")
