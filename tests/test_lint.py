import shutil
import subprocess

import pytest

from project import ROOT


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed (pip install -e '.[test]')")
def test_ruff_is_clean():
    proc = subprocess.run(["ruff", "check", "src", "tests", "bench"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_pickle_or_hard_coded_cuda_in_the_package():
    for f in (ROOT / "src").rglob("*.py"):
        text = f.read_text()
        for bad in ("import pickle", "torch.load(", ".cuda()", "allow_pickle=True"):
            assert bad not in text, f"{f}: {bad}"
