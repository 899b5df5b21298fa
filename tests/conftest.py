import os
import sys
from pathlib import Path

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
