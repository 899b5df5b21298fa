import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
