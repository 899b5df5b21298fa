"""A test that keeps a child process busy, for tests/test_cpu_report.py (which names this file)."""
import os
import subprocess
import sys


def test_a_child_spins():
    seconds = float(os.environ.get("DEEPNGRAMS_SPIN_S", "1"))
    subprocess.run([sys.executable, "-c", f"import time\nend = time.process_time() + {seconds}\n"
                    "while time.process_time() < end: pass"], check=True)
