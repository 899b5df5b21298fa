import json
import os
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# `make test` runs three files at once on two cores: TensorFlow's own thread pools, in the tests and
# in what they start (commands, nbgrader's kernels), would only contend for them (test_checks.py alone:
# 149 busy CPU-seconds with the default pools, 128 with one thread). The grader sets its sandboxes' own.
for _name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
# Tests run make themselves: flags of a make that runs the tests (`make -C dir test` prints the
# folders it enters) are not theirs.
for _name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
    os.environ.pop(_name, None)
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: runs notebooks, sandboxes, nbgrader commands, training or a grading batch "
                   "(left out of `make check`, the fast layer)")
    if path := config.getoption("cpu_report"):
        if config.getoption("numprocesses", None):
            raise pytest.UsageError("--cpu-report charges each test with the whole machine's CPU time: "
                                    "run the tests one at a time (-n 0)")
        config.pluginmanager.register(CpuReport(path), "cpu-report")


# The files that take longest, longest first. `make test` hands whole files to its workers in
# collection order (--dist loadfile --no-loadscope-reorder): starting the long ones first keeps one
# of them from starting last and running on alone (longest-processing-time-first scheduling). A file
# not named here keeps its place after these; a stale entry only costs some balance.
LONGEST_FIRST = ("test_grade_hostile", "test_dask", "test_training", "test_grade_student_data", "test_checks",
                 "test_grading", "test_unittest_module", "test_sandbox_isolation", "test_kernel_factory",
                 "test_any_corpus", "test_sandbox", "test_cli", "test_generate_batch", "test_nbgrader_door", "test_grade",
                 "test_exchange", "test_sandbox_rootless")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: each file keeps its order


# `make test` is CPU-bound on two cores: its wall time is its CPU time over two, and --durations (wall
# time under contention) says little about which tests cost it. --cpu-report FILE charges each test
# with the machine's busy CPU-seconds while it ran (/proc/stat: what it started counts, sandboxes and
# kernels included), writes one JSON line a test to FILE and prints the files' totals. It needs the
# tests one at a time (-n 0): side by side, a test would be charged with its neighbours' work.
def pytest_addoption(parser):
    parser.addoption("--cpu-report", metavar="FILE", default=None,
                     help="write each test's busy CPU-seconds of the machine to FILE (JSON lines); needs -n 0")


class CpuReport:
    """The --cpu-report plugin: a line a test as it ends (an interrupted run keeps what it measured)."""

    def __init__(self, path: str):
        from deepngrams.bench import busy_cpu_seconds
        self.busy_cpu_seconds = busy_cpu_seconds  # the machine's, as make bench reads it
        self.path, self.per_file = Path(path), {}
        self.path.write_text("")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        busy, start = self.busy_cpu_seconds(), time.monotonic()
        yield
        cpu, wall = self.busy_cpu_seconds() - busy, time.monotonic() - start
        with self.path.open("a") as f:
            f.write(json.dumps({"test": item.nodeid, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2)}) + "\n")
        totals = self.per_file.setdefault(item.location[0], [0.0, 0.0, 0])
        totals[0], totals[1], totals[2] = totals[0] + cpu, totals[1] + wall, totals[2] + 1

    def pytest_terminal_summary(self, terminalreporter):
        write = terminalreporter.write_line
        terminalreporter.section("busy CPU-seconds per file (--cpu-report)")
        for name, (cpu, wall, count) in sorted(self.per_file.items(), key=lambda kv: -kv[1][0]):
            write(f"{cpu:8.1f} CPU-s {wall:8.1f} s {count:5d} tests  {name}")
        write(f"{sum(v[0] for v in self.per_file.values()):8.1f} CPU-s in all; each test's in {self.path}")
