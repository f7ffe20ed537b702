"""params.yaml validation: one schema, at workflow load and in the CLI; errors name the key."""

from __future__ import annotations

import pytest
import yaml

from doracle import config
from doracle.errors import ConfigError
from doracle.games.checks import check_names
from project import ROOT, make_project, params_with, run

BAD = [
    ({"training": {"epochs": "ten"}}, "training.epochs"),
    ({"threat_model": {"eps": 2}}, "threat_model.eps: must be in (0, 1]"),
    ({"threat_model": {"eps": "8/0x"}}, "threat_model.eps"),
    ({"do": {"iteratons": 3}}, "do.iteratons: unknown key"),
    ({"do": {"iterations": 0}}, "do.iterations"),
    ({"do": {"attacker": {"attack": {"name": "pgdd"}}}}, "do.attacker.attack.name: unknown attack 'pgdd'"),
    ({"baselines": {"methods": ["erm", "madry"]}}, "baselines.methods[1]: unknown defense 'madry'"),
    ({"do": {"meta_solver": "simplex"}}, "do.meta_solver: unknown meta-solver 'simplex'"),
    ({"data": {"splits": {"train": 0.5, "payoff": 0.2, "test": 0.2}}}, "data.splits"),
    ({"model": {"arch": "no_such_net"}}, "model.arch: unknown model 'no_such_net'"),
    ({"defenses": {"trades": {"options": {"betta": 1}}}}, "defenses.trades.options.betta: unknown key"),
    ({"defenses": {"dale": {"options": {"variant": "cauchy"}}}}, "defenses.dale.options.variant"),
    ({"evaluation": {"per_member": ["apgd"]}}, "per_member names 'apgd'"),
]


def test_repository_params_are_valid():
    p = config.load(ROOT / "params.yaml")
    check_names(p)
    assert p.experiment == "digits" and p.do.iterations >= 5 and set(p.baselines.methods) >= {"erm", "pgd_at"}


@pytest.mark.parametrize("override,msg", BAD)
def test_bad_params_fail_in_the_cli_naming_the_key(cli, tmp_path, override, msg):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params_with(override)))
    proc = cli("check-params", cwd=tmp_path)
    assert proc.returncode == 2
    assert msg in proc.stderr, proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("override,msg", BAD[:2] + BAD[3:6] + BAD[6:7])
def test_bad_params_stop_the_workflow_before_any_output(tmp_path, override, msg):
    proj = make_project(tmp_path, params_with(override), dvc=False)
    proc = run(["snakemake", "-c1"], proj, check=False)
    assert proc.returncode != 0
    assert msg in proc.stdout + proc.stderr
    assert not (proj / "results").exists() and not (proj / "logs").exists()


def test_a_complete_configfile_is_what_the_jobs_read(tmp_path):
    proj = make_project(tmp_path, params_with(), dvc=False)
    (proj / "other.yaml").write_text(yaml.safe_dump(params_with({"experiment": "other"})))
    out = run(["snakemake", "-n", "-p", "--configfile", "other.yaml"], proj).stdout
    assert "--params results/other/params.yaml" in out and "results/tiny/" not in out
    assert not (proj / "results").exists()  # a dry run writes nothing
    run(["snakemake", "-c1", "results/other/data/dataset.safetensors", "--configfile", "other.yaml"], proj)
    written = (proj / "results/other/params.yaml").read_text()
    assert written.startswith("# Written by the doracle workflow from other.yaml")
    assert written.endswith((proj / "other.yaml").read_text())  # the file as it stands, after the header


def test_eps_is_kept_as_an_exact_fraction():
    p = config.validate({"threat_model": {"eps": "8/255"}})
    assert p.threat_model.eps == "8/255" and p.threat_model.eps_value == 8 / 255
    assert config.validate({"threat_model": {"eps": 0.5}}).threat_model.eps_value == 0.5


def test_yaml_errors_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "none.yaml")
    (tmp_path / "p.yaml").write_text("seed: 1\na: [1, 2\n")
    with pytest.raises(ConfigError, match=r"p.yaml:3:1: not valid YAML \(line 3\)") as err:
        config.load(tmp_path / "p.yaml")
    assert "<unicode string>" not in str(err.value)
    for text in ("", "# nothing\n", "{}\n"):
        (tmp_path / "e.yaml").write_text(text)
        with pytest.raises(ConfigError, match="e.yaml: the params file is empty"):
            config.load(tmp_path / "e.yaml")
    (tmp_path / "q.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        config.load(tmp_path / "q.yaml")


def test_a_matched_baseline_needs_the_closed_population_and_its_name_is_checked(cli, tmp_path):
    import shutil

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    args = ("train", "--params", "params.yaml", "--role", "baseline", "--data", "d.safetensors", "--out", "m.safetensors")
    proc = cli(*args, "--method", "pgd_at_passes", cwd=tmp_path)
    assert proc.returncode == 2 and "--method pgd_at_passes needs --uses population=PATH" in proc.stderr
    proc = cli(*args, "--method", "pgd_at_weeks", cwd=tmp_path)
    assert proc.returncode == 2 and "'pgd_at_weeks' is not a baseline of these params" in proc.stderr
    assert "pgd_at_epochs, pgd_at_passes" in proc.stderr
    assert not (tmp_path / "m.safetensors").exists()
    # a matched name in baselines.methods would give two jobs one output: refused
    with pytest.raises(ConfigError, match="matched: pgd_at_epochs is the name of a matched baseline"):
        config.validate({"baselines": {"methods": ["erm", "pgd_at_epochs"]}})
