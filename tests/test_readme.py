"""The README's two commands are what a new user runs and what CI runs: keep them honest."""

from __future__ import annotations

import re

from project import ROOT


def readme_commands() -> list[str]:
    """The one-line bash commands of the README's "Two commands" section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_readme_gives_a_main_job_and_a_test_command_each_in_a_fresh_virtual_environment():
    main, tests = readme_commands()
    for cmd in (main, tests):
        assert "\n" not in cmd, "each of the two commands is one line a user can paste"
        assert cmd.startswith("python3 -m venv .venv && . .venv/bin/activate && "), cmd
    assert 'pip install -e .' in main and main.endswith("snakemake -c2")
    assert 'pip install -e ".[test]"' in tests and tests.endswith("python -m pytest")


def test_ci_runs_the_readmes_test_command_verbatim():
    _, tests = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci, f".ci/run must run the README's test command as it is: {tests}"


def test_the_virtual_environment_is_ignored_by_git():
    assert "/.venv/" in (ROOT / ".gitignore").read_text().split()
