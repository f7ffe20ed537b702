"""bench/bench_memory.py at a tiny size: both modes measured, the cache's loaded bytes grow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_memory_tiny(tmp_path):
    out = tmp_path / "memory.json"
    pythonpath = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_memory.py"), "--images", "150",
                           "--iterations", "2", "--workdir", str(tmp_path / "work"), "--json", str(out)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": pythonpath})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| t | attackers in support |" in proc.stdout
    r = json.loads(out.read_text())
    assert set(r["modes"]) == {"cache", "on_the_fly"}
    cache, fly = r["modes"]["cache"], r["modes"]["on_the_fly"]
    for rows in (cache, fly):
        assert [row["iteration"] for row in rows] == [1, 2]
        assert [row["attackers"] for row in rows] == [1, 2]  # uniform meta-solver: every attacker stays
        assert all(row["peak_rss_bytes"] > r["reference"]["peak_rss_bytes"] / 2 for row in rows)
    assert all(row["materialized"] == ["cache"] for row in cache)
    assert all(row["materialized"] == ["on_the_fly"] for row in fly)
    # cached: the job loads one float32 copy of the training split per attacker in the support
    per_attacker = r["config"]["n_train"] * 3 * 32 * 32 * 4
    assert [row["cached_train_bytes"] for row in cache] == [per_attacker, 2 * per_attacker]
    assert [row["bound_models"] for row in cache] == [0, 0]
    # on the fly: nothing cached; a000 and a001 are both bound to d000 alone
    assert [row["cached_train_bytes"] for row in fly] == [0, 0]
    assert [row["bound_models"] for row in fly] == [1, 1]
    if sys.platform == "linux":
        assert all(row["training_peak_rss_bytes"] for row in cache + fly)
