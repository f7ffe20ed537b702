import json

import pytest


def write(tmp_path, text, name="g.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_solve_game_prints_one_json_object(cli, tmp_path):
    f = write(tmp_path, "0,-0.25,0.5\n0.25,0,-0.05\n-0.5,0.05,0\n")
    proc = cli("solve-game", f, check=True)
    out = json.loads(proc.stdout)
    assert set(out) >= {"row", "col", "value", "solver"}
    assert out["solver"] == "lp"
    assert out["row"] == pytest.approx([1 / 16, 10 / 16, 5 / 16], abs=1e-9)
    assert out["value"] == pytest.approx(0.0, abs=1e-9)


def test_solve_game_other_solver(cli, tmp_path):
    f = write(tmp_path, "1,-1\n-1,1\n")
    out = json.loads(cli("solve-game", f, "--solver", "fictitious_play", check=True).stdout)
    assert out["solver"] == "fictitious_play" and out["row"] == pytest.approx([0.5, 0.5], abs=0.01)


@pytest.mark.parametrize("text,msg", [
    ("", "empty payoff matrix"),
    ("\n\n", "empty payoff matrix"),
    ("1,2\n3\n", "ragged CSV: line 2 has 1 cells"),
    ("1,2\n3,x\n", "line 2, column 2: 'x' is not a number"),
    ("1,nan\n3,4\n", "'nan' is not finite"),
    ("1,2\n-inf,4\n", "'-inf' is not finite"),
])
def test_bad_csv_is_a_clear_error(cli, tmp_path, text, msg):
    proc = cli("solve-game", write(tmp_path, text))
    assert proc.returncode == 2
    assert msg in proc.stderr
    assert proc.stdout == ""


def test_missing_file_and_unknown_solver(cli, tmp_path):
    proc = cli("solve-game", tmp_path / "nope.csv")
    assert proc.returncode == 2 and "no such file" in proc.stderr
    proc = cli("solve-game", write(tmp_path, "1,0\n0,1\n"), "--solver", "simplex")
    assert proc.returncode == 2 and "unknown meta-solver 'simplex'" in proc.stderr and "lp" in proc.stderr


def test_do_demo_converges_and_reports(cli):
    proc = cli("do-demo", "--size", "30", "--seed", "3", check=True)
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["it", "value", "gap"]
    summary = json.loads(lines[-1])
    assert summary["converged"]
    assert summary["value"] == pytest.approx(summary["full_game_value"], abs=1e-6)
    assert summary["payoff_evaluations"] < 30 * 30


def test_do_demo_unknown_pruner(cli):
    proc = cli("do-demo", "--size", "5", "--prune", "nothing")
    assert proc.returncode == 2 and "unknown pruner 'nothing'" in proc.stderr
