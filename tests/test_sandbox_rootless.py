"""The rootless sandbox: the grader run by an ordinary user (here `nobody`) gets the same guarantees.

The test process is root; each test runs tests/rootless_runner.py as nobody, which runs the
notebooks with `sandbox.run` and reports back. (tests/test_sandbox_isolation.py runs its
two-sandboxes checks in both modes.)
"""
import os

import pytest

from deepngrams.grading import sandbox
from deepngrams.config import ROOT

from rootless_runner import NOBODY, as_nobody
from test_sandbox import (CHILDREN_LIMITS, CHILDREN_OVER_THE_LIMIT, HIDDEN_MEMORY, HIDDEN_MEMORY_LIMITS,
                          IN_MEMORY_FILES, IN_MEMORY_FILES_LIMITS, SOCKET_BUFFERS, SOCKET_BUFFERS_CASES, SOCKET_LIMITS,
                          STOPPED_WITHIN_S, hidden_memory_lines)

pytestmark = pytest.mark.slow

# The tests that run sandboxes become nobody: they need root and bubblewrap.
as_nobody_here = pytest.mark.skipif(os.geteuid() != 0 or sandbox.available() is not None,
                                    reason="needs root (to become nobody) and bubblewrap")


def test_without_bubblewrap_the_message_says_how_to_install_it_or_grade_knowingly(monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    message = sandbox.available()
    assert "bubblewrap is not installed" in message and "apt-get install bubblewrap" in message
    assert "plain-autograde" in message and "DEEPNGRAMS_NO_SANDBOX=1" in message and "trusted submissions only" in message


def test_the_mode_follows_the_effective_user(monkeypatch):
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 0)
    assert sandbox.mode() == sandbox.ROOT_MODE
    args = sandbox.bwrap_args(sandbox.FIRST_UID, sandbox.Limits())
    assert "--unshare-user" not in args and f"--reuid={sandbox.FIRST_UID}" in args
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    assert sandbox.mode() == sandbox.ROOTLESS_MODE
    args = sandbox.bwrap_args(sandbox.FIRST_UID, sandbox.Limits(processes=99))
    assert {"--unshare-user", "--disable-userns", "--nproc=99:99"} <= set(args)
    assert not any(a.startswith("--reuid") for a in args)


def one(cells, **limits) -> tuple[dict, list[str]]:
    """Run one notebook of plain cells as nobody; returns (its result, the text of each cell)."""
    limits = {"wall_timeout": 60, "memory_gib": 2, "cell_timeout": 20, **limits}
    report = as_nobody({"runs": [{"cells": list(cells), "limits": limits}]})
    assert report["euid"] == NOBODY and report["mode"] == sandbox.ROOTLESS_MODE and report["available"] is None
    result = report["results"][0]
    return result, result["texts"]


@as_nobody_here
def test_rootless_mode_sees_only_the_student_files_and_no_network():
    result, out = one([
        "import os; print(os.getuid(), os.getcwd())",
        "print(sorted(os.listdir('/bundle')), sorted(os.listdir('/bundle/model')))",
        f"print(os.path.exists({str(ROOT / 'source')!r}), os.path.exists({str(ROOT / 'grader')!r}), "
        f"os.path.exists({str(ROOT / 'deepngrams' / 'solution.py')!r}))",
        "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=3); print('network')\n"
        "except OSError as e:\n    print('no network')",
        "try:\n    open('/usr/evil', 'w'); print('wrote /usr')\nexcept OSError:\n    print('read-only')",
        "try:\n    open('/bundle/model/model_card.json', 'a'); print('wrote the bundle')\nexcept OSError:\n"
        "    print('read-only')",
        "open('mine.txt', 'w').write('ok'); print(open('mine.txt').read())",
        "try:\n    open('big', 'wb').write(bytes(300 * 2**20)); print('wrote 300 MiB')\nexcept OSError as e:\n"
        "    print('full')",
        "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0], "
        "open('/proc/self/status').read().split('NoNewPrivs:')[1].split()[0])",
        "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit())[0])",
        "print([os.statvfs(d).f_blocks * os.statvfs(d).f_frsize // 2**20 for d in ('/tmp', '/dev/shm', '.')])",
    ])
    assert result["notebook"] and not result["events"], (result["events"], result["stderr"][-2000:])
    uid, cwd = out[0].split()
    assert int(uid) == sandbox.FIRST_UID and cwd == "/bundle/work"  # its own user, in its own namespace
    assert out[1].strip() == f"{sorted(['data', 'model', 'w1_unittest.py', 'work'])} " \
                             f"{sorted(['grulm.weights.h5', 'model_card.json'])}"
    assert out[2].strip() == "False False False"
    assert out[3].strip() == "no network"
    assert out[4].strip() == out[5].strip() == "read-only"
    assert out[6].strip() == "ok"
    assert out[7].strip() == "full"  # the scratch folder holds 256 MiB
    assert out[8].strip() == "0000000000000000 1"  # no capabilities, no new privileges
    assert out[9].strip() == "1"  # its own PID namespace: the grader's processes are not there
    assert out[10].strip() == "[256, 256, 256]"  # every writable place is a capped tmpfs


@as_nobody_here
def test_rootless_cell_time_limit():
    result, out = one(["while True:\n    pass", "print('after')"], cell_timeout=3)
    assert [e["event"] for e in result["events"]] == ["time limit"] and out[1].strip() == "after"


# 2 GiB in one allocation under a 1.5 GiB limit per process: a MemoryError the kernel survives.
@as_nobody_here
def test_rootless_memory_per_process_is_a_memory_error():
    result, out = one(["import numpy as np\ntry:\n    x = np.ones(2**28)\n    print('allocated', x.nbytes)\n"
                       "except MemoryError:\n    print('MemoryError')", "print('after')"], memory_gib=1.5)
    assert out == ["MemoryError\n", "after\n"], (out, result["stderr"][-2000:])


# The course's GRU (embedding 256, 512 units, 81 characters) trained on a few batches: the sandbox's
# processes together touch 0.95 to 1.05 GiB (TensorFlow included), but they reserve over 2 GiB of
# address space, which an RLIMIT_AS of the 1.5 GiB limit would refuse.
GRU_FIT = """
import numpy as np, tensorflow as tf
model = tf.keras.Sequential([tf.keras.layers.Embedding(81, 256), tf.keras.layers.GRU(512, return_sequences=True),
                             tf.keras.layers.Dense(81)])
model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
x = np.random.randint(0, 81, (64 * 3, 100))
print("fit", np.isfinite(model.fit(x, x, batch_size=64, epochs=1, verbose=0).history["loss"][-1]))
"""


@as_nobody_here
def test_rootless_a_gru_fits_in_one_and_a_half_gib():
    result, out = one([GRU_FIT], memory_gib=1.5, cell_timeout=120, wall_timeout=180)
    assert out == ["fit True\n"] and not result["events"], (out, result["events"], result["stderr"][-2000:])
    assert result["peak_memory_mib"] < 1536


@as_nobody_here
def test_rootless_processes_together_over_the_memory_limit_stop_the_sandbox():
    result, out = one(["print('before')", CHILDREN_OVER_THE_LIMIT, "print('after')"], memory_gib=1.25,
                      **CHILDREN_LIMITS)
    assert [(e["event"], e.get("scope")) for e in result["events"]] == [("memory limit", "sandbox")], result
    assert not result["notebook"] and result["seconds"] < STOPPED_WITHIN_S


# Forks sleepers until the kernel refuses, then keeps them: the sandbox's processes stay at its limit.
FORK_BOMB = """
import os, time
n = 0
while True:
    if os.fork() == 0:
        time.sleep(30); os._exit(0)
    n += 1
"""
SMALL = ["import subprocess, sys, time\ntime.sleep(3)",  # starts once the bomb has filled its count
         "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(2)']) for _ in range(20)]\n"
         "print(sum(k.wait() == 0 for k in kids))", "print(sum(range(10)))"]


@as_nobody_here
def test_rootless_fork_bomb_stops_only_its_own_sandbox():
    """Two sandboxes side by side as one user: one fork-bombs, the other starts 20 processes and
    finishes; the bomb gets the process-limit reason."""
    limits = {"wall_timeout": 60, "memory_gib": 4, "cell_timeout": 30, "processes": 200}
    report = as_nobody({"side_by_side": True, "runs": [{"cells": [FORK_BOMB, "print('after')"], "limits": limits},
                                                       {"cells": SMALL, "limits": limits, "slot": 1}]})
    bomb, small = report["results"]
    assert [e["event"] for e in bomb["events"]] == ["process limit"], (bomb["events"], bomb["texts"])
    assert "emporarily unavailable" in bomb["texts"][0] and bomb["texts"][1].strip() == "after"
    assert not small["events"] and small["texts"][1:] == ["20\n", "45\n"], (small["events"], small["texts"])
    assert bomb["seconds"] < 60 and small["seconds"] < 60


@as_nobody_here
def test_rootless_mode_refuses_memory_that_no_process_shows():
    """As in root mode (tests/test_sandbox.py, with its control): memory files and SysV shared
    memory are refused, and the descriptors of a process are capped."""
    result, out = one([HIDDEN_MEMORY], **HIDDEN_MEMORY_LIMITS)
    assert result["notebook"] and not result["events"], (result["events"], result["stderr"][-2000:])
    found = hidden_memory_lines(out[0])
    assert found["memfd"] == "PermissionError EPERM after 0 MiB", found
    assert found["shm"] == "shmget EPERM after 0 MiB" and found["msgget"] == "EPERM", found
    assert found["sem"] == "semget EPERM after 0 MiB", found
    assert found["sockets"].startswith("EMFILE after ") and int(found["sockets"].split()[2]) < 520, found


@as_nobody_here
def test_rootless_mode_counts_files_in_memory_against_the_memory_limit():
    """As in root mode: the watchdog reads the sandbox's in-memory folders from outside."""
    result, out = one([IN_MEMORY_FILES], **IN_MEMORY_FILES_LIMITS, cell_timeout=100)
    assert [(e["event"], e.get("scope")) for e in result["events"]] == [("memory limit", "sandbox")], \
        (result["events"], result["peak_memory_mib"], result["stderr"][-2000:])


@as_nobody_here
@pytest.mark.parametrize("kind, factory", [("unix", False), ("unix", True), ("tcp", False)])
def test_rootless_socket_buffers_count_against_the_memory_limit(kind, factory):
    """As in root mode: the harness hands the grader a census of the sandbox's network namespace,
    which the grader (no root, so not allowed in that namespace) could not make itself; with a
    factory, the kernel it forked joins that namespace, and its sockets count too."""
    limits = {**SOCKET_LIMITS, "cell_timeout": 100}
    report = as_nobody({"runs": [{"cells": ["print('before')", SOCKET_BUFFERS.format(**SOCKET_BUFFERS_CASES[kind])],
                                  "limits": limits, "factory": factory}]})
    result = report["results"][0]
    assert [(e["event"], e.get("scope")) for e in result["events"]] == [("memory limit", "sandbox")], \
        (result["events"], result["peak_memory_mib"], result["texts"], result["stderr"][-2000:])
    assert not result["notebook"] and result["peak_memory_mib"] > 1024 and result["seconds"] < STOPPED_WITHIN_S


@as_nobody_here
def test_rootless_idle_sockets_keep_a_small_peak():
    held = ("import socket, time\npairs = [socket.socketpair() for _ in range(48)]\n"
            "server = socket.create_server(('127.0.0.1', 0))\nclient = socket.create_connection(server.getsockname())\n"
            f"time.sleep({10 * sandbox.WATCH_SECONDS})\nprint(len(pairs))")
    result, out = one([held], memory_gib=1.0)
    assert not result["events"] and out == ["48\n"], (result["events"], result["peak_memory_mib"], out)
    assert 0 < result["peak_memory_mib"] < 400, result["peak_memory_mib"]
