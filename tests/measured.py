"""Run a command under a 4 GB address-space limit and record its peak memory and CPU time.

    python tests/measured.py OUT.json CMD ARGS...

Writes ``{"maxrss_kb": ..., "cpu_s": ...}`` (the child's own resource usage, from ``wait4``) to
OUT.json and exits with the command's status: tests/test_bad_inputs.py bounds what a bad input
may cost against what a good one does. A doracle job runs in the measured child itself
(DORACLE_FORKSERVER=0), not in a child of doracle's fork server."""

import json
import os
import resource
import sys

LIMIT = 4 << 30

out, cmd = sys.argv[1], sys.argv[2:]
resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))
os.environ["DORACLE_FORKSERVER"] = "0"  # the job in this child, not in a child of doracle's fork server
pid = os.fork()
if pid == 0:  # pragma: no cover - the child
    os.execvp(cmd[0], cmd)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as f:
    json.dump({"maxrss_kb": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime}, f)
sys.exit(os.waitstatus_to_exitcode(status))
