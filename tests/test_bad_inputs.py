"""The bad-input corpus (tests/bad_inputs/cases.yaml, issue 14): every bad file a new user might
hand doracle, run through the real command line. Each case must exit 2 with a message naming the
file or key (and the fragments the manifest gives), print no traceback and write nothing."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

CORPUS = ROOT / "tests" / "bad_inputs"
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text())
#: the kinds of bad input issue 14 lists, each covered by at least one case
CATEGORIES = {
    "params-value": "wrong types and ranges in params",
    "params-file": "empty, unparsable, non-mapping or partial params files",
    "unknown-name": "unknown names and keys, with a did-you-mean",
    "missing-file": "missing params, payoff, data and model files",
    "payoff-csv": "empty, ragged, non-numeric, NaN/inf, constant or huge payoff CSVs",
    "data": "data sets of the wrong dtype or with out-of-range labels",
    "architecture": "architectures that do not fit the data's shape",
    "artifact": "JSON artifacts that are not objects, hold NaN, lack keys or are of another kind",
    "sweep": "space files: malformed storage, grids that would exhaust memory, options out of range, trial-name clashes",
}


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` (directories too) with the sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def test_the_manifest_covers_every_category():
    assert len(CASES) >= 80
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "case ids repeat"
    assert {c["category"] for c in CASES} == set(CATEGORIES)
    for c in CASES:
        assert set(c) <= {"id", "category", "file", "args", "expect", "names", "out", "once"}, c["id"]
        assert c["expect"] and c["args"], c["id"]
        exists = (CORPUS / c["file"]).exists()
        assert exists != (c["category"] == "missing-file"), f"{c['id']}: {c['file']}"


def test_the_generated_files_are_what_make_files_writes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_files", CORPUS / "make_files.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    stale = [rel for rel, data in mod.files().items() if (CORPUS / rel).read_bytes() != data]
    assert not stale, f"rerun python tests/bad_inputs/make_files.py: {stale}"


def measured(args, cwd: Path, record: Path) -> subprocess.CompletedProcess:
    """``doracle ARGS`` under a 4 GB address-space limit; its peak memory and CPU time in ``record``."""
    return subprocess.run([sys.executable, str(ROOT / "tests/measured.py"), str(record), sys.executable, "-m",
                           "doracle", *map(str, args)], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def good_cost(tmp_path_factory) -> dict:
    """What good commands cost: the largest peak memory of good params checks (one naming a timm
    model, which imports timm as the architecture cases do) and of a good training job (one epoch
    of the base model on 60 digits, the heaviest kind the corpus runs)."""
    tmp = tmp_path_factory.mktemp("good")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"]["max_train"], raw["base"]["epochs"] = 60, 1
    (tmp / "params.yaml").write_text(yaml.safe_dump(raw))
    (tmp / "timm.yaml").write_text(yaml.safe_dump({**raw, "model": {"arch": "resnet18"}}))
    costs = []
    for k, args in enumerate((["check-params", "--params", "params.yaml"],
                              ["check-params", "--params", "timm.yaml"],
                              ["data", "--params", "params.yaml", "--out", "d.safetensors"],
                              ["train", "--params", "params.yaml", "--role", "base", "--data", "d.safetensors",
                               "--out", "m.safetensors"])):
        proc = measured(args, tmp, tmp / f"cost{k}.json")
        assert proc.returncode == 0, proc.stderr
        costs.append(json.loads((tmp / f"cost{k}.json").read_text()))
    return {"maxrss_kb": max(c["maxrss_kb"] for c in costs), "costs": costs}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_is_refused_clearly_and_writes_nothing(case, tmp_path, good_cost):
    work = tmp_path / "project"
    shutil.copytree(CORPUS, work, ignore=shutil.ignore_patterns("cases.yaml", "make_files.py", "__pycache__"))
    for f in ("params.yaml", "params-gan.yaml"):
        shutil.copy(ROOT / f, work / f)
    before = snapshot(work)
    proc = measured(case["args"], work, tmp_path / "cost.json")
    # within 4 GB (the limit it ran under), 10 s of CPU, and no more memory than good commands
    cost = json.loads((tmp_path / "cost.json").read_text())
    assert cost["cpu_s"] < 10, cost
    assert cost["maxrss_kb"] <= 1.2 * good_cost["maxrss_kb"], (cost, good_cost)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}:\n{said}"
    assert "Traceback" not in said and 'File "' not in said, said
    assert proc.stderr.startswith("doracle: error: "), proc.stderr
    # nothing taken from the input drives the terminal: control characters arrive escaped
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", said), ascii(said)
    for fragment in case["expect"]:
        assert fragment in proc.stderr, f"{fragment!r} not in:\n{proc.stderr}"
    assert str(case.get("names", case["file"])) in proc.stderr, proc.stderr
    for fragment in case.get("once", []):
        assert proc.stderr.count(fragment) == 1, f"{fragment!r} not exactly once in:\n{proc.stderr}"
    for out in case.get("out", []):
        assert not (work / out).exists(), out
    assert snapshot(work) == before, "the command wrote or changed files"
