"""Test-only: the SLURM executor plugin's status checks stay at their initial interval.

snakemake-executor-plugin-slurm (2.x) waits 10 s longer after every status check that finds no
job finished (up to 3 minutes): right for a busy cluster, but on the one-node test cluster, whose
jobs take seconds, each level of the job graph would wait about 12 s for nothing. tests/test_slurm.py
puts this folder on PYTHONPATH; Python imports this file at start-up (``sitecustomize``), and it
caps the plugin's wait at ``--slurm-init-seconds-before-status-checks`` when the plugin is imported.
Jobs are still submitted with sbatch, tracked by squeue and checked as in a user's run."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

PLUGIN = "snakemake_executor_plugin_slurm"
CAP_SECONDS = 2


def _cap(module) -> None:
    cls = module.Executor
    prop = cls.next_seconds_between_status_checks  # RemoteExecutor's property
    cls.next_seconds_between_status_checks = property(
        prop.fget, lambda self, value: prop.fset(self, value if value is None else min(value, CAP_SECONDS)))


class _CapWhenImported(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != PLUGIN:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            exec_module = spec.loader.exec_module

            def exec_and_cap(module):
                exec_module(module)
                _cap(module)

            spec.loader.exec_module = exec_and_cap
        return spec


if PLUGIN not in sys.modules:
    sys.meta_path.insert(0, _CapWhenImported())
