"""--cpu-report (tests/conftest.py): each test charged with the machine's busy CPU-seconds, what it
started included; refused where tests run side by side."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPIN_S = 1.0
SPINS = ROOT / "tests" / "cpu_report_spins.py"  # not test_*.py: only run when named


def _pytest(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEEPNGRAMS_SPIN_S=str(SPIN_S))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_test_is_charged_with_the_cpu_time_of_what_it_started(tmp_path):
    report = tmp_path / "cpu.jsonl"
    run = _pytest("-n", "0", "--cpu-report", str(report), str(SPINS.relative_to(ROOT)))
    assert run.returncode == 0, run.stdout + run.stderr
    [line] = report.read_text().splitlines()
    row = json.loads(line)
    assert row["test"].endswith("::test_a_child_spins")
    assert row["cpu_s"] >= 0.9 * SPIN_S and row["wall_s"] >= 0.9 * SPIN_S, row
    assert "busy CPU-seconds per file" in run.stdout and "tests/cpu_report_spins.py" in run.stdout


def test_tests_side_by_side_are_refused(tmp_path):
    report = tmp_path / "cpu.jsonl"
    run = _pytest("-n", "2", "--cpu-report", str(report), str(SPINS.relative_to(ROOT)))
    assert run.returncode == pytest.ExitCode.USAGE_ERROR
    assert "-n 0" in run.stderr and not report.exists()
