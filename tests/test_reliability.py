"""Reliability guarantees that need no pipeline run (docs/reliability.md): the timing block, sealed
JSON artifacts, another experiment's files refused, writes that a crash, a full disk or a read-only
folder cannot half-do, no pickle in the package, deterministic settings. The pipeline-level ones
(SIGKILL and resume, byte-identical reruns, code changes rerunning jobs, damaged checkpoints) are
in tests/test_pipeline_e2e.py."""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import in_ci
from doracle import artifacts, jobtable, provenance
from doracle.errors import ArtifactError

ROOT = Path(__file__).resolve().parents[1]


def test_timing_keys_go_to_one_block_written_last(tmp_path):
    doc = {"kind": "x", "training": {"train_seconds": 1.5, "loss": [0.5]}, "created_unix": 12.0,
           "candidates": [{"arch": "a", "train_seconds": 2.0}, {"arch": "b"}]}
    p = tmp_path / "a.json"
    artifacts.write_json(p, doc)
    back = artifacts.read_json(p)
    assert back["training"] == {"loss": [0.5]} and "created_unix" not in back
    assert back["candidates"] == [{"arch": "a"}, {"arch": "b"}]
    assert artifacts.timing_of(back, "training", "train_seconds") == 1.5
    seconds = back["timing"].pop("process_seconds")  # the writer's age: a job's wall seconds (compute.py)
    assert 0 < seconds <= artifacts.process_seconds()
    assert back["timing"] == {"training": {"train_seconds": 1.5}, "created_unix": 12.0,
                              "candidates": [{"train_seconds": 2.0}, {}]}
    assert list(back)[-1] == "timing"
    # the same content written with other durations: the same bytes up to the timing block, the
    # same content hash, so a consumer records the same input digest
    q = tmp_path / "b.json"
    artifacts.write_json(q, {**doc, "created_unix": 99.0, "training": {"train_seconds": 7.0, "loss": [0.5]}})
    cut = [f.read_bytes().split(b'\n "timing": ')[0] for f in (p, q)]
    assert cut[0] == cut[1] and p.read_bytes() != q.read_bytes()
    assert artifacts.input_digest(p) == artifacts.input_digest(q) != artifacts.sha256_file(p)


def test_every_json_artifact_records_the_code_that_wrote_it(tmp_path):
    p = tmp_path / "a.json"
    artifacts.write_json(p, {"kind": "x"})
    rec = artifacts.read_json(p)["provenance"]
    assert rec == {"version": provenance.version(), "source_sha256": provenance.source_sha256()}
    assert len(rec["source_sha256"]) == 64 and rec["version"] != "unknown"


def test_source_hash_and_rule_digests_follow_the_code(tmp_path, monkeypatch):
    """A copy of the package: editing the report's code changes the source hash and the report
    rule's code digest, not the solve rule's."""
    pkg = tmp_path / "doracle"
    import shutil

    shutil.copytree(provenance.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE", pkg)

    def digests():
        provenance._digest.cache_clear()
        return provenance.source_sha256(), jobtable.code_digest("report"), jobtable.code_digest("solve")

    before = digests()
    (pkg / "report" / "do.py").write_text((pkg / "report" / "do.py").read_text() + "\n# edit\n")
    after = digests()
    provenance._digest.cache_clear()
    assert after[0] != before[0] and after[1] != before[1] and after[2] == before[2]


def test_a_hand_edited_json_artifact_is_refused_naming_file_and_rerun(tmp_path):
    p = tmp_path / "payoff.json"
    artifacts.write_json(p, {"kind": "payoff", "payoff": [[0.5]]})
    p.write_text(p.read_text().replace("0.5", "0.9"))
    with pytest.raises(ArtifactError) as e:
        artifacts.read_json(p)
    assert str(p) in str(e.value) and "edited by hand" in str(e.value) and f"--forcerun {p}" in str(e.value)
    p.write_text(p.read_text()[:20])  # truncated
    with pytest.raises(ArtifactError, match="not valid JSON.*truncated"):
        artifacts.read_json(p)


def test_a_removed_seal_is_refused_and_inputs_are_checked_before_recording(tmp_path):
    import json

    p = tmp_path / "meta.json"
    artifacts.write_json(p, {"kind": "meta", "value": 0.5})
    doc = json.loads(p.read_text())
    doc["value"] = 0.9
    del doc[artifacts.SEAL]
    p.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="has lost its content_sha256"):
        artifacts.read_json(p)
    with pytest.raises(ArtifactError, match="has lost its content_sha256"):
        artifacts.input_digest(p)  # a consumer never records a damaged input as good
    flat = tmp_path / "headline.json"  # a file for other tools: no seal, no provenance, read as it is
    artifacts.write_json(flat, {"accuracy": 0.5}, sealed=False)
    assert artifacts.read_json(flat) == {"accuracy": 0.5}


def test_artifacts_of_another_experiment_are_refused_in_a_job(tmp_path):
    p = tmp_path / "population.json"
    artifacts.write_json(p, {"kind": "population", "experiment": "other"})
    assert artifacts.read_json(p)["experiment"] == "other"  # no job: no expectation
    artifacts.expect_experiment("mine")
    try:
        with pytest.raises(ArtifactError, match=r"written by experiment 'other', not 'mine'"):
            artifacts.read_json(p)
    finally:
        artifacts.expect_experiment(None)


WRITER = """
import os, sys, time
from doracle import artifacts
path = sys.argv[1]
artifacts.atomic_write_bytes(path, b"old")
def stall(src, dst):
    print("writing", flush=True)
    time.sleep(600)
os.replace = stall
artifacts.atomic_write_bytes(path, b"new" * 1000)
"""


def test_a_writer_killed_mid_write_leaves_the_old_file(tmp_path):
    """SIGKILL between writing the temp file and renaming it: the old bytes stay; the next write to
    the path removes the temp file the killed writer left."""
    path = tmp_path / "x.safetensors"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert path.read_bytes() == b"old"
    assert len(list(tmp_path.glob(".x.safetensors.*.tmp"))) == 1
    artifacts.atomic_write_bytes(path, b"again")
    assert path.read_bytes() == b"again" and sorted(p.name for p in tmp_path.iterdir()) == ["x.safetensors"]


def test_a_killed_writer_not_yet_reaped_counts_as_dead(tmp_path):
    """A zombie (dead, its parent not waiting for it: a job killed with its Snakemake, in a
    container whose first process reaps nobody) still answers ``kill(pid, 0)``; its temp file is
    removed all the same, as are its sweep trial's and its Snakemake run's claims (one check)."""
    proc = subprocess.Popen(["true"])
    deadline = time.time() + 30
    while Path(f"/proc/{proc.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z":
        assert time.time() < deadline, "the child did not end"
        time.sleep(0.01)
    try:
        os.kill(proc.pid, 0)  # no error: the zombie is still there
        assert not artifacts.pid_alive(proc.pid) and artifacts.pid_alive(os.getpid())
        assert artifacts.pid_alive(1)  # another user's process is alive (or ours, as root)
        assert not any(artifacts.pid_alive(p) for p in (0, -1, 10**30))  # a group, or a crafted claim
        path = tmp_path / "x.json"
        stale = tmp_path / f".x.json.{artifacts._HOST}.{proc.pid}.abc.tmp"
        stale.write_text("half")
        artifacts.atomic_write_bytes(path, b"{}")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]
    finally:
        proc.wait()
    assert not artifacts.pid_alive(proc.pid)


def test_a_live_writers_temp_file_is_left_alone_and_files_get_the_usual_mode(tmp_path):
    """Two writers of one path (sweep workers): the second never removes the first's temp file
    (only a dead writer's of this host); the file is readable by others (0666 less the umask)."""
    path = tmp_path / "best.json"
    live = tmp_path / f".best.json.{artifacts._HOST}.{os.getppid()}.abcd1234.tmp"  # our parent: alive
    dead = tmp_path / f".best.json.{artifacts._HOST}.999999999.abcd1234.tmp"  # no such pid
    other_host = tmp_path / ".best.json.elsewhere.999999999.abcd1234.tmp"
    other_name = tmp_path / f".best.json.x.{artifacts._HOST}.999999999.abcd1234.tmp"  # best.json.x's
    for f in (live, dead, other_host, other_name):
        f.write_bytes(b"partial")
    old = os.umask(0o022)
    try:
        artifacts.atomic_write_bytes(path, b"{}")
    finally:
        os.umask(old)
    assert live.exists() and not dead.exists() and other_host.exists() and other_name.exists()
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.fixture
def mount(tmp_path):
    """A real small tmpfs (full disk) or a read-only one: needs root and mount(2)."""
    mounted = []

    def make(options: str) -> Path:
        d = tmp_path / f"m{len(mounted)}"
        d.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(d)], capture_output=True, text=True)
        if proc.returncode != 0:
            if in_ci():
                pytest.fail(f"mount -t tmpfs failed: {proc.stderr}")
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(d)
        return d

    yield make
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _prepare(out: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "doracle", "data", "--params", str(ROOT / "params.yaml"),
                           "--out", str(out)], cwd=cwd, capture_output=True, text=True)


def test_a_full_disk_is_a_clear_error_and_corrupts_nothing(mount, tmp_path):
    disk = mount("size=64k")
    keep = disk / "data" / "dataset.json"
    keep.parent.mkdir()
    keep.write_text('{"kept": true}')
    out = disk / "data" / "dataset.safetensors"  # the digits splits: ~460 kB, more than the disk
    proc = _prepare(out, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"cannot write {out}: No space left on device" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and keep.read_text() == '{"kept": true}'
    assert sorted(p.name for p in keep.parent.iterdir()) == ["dataset.json"]  # no temp file left


def test_a_read_only_results_folder_is_a_clear_error(mount, tmp_path):
    ro = mount("ro,size=64k")
    proc = _prepare(ro / "data" / "dataset.safetensors", tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Read-only file system" in proc.stderr and str(ro / "data") in proc.stderr
    assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- no pickle


def pickle_uses(source: str) -> list[str]:
    """Every way to unpickle in ``source``: pickle-family imports, ``torch.load`` without
    ``weights_only=True``, ``np.load`` / ``numpy.load`` with ``allow_pickle=True``."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            bad += [f"line {node.lineno}: import {n}" for n in names
                    if n.split(".")[0] in ("pickle", "cPickle", "_pickle", "joblib", "cloudpickle", "dill", "shelve")]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
            owner = ast.unparse(node.func.value)
            kw = {k.arg: k.value for k in node.keywords}
            if owner == "torch" and not (isinstance(kw.get("weights_only"), ast.Constant)
                                         and kw["weights_only"].value is True):
                bad.append(f"line {node.lineno}: torch.load without weights_only=True")
            if owner in ("np", "numpy") and isinstance(kw.get("allow_pickle"), ast.Constant) \
                    and kw["allow_pickle"].value is True:
                bad.append(f"line {node.lineno}: {owner}.load(allow_pickle=True)")
    return bad


def test_the_pickle_scanner_finds_each_kind():
    src = ("import pickle\nfrom joblib import dump\nimport torch, numpy as np\n"
           "torch.load('x')\ntorch.load('x', weights_only=False)\ntorch.load('x', weights_only=True)\n"
           "np.load('x', allow_pickle=True)\nnp.load('x')\n")
    assert pickle_uses(src) == ["line 1: import pickle", "line 2: import joblib",
                                "line 4: torch.load without weights_only=True",
                                "line 5: torch.load without weights_only=True",
                                "line 7: np.load(allow_pickle=True)"]


def test_no_pickle_in_the_package_benchmarks_or_workflow():
    files = [*(ROOT / "src").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]
    found = {str(f.relative_to(ROOT)): pickle_uses(f.read_text()) for f in files}
    assert len(files) > 50
    assert {f: b for f, b in found.items() if b} == {}
    # the workflow (Snakemake's own syntax, not Python an AST reads): no pickle-family names at all
    rules = [ROOT / "Snakefile", *(ROOT / "workflow").rglob("*.smk")]
    assert {f.name for f in rules} >= {"Snakefile", "jobs.smk", "sweep.smk"}
    word = re.compile(r"\b(c?pickle|joblib|dill|shelve|allow_pickle|torch\.load)\b")
    assert [f.name for f in rules if word.search(f.read_text())] == []


# ----------------------------------------------------------------------------- determinism settings


def test_setup_asks_for_deterministic_kernels(monkeypatch):
    import torch

    from doracle import runtime

    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "x")  # recorded, so restored (or removed) afterwards
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    try:
        runtime.setup(0, "cpu", 1)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == runtime.CUBLAS_WORKSPACE
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's choice is kept
        runtime.setup(0, "cpu", 1)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2:]


def test_deterministic_mode_is_set_without_importing_dynamo_and_compile_sets_inductors_half():
    """runtime.setup's deterministic mode is the public call's (warn only) for eager code, without
    its import of torch._inductor / torch._dynamo (start-up); a compiled model sets inductor's flag."""
    code = ("import sys, torch\nfrom doracle import runtime\nruntime.setup(0, 'cpu', 1)\n"
            "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),"
            " 'torch._dynamo' in sys.modules, 'torch._inductor' in sys.modules)\n"
            "from doracle.defenses.training import Compiled\nimport torch._inductor.config as c\n"
            "c.deterministic = False\nCompiled(torch.nn.Linear(2, 2))\nprint(c.deterministic)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "False", "False", "True"]


# ----------------------------------------------------------------------------- complete params files


def test_complete_keys_are_the_default_files_keys():
    import yaml

    from doracle import config

    assert set(config.complete_keys("at")) == set(yaml.safe_load((ROOT / "params.yaml").read_text()))
    assert set(config.complete_keys("gan")) == set(yaml.safe_load((ROOT / "params-gan.yaml").read_text()))


def test_a_job_refuses_a_partial_params_file_even_without_the_default_files(tmp_path):
    """Called by hand from a folder with no params.yaml: the job still refuses a partial file
    instead of filling the gaps with the schema's defaults."""
    (tmp_path / "partial.yaml").write_text("seed: 3\ntraining: {epochs: 1}\n")
    proc = subprocess.run([sys.executable, "-m", "doracle", "data", "--params", "partial.yaml", "--out", "d.safetensors"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and "partial.yaml is a partial params file" in proc.stderr, proc.stderr
    assert "experiment" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["partial.yaml"]


@pytest.mark.gpu
def test_cuda_training_is_repeatable_bit_for_bit():
    """Two trainings with the same seed on CUDA give the same weights (deterministic kernels)."""
    import torch

    from doracle import runtime
    from doracle.games.classifiers import build

    def train():
        runtime.setup(3, "cuda", 1)
        model = build("doracle_cnn_small", {"shape": [1, 8, 8], "num_classes": 10,
                                            "mean": [0.3], "std": [0.3]}).to("cuda")
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        g = torch.Generator(device="cuda").manual_seed(0)
        for _ in range(20):
            x = torch.rand(64, 1, 8, 8, device="cuda", generator=g)
            y = torch.randint(0, 10, (64,), device="cuda", generator=g)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}

    t0 = time.perf_counter()
    a, b = train(), train()
    assert all(torch.equal(a[k], b[k]) for k in a), f"differs after {time.perf_counter() - t0:.1f} s"


# ---------------------------------------------------------------- folders written whole (reports)


def test_a_folder_is_replaced_only_when_doracle_wrote_it_and_never_over_its_inputs(tmp_path):
    """atomic_dir (every report) replaces a folder only when it holds doracle's marker of the same
    kind; a hand-made folder, a file, a symlink, another kind's folder, or a folder holding one of
    the inputs is refused and left byte for byte as it was."""
    exp = tmp_path / "results" / "exp"
    (exp / "do").mkdir(parents=True)
    (exp / "do" / "population.json").write_text("{}")
    with pytest.raises(ArtifactError, match="not a report folder doracle wrote"):
        with artifacts.atomic_dir(exp):
            pass
    with pytest.raises(ArtifactError, match="holds the input"):
        with artifacts.atomic_dir(tmp_path / "results", "report", [exp / "do" / "population.json"]):
            pass
    assert (exp / "do" / "population.json").read_text() == "{}"
    report = exp / "report"
    for _ in range(2):  # new, then replacing its own
        with artifacts.atomic_dir(report, "report", [exp / "do" / "population.json"]) as d:
            (d / "summary.md").write_text("x")
    assert sorted(p.name for p in report.iterdir()) == [artifacts.FOLDER_MARKER, "summary.md"]
    with pytest.raises(ArtifactError, match="not a sweep report folder"):
        with artifacts.atomic_dir(report, "sweep report"):
            pass
    (tmp_path / "file").write_text("keep")
    (tmp_path / "link").symlink_to(report, target_is_directory=True)
    for path in (tmp_path / "file", tmp_path / "link"):
        with pytest.raises(ArtifactError, match="refusing to replace it"):
            with artifacts.atomic_dir(path):
                pass
    assert (tmp_path / "file").read_text() == "keep" and (report / "summary.md").read_text() == "x"
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_killed_reports_temp_folder_is_removed_by_the_next_report_but_a_live_ones_is_kept(tmp_path):
    """Temp folders carry host and pid like temp files: the next write of the folder removes a dead
    writer's (a report killed before its rename), never a live writer's or another host's."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    host = artifacts._HOST
    stale = tmp_path / f".report.{host}.{dead}.abc.tmp"
    live = tmp_path / f".report.{host}.{os.getppid()}.def.tmp"
    other = tmp_path / f".report.otherhost.{dead}.ghi.tmp"
    for d in (stale, live, other):
        (d / "plots").mkdir(parents=True)
    with artifacts.atomic_dir(tmp_path / "report") as d:
        assert d.name.startswith(f".report.{host}.{os.getpid()}.")
    assert not stale.exists() and live.is_dir() and other.is_dir()


# ---------------------------------------------------------------- pairs, outputs that would overwrite, links


def _doracle(*args, cwd):
    return subprocess.run([sys.executable, "-m", "doracle", *map(str, args)], cwd=cwd, capture_output=True, text=True)


@pytest.fixture
def data_project(tmp_path, root):
    """A folder with the default params and a good data set (results/d.safetensors + its sidecar)."""
    import yaml

    (tmp_path / "params.yaml").write_text((root / "params.yaml").read_text())
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["data"]["splits"] = {"train": 0.999, "payoff": 0.0005, "test": 0.0005}  # payoff and test round to 0
    (tmp_path / "empty_splits.yaml").write_text(yaml.safe_dump(raw))
    assert _doracle("data", "--params", "params.yaml", "--out", "results/d.safetensors", cwd=tmp_path).returncode == 0
    return tmp_path


def _snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_data_job_that_fails_leaves_the_old_data_set_whole(data_project):
    """Splits that round to no example: exit 2 naming data.splits, before anything is replaced (the
    tensors and their sidecar were written one after the other, so a failure in between left new
    tensors beside the old sidecar: a good data set lost, then read as corrupted)."""
    before = _snapshot(data_project / "results")
    proc = _doracle("data", "--params", "empty_splits.yaml", "--out", "results/d.safetensors", cwd=data_project)
    assert proc.returncode == 2 and "data.splits: the payoff, test split(s)" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and _snapshot(data_project / "results") == before
    from doracle.data import load

    assert len(load(data_project / "results/d.safetensors").y["train"]) == 1078


def test_a_data_out_ending_in_json_is_refused_before_its_sidecar_overwrites_it(data_project):
    proc = _doracle("data", "--params", "params.yaml", "--out", "out/d.json", cwd=data_project)
    assert proc.returncode == 2 and "--out out/d.json: a data set must not end in .json" in proc.stderr
    assert not (data_project / "out").exists()


def test_a_tensor_pair_is_committed_together(tmp_path, monkeypatch):
    """save_tensors writes both temp files before the first rename: a failure while writing the
    sidecar leaves the old tensors and sidecar as they were, and no temp file."""
    import torch

    path = tmp_path / "m.safetensors"
    artifacts.save_tensors(path, {"w": torch.zeros(3)}, {"kind": "test"})
    before = _snapshot(tmp_path)
    real_stage, calls = artifacts._stage, []

    def stage(p, data):
        calls.append(p)
        if p.suffix == ".json":
            raise OSError(28, "No space left on device", str(p))
        return real_stage(p, data)

    monkeypatch.setattr(artifacts, "_stage", stage)
    with pytest.raises(OSError, match="No space left"):
        artifacts.save_tensors(path, {"w": torch.ones(3)}, {"kind": "test"})
    assert [c.suffix for c in calls] == [".safetensors", ".json"]
    assert _snapshot(tmp_path) == before
    with pytest.raises(ArtifactError, match="must not end in .json"):
        artifacts.save_tensors(tmp_path / "m.json", {"w": torch.ones(3)}, {"kind": "test"})


PAIR_WRITER = """
import os, signal, sys, torch
from doracle import artifacts
path = sys.argv[1]
if sys.argv[2] == "second":
    artifacts.save_tensors(path, {"w": torch.zeros(3)}, {"kind": "test", "n": 1})
real = os.replace
def replace_then_die(src, dst):
    real(src, dst)
    os.kill(os.getpid(), signal.SIGKILL)  # killed between the tensor file's rename and the sidecar's
os.replace = replace_then_die
artifacts.save_tensors(path, {"w": torch.ones(3)}, {"kind": "test", "n": 2})
"""


def test_a_writer_killed_between_a_pairs_renames_loses_nothing(tmp_path):
    """SIGKILL after the new tensor file is renamed into place but before its sidecar: the next
    load finds the new sidecar the killed writer staged (it vouches for the tensors on disk by
    their sha256), returns the new pair and finishes the commit. A training state saved at that
    moment is therefore resumed, not thrown away (tests/test_resume.py's SIGKILL case hit it)."""
    import torch

    first = tmp_path / "first" / "m.safetensors"  # the first pair: no sidecar at all yet
    first.parent.mkdir()
    proc = subprocess.run([sys.executable, "-c", PAIR_WRITER, str(first), "first"], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not first.with_suffix(".json").exists()
    assert artifacts.load_tensors(first)[1]["n"] == 2 and artifacts.read_json(first.with_suffix(".json"))["n"] == 2

    path = tmp_path / "m.safetensors"
    proc = subprocess.run([sys.executable, "-c", PAIR_WRITER, str(path), "second"], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert artifacts.read_json(path.with_suffix(".json"))["n"] == 1  # the old sidecar, the new tensors
    assert len(list(tmp_path.glob(".m.json.*.tmp"))) == 1
    tensors, meta = artifacts.load_tensors(path)
    assert torch.equal(tensors["w"], torch.ones(3)) and meta["n"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "m.json", "m.safetensors"]  # the commit finished
    assert artifacts.read_json(path.with_suffix(".json"))["n"] == 2
    # a staged sidecar that does not vouch for the tensors on disk is no excuse: still refused
    path.write_bytes(path.read_bytes()[:-1] + b"x")
    stray = tmp_path / f".m.json.{artifacts._HOST}.1.abc.tmp"
    stray.write_bytes(artifacts.json_bytes({"kind": "test", "sha256": "0" * 64}))
    with pytest.raises(ArtifactError, match="does not match"):
        artifacts.load_tensors(path)


def test_a_log_path_that_is_a_symlink_is_refused_and_its_target_untouched(data_project, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "precious.txt"
    outside.write_text("precious")
    (data_project / "logs").mkdir()
    (data_project / "logs" / "data.log").symlink_to(outside)
    before = _snapshot(data_project / "results")
    proc = _doracle("data", "--params", "params.yaml", "--out", "results/d.safetensors", "--log", "logs/data.log",
                    cwd=data_project)
    assert proc.returncode == 2 and "--log logs/data.log: is a symbolic link" in proc.stderr, proc.stderr
    assert outside.read_text() == "precious" and _snapshot(data_project / "results") == before
    # an ordinary log path is written and readable while the job runs (a plain file, 0666 less umask)
    ok = _doracle("data", "--params", "params.yaml", "--out", "results/d.safetensors", "--log", "logs/ok.log",
                  cwd=data_project)
    assert ok.returncode == 0 and "prepared digits" in (data_project / "logs" / "ok.log").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("route", ["dotdot", "symlink"])
def test_jobs_write_only_their_declared_outputs_through_dotdot_and_symlinked_paths(shared_copy, route):
    """Jobs of every kind, rerun by hand with each path argument routed through `..` or through a
    symbolic link to the experiment's folder: each writes exactly its declared outputs and its log
    (at the paths they resolve to) and nothing else, inside the project or beside it."""
    from doracle import config, pipeline

    proj = shared_copy
    params = config.load(proj / "results/tiny/params.yaml")
    kinds = ("prepare_data", "train_baseline", "best_response", "payoff", "solve", "prune", "close", "metrics",
             "report")
    picked = {}
    for job in pipeline.jobs(params, "results/tiny/params.yaml"):
        if job["rule"] in kinds and job["rule"] not in picked and "pgd_at_" not in job["name"]:
            picked[job["rule"]] = job
    assert set(picked) == set(kinds)
    if route == "symlink":
        (proj / "lnk").symlink_to(proj / "results/tiny", target_is_directory=True)
        (proj / "lnklogs").symlink_to(proj / "logs/tiny", target_is_directory=True)

    def routed(cmd: str) -> str:
        if route == "dotdot":
            return cmd.replace("results/tiny/", "results/tiny/do/../").replace("logs/tiny/", "logs/tiny/../tiny/")
        return cmd.replace("results/tiny/", "lnk/").replace("logs/tiny/", "lnklogs/")

    def tree() -> dict:
        return {str(p.relative_to(proj.parent)): (p.stat().st_mtime_ns, p.stat().st_size)
                for p in proj.parent.rglob("*") if p.is_file() and not p.is_symlink() and ".snakemake" not in p.parts}

    for rule, job in picked.items():
        declared = {str((proj / o).resolve().relative_to(proj.parent)) for o in job["outputs"].values()}
        declared.add(str((proj / job["log"]).resolve().relative_to(proj.parent)))
        before = tree()
        cmd = routed(job["cmd"]).replace("doracle ", f"{sys.executable} -m doracle ", 1)
        proc = subprocess.run(cmd, shell=True, cwd=proj, capture_output=True, text=True)
        assert proc.returncode == 0, f"{rule}: {cmd}\n{proc.stderr[-3000:]}"
        after = tree()
        changed = {f for f in after if before.get(f) != after[f]} | (set(before) - set(after))
        # a folder output (the report) counts with everything under it
        stray = {f for f in changed if f not in declared and not any(f.startswith(d + "/") for d in declared)}
        assert not stray, f"{rule} wrote outside its declared outputs: {sorted(stray)}"
        assert changed, f"{rule} wrote nothing"
