"""The bad-input corpus (tests/bad_inputs/cases.yaml, issue 14): every bad file a new user might
hand doracle, run through the real command line. Each case must exit 2 with a message naming the
file or key (and the fragments the manifest gives), print no traceback and write nothing."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_cli

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
}


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` (directories too) with the sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def test_the_manifest_covers_every_category():
    assert len(CASES) >= 30
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


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_is_refused_clearly_and_writes_nothing(case, tmp_path):
    work = tmp_path / "project"
    shutil.copytree(CORPUS, work, ignore=shutil.ignore_patterns("cases.yaml", "make_files.py", "__pycache__"))
    for f in ("params.yaml", "params-gan.yaml"):
        shutil.copy(ROOT / f, work / f)
    before = snapshot(work)
    proc = run_cli(*case["args"], cwd=work)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}:\n{said}"
    assert "Traceback" not in said and 'File "' not in said, said
    assert proc.stderr.startswith("doracle: error: "), proc.stderr
    for fragment in case["expect"]:
        assert fragment in proc.stderr, f"{fragment!r} not in:\n{proc.stderr}"
    assert str(case.get("names", case["file"])) in proc.stderr, proc.stderr
    for fragment in case.get("once", []):
        assert proc.stderr.count(fragment) == 1, f"{fragment!r} not exactly once in:\n{proc.stderr}"
    for out in case.get("out", []):
        assert not (work / out).exists(), out
    assert snapshot(work) == before, "the command wrote or changed files"
