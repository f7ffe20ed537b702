"""The cluster-scale presets configs/*.yaml: complete params files with the papers' settings.

Fast: nothing is trained or downloaded. Each preset is validated, checked against the settings it
claims (exact eps, the training attacks' step sizes, the optimiser, AutoAttack's reference
budget), planned by real Snakemake dry runs (plain and with profiles/slurm) and checked by
`doracle check-params`.
"""

from __future__ import annotations

import re
import shutil
from fractions import Fraction

import pytest
import yaml

from doracle import config, jobtable, pipeline
from doracle.games.at.game import AT
from doracle.games.checks import check_names
from project import ROOT, make_project, run

CONFIGS = ROOT / "configs"

# What each preset claims (sources in the files' comments).
EXPECTED = {
    "mnist": {"eps": Fraction(3, 10), "arch": "doracle_cnn_small", "lr": 0.01, "weight_decay": 0.0,
              "epochs": 100, "attack_steps": 40, "attack_step": Fraction(1, 100)},
    "cifar10": {"eps": Fraction(8, 255), "arch": "doracle_preact_resnet18", "lr": 0.1, "weight_decay": 5e-4,
                "epochs": 200, "attack_steps": 10, "attack_step": Fraction(2, 255)},
    "svhn": {"eps": Fraction(8, 255), "arch": "doracle_preact_resnet18", "lr": 0.01, "weight_decay": 5e-4,
             "epochs": 200, "attack_steps": 10, "attack_step": Fraction(2, 255)},
    "tinyimagenet": {"eps": Fraction(8, 255), "arch": "doracle_preact_resnet18", "lr": 0.1, "weight_decay": 5e-4,
                     "epochs": 100, "attack_steps": 10, "attack_step": Fraction(2, 255)},
}
NAMES = sorted(EXPECTED)


def preset(name: str) -> config.Params:
    return config.load(CONFIGS / f"{name}.yaml")


def step(spec: config.AttackSpec, eps: Fraction) -> Fraction:
    """An attack's step in input units, exactly as the params file writes it."""
    return config.parse_fraction(spec.rel_step_size) * eps


def test_every_preset_is_listed_here():
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == NAMES


# maps whose keys the user names (a search space: player -> family -> options), not structure
FREE_FORM = {("nas", "space")}


def key_paths(tree: dict, prefix: tuple = ()) -> set[tuple]:
    out = set()
    for k, v in tree.items():
        out.add(prefix + (k,))
        if isinstance(v, dict) and prefix + (k,) not in FREE_FORM:
            out |= key_paths(v, prefix + (k,))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_a_preset_holds_every_key_of_params_yaml(name):
    """A preset is a complete params file (read as written, never merged over params.yaml:
    config.resolve), with params.yaml's structure: every key params.yaml has, it has."""
    want = key_paths(yaml.safe_load((ROOT / "params.yaml").read_text()))
    have = key_paths(yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()))
    missing = sorted(".".join(k) for k in want - have)
    assert not missing, f"configs/{name}.yaml lacks params.yaml's keys {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_a_preset_is_valid_and_has_the_papers_settings(name):
    want = EXPECTED[name]
    p = preset(name)
    check_names(p)
    assert p.experiment == name and p.data.dataset == name
    assert p.device == "cuda" and p.model.arch == want["arch"]

    # eps exactly the fraction, written as the literature writes it
    eps = config.parse_fraction(p.threat_model.eps)
    assert p.threat_model.norm == "linf" and eps == want["eps"]
    assert p.threat_model.eps == {Fraction(8, 255): "8/255", Fraction(3, 10): "0.3"}[want["eps"]]

    # the training attacks: PGD (random start) of the papers' step; FGSM-RS one step of 1.25 eps
    for spec in (p.defenses["pgd_at"].attack, p.defenses["trades"].attack, p.do.attacker.attack):
        assert spec.name == "pgd" and spec.random_start and spec.steps == want["attack_steps"]
        if want["eps"] == Fraction(8, 255):
            assert step(spec, eps) == Fraction(2, 255)  # exactly
        else:  # MNIST: 0.01 = eps / 30, not a finite decimal in units of eps
            assert abs(step(spec, eps) - want["attack_step"]) < Fraction(1, 10**15)
    fgsm = p.defenses["fgsm_rs"]
    assert fgsm.attack.name == "fgsm" and fgsm.attack.random_start and step(fgsm.attack, eps) == Fraction(5, 4) * eps
    assert fgsm.lr_schedule == "cyclic"
    assert p.defenses["trades"].options["beta"] == 6.0

    # the optimiser and schedule
    t = p.training
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.batch_size) == (
        "sgd", want["lr"], 0.9, want["weight_decay"], 128)
    assert t.epochs == want["epochs"] and t.lr_schedule == "piecewise" and t.lr_decay == 0.1
    assert t.lr_milestones == ([0.55, 0.75, 0.9] if name == "mnist" else [0.5, 0.75])
    assert t.augmentation == "standard" and t.precision == "bf16" and t.channels_last and not t.compile
    assert t.data_placement == "auto"

    # the double oracle: PGD-AT defenders, PGD attackers, a payoff split that resolves the tolerance
    assert p.do.defender.defense == "pgd_at" and p.do.attacker.materialize == "auto"
    assert config.warnings(p) == []
    assert config.resolvable_tolerance(int(config.DATASET_SIZES[name] * p.data.splits["payoff"])) <= p.do.tolerance

    # evaluation: PGD-50 with restarts, ARC, AutoAttack's reference budget, the eps curve, every test example
    ev = p.evaluation
    pgd = ev.attacks["pgd"]
    assert pgd.name == "pgd" and pgd.steps == 50 and pgd.restarts > 1 and pgd.random_start
    assert ev.attacks["arc"].name == "arc"
    assert ev.autoattack is not None and ev.autoattack.version == "standard"
    assert ev.max_examples is None
    curve = [config.parse_fraction(e) for e in ev.eps_curve.eps]
    assert curve[0] == 0 and eps in curve and max(curve) > eps
    if eps == Fraction(8, 255):
        assert curve == [0, Fraction(4, 255), Fraction(8, 255), Fraction(16, 255)]

    # cluster resources: one GPU per job, site-specific keys left to the site
    for family, res in p.resources:
        assert res.gpu == 1 and res.gpu_model is None and res.slurm_partition is None, family
        assert res.cpus_per_task is not None and res.cpus_per_task >= p.threads, family
    assert {"erm", "pgd_at", "fgsm_rs", "trades"} <= set(p.baselines.methods)


def dry_run(proj, *args) -> tuple[str, list[dict]]:
    """`snakemake -n -p ARGS` in ``proj``: its output and every job (rule, wildcards, resources, shell)."""
    out = run(["snakemake", "-n", "-p", *args], proj).stdout
    jobs = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", out):
        m = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if not m or m.group(1) == "all":
            continue
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.M))
        shell = re.search(r"^Shell command: (.*)$", block, re.M)
        jobs.append({"rule": m.group(1), "shell": shell.group(1) if shell else "",
                     "wildcards": dict(kv.split("=", 1) for kv in fields.get("wildcards", "").split(", ") if kv),
                     "resources": dict(kv.split("=", 1) for kv in fields.get("resources", "").split(", ") if kv)})
    return out, jobs


def job_stats(out: str) -> dict[str, int]:
    """Snakemake's "Job stats" table of a dry run: rule -> number of jobs."""
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.fixture
def project(tmp_path):
    """A throw-away project: the workflow, the repository's params.yaml and configs/."""
    proj = make_project(tmp_path / "proj", yaml.safe_load((ROOT / "params.yaml").read_text()), dvc=False)
    shutil.copytree(CONFIGS, proj / "configs")
    return proj


@pytest.mark.parametrize("name", NAMES)
def test_snakemake_plans_the_whole_experiment_of_a_preset(project, name):
    p = preset(name)
    T, methods = p.do.iterations, [*p.baselines.methods, *p.baselines.matched_names()]
    assert p.baselines.matched_names() == ["pgd_at_epochs", "pgd_at_passes"]
    out, jobs = dry_run(project, "--configfile", f"configs/{name}.yaml")

    iterations = [pipeline.it3(t) for t in range(1, T + 1)]
    assert job_stats(out) == {
        "prepare_data": 1, "train": 1, "train_baseline": len(methods), "do_init": 1, "best_response": 2 * T,
        **{r: T for r in ("payoff", "solve", "prune")}, "close": 1,
        "evaluate_do": len(AT.TARGETS), "evaluate_baseline": len(methods), "metrics": 1, "report": 1,
        "all": 1}
    by_rule: dict[str, list[dict]] = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], []).append(job["wildcards"])
    for rule in ("payoff", "solve", "prune"):
        assert sorted(w["it"] for w in by_rule[rule]) == iterations, rule
    assert sorted((w["it"], w["player"]) for w in by_rule["best_response"]) == sorted(
        (it, p) for it in iterations for p in ("defender", "attacker"))
    assert by_rule["train"] == [{"exp": name, "role": "base"}]
    for rule in ("train_baseline", "evaluate_baseline"):
        assert sorted(w["method"] for w in by_rule[rule]) == sorted(methods), rule
    assert sorted(w["target"] for w in by_rule["evaluate_do"]) == sorted(AT.TARGETS)
    # every job reads the preset (as the workflow writes it for its jobs) and writes under its experiment
    for job in jobs:
        assert f"--params results/{name}/params.yaml " in job["shell"] and f"results/{name}/" in job["shell"], job
        assert job["wildcards"]["exp"] == name
    # a dry run never touches data
    for d in ("data", "results", "logs", "benchmarks"):
        assert not (project / d).exists(), d


@pytest.mark.parametrize("name", NAMES)
def test_the_slurm_profile_gives_each_job_the_presets_resources(project, name):
    p = preset(name)
    # a dry run has one core unless told (it would cap the threads shown); a real cluster run none
    _, jobs = dry_run(project, "--profile", "profiles/slurm", "--cores", "8", "--configfile", f"configs/{name}.yaml")
    assert {j["rule"] for j in jobs} == set(jobtable.SHAPES)
    for job in jobs:
        want = pipeline.rule_resources(p, job["rule"])
        got = job["resources"]
        if job["rule"] in jobtable.local_rules():  # on the submitting host (the download too): no GPU
            assert "gpu" not in got, job["rule"]
            continue
        assert want.get("gpu") == 1, job["rule"]
        assert {k: got.get(k) for k in want} == {k: str(v) for k, v in want.items()}, job["rule"]
    assert not (project / "results").exists() and not (project / "data").exists()


@pytest.mark.parametrize("name", NAMES)
def test_check_params_accepts_a_preset_without_warnings(cli, name):
    proc = cli("check-params", "--params", f"configs/{name}.yaml", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert f"configs/{name}.yaml: valid (experiment '{name}'" in proc.stdout
    assert "warning" not in proc.stderr, proc.stderr
    # every preset's payoff split resolves payoff differences of 0.01
    n = int(proc.stdout.split("payoff split: about ")[1].split()[0])
    assert n >= 19209 and "closer than 0.010 cannot be told apart" in proc.stdout


def test_dvc_yaml_of_a_preset_reads_the_preset(cli, tmp_path):
    out = tmp_path / "dvc.yaml"
    proc = cli("dvc-yaml", "--params", "configs/cifar10.yaml", "--out", str(out), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    stages = yaml.safe_load(out.read_text())["stages"]
    for name, stage in stages.items():
        assert "--params params.yaml" not in stage["cmd"], name
        if "--params" in stage["cmd"]:
            assert "--params configs/cifar10.yaml" in stage["cmd"], name
        assert all(isinstance(p, dict) and "configs/cifar10.yaml" in p for p in stage["params"]), name
