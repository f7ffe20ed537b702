"""Start-up of a doracle job of each rule, next to ``python -c "import torch"``.

A no-op job of a rule is its real job's code loaded, without the work: the ``doracle`` command line
and every doracle module the rule's job had loaded when it finished (DORACLE_MODULES_LOG),
imported in a fresh interpreter that then exits. What those modules import at their top (torch,
numpy, ...) comes with them; what the work imports lazily does not (matplotlib inside the report's
plotting, torch._dynamo on a training job's first optimizer step: work, not start-up). The modules come from a real run of the tiny AT and GAN pipelines (made here in a
temporary project, about 2-3 minutes on 2 cores; or ``--modules FILE`` of an earlier run, such as
the test suite's shared run). Each measurement is the best of ``--repeats`` wall times, with the
number of modules loaded (``len(sys.modules)``).

Goal (issue 22): jobs that need torch at most 1.3x bare ``import torch``; the others under 0.5 s.

Then, for each command whose jobs need torch (doracle.forkserver.ROUTED), the first such job of the
tiny run (or of ``--project``) rerun whole, its outputs redirected: in a fresh interpreter
(DORACLE_FORKSERVER=0), then forked by a warm fork server of its own (a private XDG_RUNTIME_DIR),
and the ratio of the two.

    python bench/bench_startup.py                  # runs the tiny pipelines for the module lists
    python bench/bench_startup.py --modules FILE   # reuses a DORACLE_MODULES_LOG file
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

#: the command (its first words) of each rule's job
RULE_OF = {("data",): "prepare_data", ("train",): "train", ("do", "init"): "do_init",
           ("do", "best-response"): "best_response", ("do", "payoff"): "payoff", ("do", "solve"): "solve",
           ("do", "prune"): "prune", ("evaluate",): "evaluate", ("metrics",): "metrics", ("report",): "report"}
LIGHT = ("solve", "prune", "metrics", "report")

PROBE = """
import importlib, sys, time
t0 = time.perf_counter()
from doracle.cli import build_parser
build_parser()
for name in {names!r}:
    try:
        importlib.import_module(name)
    except Exception:
        pass
print(len(sys.modules), round(time.perf_counter() - t0, 4))
"""


def game_of(argv: list[str]) -> str:
    params = argv[argv.index("--params") + 1] if "--params" in argv else ""
    return "gan" if "gan" in params else "at"


def module_lists(log: Path) -> dict[str, tuple[list[str], list[str]]]:
    """(rule, game) -> (the doracle modules, the top-level packages) its first logged job had loaded."""
    out = {}
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        argv = rec["argv"]
        rule = RULE_OF.get(tuple(argv[:2])) or RULE_OF.get(tuple(argv[:1]))
        if rule is None:
            continue
        key = f"{rule} ({game_of(argv)})"
        if key not in out:
            mods = ["doracle." + m.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
                    for m in rec["modules"] if m.endswith(".py") and m not in ("__main__.py",)]
            pkgs = [p for p in rec.get("packages", []) if not p.startswith("_") and p != "__main__"]
            out[key] = (mods, pkgs)
    return out


def wall(code: str, repeats: int) -> tuple[float, int]:
    """Best wall time of ``python -c code`` and the module count it prints (or len(sys.modules))."""
    best, n = float("inf"), 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        best = min(best, time.perf_counter() - t0)
        n = int(out.split()[0]) if out.strip() else 0
    return best, n


def tiny_run(dest: Path) -> Path:
    from project import gan_params, make_project, params_with

    proj = make_project(dest, params_with(), dvc=False, extra={"params-gan.yaml": gan_params()})
    log = dest / "modules.jsonl"
    env = {"DORACLE_MODULES_LOG": str(log), "DORACLE_FORKSERVER": "0"}  # each job's own module list
    import os

    subprocess.run(["snakemake", "-c2"], cwd=proj, env={**os.environ, **env}, check=True, capture_output=True)
    return log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modules", type=Path, help="a DORACLE_MODULES_LOG file (default: run the tiny pipelines)")
    ap.add_argument("--project", type=Path, help="the project the --modules file's jobs ran in (for the fork "
                    "server's rows; without it, and with --modules, they are left out)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rules", help="comma-separated rules to measure (default: all)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = args.project or (None if args.modules else Path(tmp) / "proj")
        log = args.modules or tiny_run(project)
        lists = module_lists(log)
        _measure(args, lists, project, log)


def _measure(args, lists, project, log) -> None:
    if args.rules:
        keep = set(args.rules.split(","))
        lists = {k: v for k, v in lists.items() if k.split()[0] in keep}
    torch_s, torch_n = wall("import sys, torch; print(len(sys.modules))", args.repeats)
    print(f"python -c 'import torch': {torch_s:.2f} s, {torch_n} modules (the reference)")
    print(f"{'rule (game)':<24} {'wall s':>7} {'x torch':>8} {'modules':>8}  torch  goal")
    results = {}
    for key, (names, packages) in sorted(lists.items()):
        s, n = wall(PROBE.format(names=names), args.repeats)
        needs_torch = "torch" in packages
        goal = s <= 1.3 * torch_s if needs_torch else s < 0.5
        results[key] = {"seconds": round(s, 3), "ratio_to_torch": round(s / torch_s, 3), "modules": n,
                        "torch": needs_torch, "timm": "timm" in packages, "meets_goal": goal}
        print(f"{key:<24} {s:>7.2f} {s / torch_s:>8.2f} {n:>8}  {'yes' if needs_torch else 'no':<5}  "
              f"{'met' if goal else 'MISSED'} ({'<= 1.3x torch' if needs_torch else '< 0.5 s'})")
    forked = fork_server_rows(project, log, args.repeats) if project else {}
    if args.json:
        args.json.write_text(json.dumps({"torch": {"seconds": round(torch_s, 3), "modules": torch_n},
                                         "rules": results, "fork_server": forked}, indent=1))


def job_wall(argv: list[str], cwd: Path, env: dict, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "doracle", *argv], cwd=cwd, env=env, capture_output=True, check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def fork_server_rows(project: Path, log: Path, repeats: int) -> dict:
    """The first job of each routed command in ``project``'s modules log, its outputs redirected to a
    scratch folder: in its own interpreter, then forked by a warm server of its own."""
    import os
    import signal

    from doracle import forkserver

    firsts = {}
    for line in log.read_text().splitlines():
        argv = json.loads(line)["argv"]
        cmd = tuple(argv[:2]) if argv[0] == "do" else tuple(argv[:1])
        if cmd in forkserver.ROUTED and cmd not in firsts:
            firsts[cmd] = argv
    with tempfile.TemporaryDirectory(prefix="fs-", dir="/tmp") as run:
        env = {k: v for k, v in os.environ.items() if k != "DORACLE_MODULES_LOG"}
        env.update({"XDG_RUNTIME_DIR": run, forkserver.ENV: "1", forkserver.IDLE_ENV: "120"})
        sock = subprocess.run([sys.executable, "-c", "import os; from doracle import forkserver; "
                               "print(forkserver.socket_path(os.environ))"], env=env, capture_output=True,
                              text=True, check=True).stdout.strip()
        server = subprocess.Popen([sys.executable, "-m", "doracle.forkserver", sock], env=env,
                                  start_new_session=True)
        deadline = time.time() + 120
        while not Path(sock).exists():
            if server.poll() is not None or time.time() > deadline:
                raise SystemExit("the fork server did not start")
            time.sleep(0.05)
        print(f"\n{'the same job':<24} {'own s':>7} {'forked s':>9} {'ratio':>7}   (best of {repeats})")
        rows = {}
        for cmd, argv in sorted(firsts.items()):
            argv = list(argv)
            for flag in ("--out", "--log"):
                if flag in argv:
                    i = argv.index(flag) + 1
                    argv[i] = str(Path(run) / "out" / " ".join(cmd).replace(" ", "_") / Path(argv[i]).name)
            own = job_wall(argv, project, {**env, forkserver.ENV: "0"}, repeats)
            forked = job_wall(argv, project, env, repeats)
            rows[" ".join(cmd)] = {"own_seconds": round(own, 3), "forked_seconds": round(forked, 3),
                                   "ratio": round(forked / own, 3)}
            print(f"{' '.join(cmd):<24} {own:>7.2f} {forked:>9.2f} {forked / own:>7.2f}")
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    return rows


if __name__ == "__main__":
    main()
