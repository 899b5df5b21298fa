"""A long-lived process that has nbgrader loaded, and forks a fresh child for each submission.

Starting Python and importing nbgrader, nbconvert and their dependencies costs a second or two of
CPU, the same for every submission. A grading thread keeps one host (started on first use): the
host imports all of that once, then for each submission forks a child that runs nbgrader's
autograde and feedback (`submission.worker_main`) and exits. Every child starts from the same
untouched state, so nothing of one submission reaches the next; the notebook itself still runs in
a fresh kernel in a fresh sandbox.

The host is a plain single-threaded process started with subprocess (forking a threaded worker
would not be safe), speaking one JSON line each way over its stdin and stdout:

    -> {"private": DIR, "student": ID, "env": {...}, "stderr": FILE}
    <- {"pid": PID}                  the child started (the caller may kill its tree on timeout)
    <- {"status": CODE}              it ended: its exit code, or -N for signal N

The host dies with the thread that started it, and each child with the host (PR_SET_PDEATHSIG):
a worker killed mid-submission leaves nothing running.
"""
from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from deepngrams.config import ROOT

_local = threading.local()


class HostFailed(RuntimeError):
    """The host process ended or stopped answering: the machinery failed, not the submission."""


HOST_NAME, CHILD_NAME = b"nbgrader-host", b"nbgrader-child"  # what `ps` shows for each


def _die_with_parent(parent: int, name: bytes) -> None:
    """Be named `name` in process listings, and SIGKILLed when the thread that started this
    process ends."""
    import ctypes
    pr_set_pdeathsig, pr_set_name = 1, 15
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_name, ctypes.c_char_p(name), 0, 0, 0)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent ended before the line above
        os._exit(1)


def _preload() -> None:
    """What every submission's nbgrader run would otherwise import (and build) for itself."""
    sys.modules["rfc3987_syntax"] = None  # no IRI checker for jsonschema (see grading/inside/harness.py)
    import nbformat
    import nbgrader.apps  # noqa: F401
    import nbgrader.converters  # noqa: F401
    import nbconvert.exporters  # noqa: F401
    import traitlets.config.loader  # noqa: F401
    import deepngrams.grading.nbgrader_steps  # noqa: F401
    import deepngrams.grading.verdicts  # noqa: F401
    nbformat.validate(nbformat.v4.new_notebook())  # compiles the notebook schema's validator


def _child(request: dict) -> None:
    """In the forked child: nbgrader's steps for one submission, then exit with their status."""
    try:
        os.setsid()  # a process group of its own, for the caller to kill as a whole
        _die_with_parent(int(request["host"]), CHILD_NAME)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null = os.open(os.devnull, os.O_RDWR)
        for fd, target in ((0, null), (1, null), (2, err)):
            os.dup2(target, fd)
        os.environ.clear()
        os.environ.update(request["env"])
        code = run_steps(Path(request["private"]), request["student"])
    except BaseException as e:  # noqa: BLE001 - reported as the child's failure, never the host's
        with contextlib.suppress(Exception):
            print(f"{type(e).__name__}: {e}", file=sys.stderr)
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)


def run_steps(private: Path, student: str) -> int:
    """nbgrader's autograde, then its feedback, for one student of a private course; 0 when both
    succeeded, else 1 with the last error line on stderr. Runs in a forked child of the host, with
    the submission's environment."""
    import warnings
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader
    from deepngrams.config import ASSIGNMENT
    os.chdir(private)
    warnings.simplefilter("ignore")  # SQLAlchemy's notes on nbgrader's session use are not errors
    api = NbGraderAPI(config=PyFileConfigLoader("nbgrader_config.py", path=str(private)).load_config())
    for step in (lambda: api.autograde(ASSIGNMENT, student, force=True, create=True),
                 lambda: api.generate_feedback(ASSIGNMENT, student, force=True)):
        result = step()
        if not result["success"]:
            text = result.get("error") or result.get("log") or ""
            lines = [x.strip() for x in text.splitlines() if "Error" in x or "Exception" in x] or text.splitlines()
            print(lines[-1][-300:] if lines else "failed", file=sys.stderr)
            return 1
    return 0


def serve(parent: int) -> None:
    """The host's loop: one request at a time, each answered with the child's pid, then its status."""
    _die_with_parent(parent, HOST_NAME)
    channel_in, channel_out = sys.stdin.buffer, os.fdopen(os.dup(1), "wb", buffering=0)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)  # nothing else may write on the channel
    _preload()
    channel_out.write(b'{"ready": true}\n')
    for line in channel_in:
        request = json.loads(line)
        request["host"] = os.getpid()
        pid = os.fork()
        if pid == 0:
            channel_out.close()
            _child(request)
        channel_out.write(json.dumps({"pid": pid}).encode() + b"\n")
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        channel_out.write(json.dumps({"status": code}).encode() + b"\n")


class Host:
    """The grader's side of one host process."""

    def __init__(self) -> None:
        code = "from deepngrams.grading.nbgrader_host import serve; import sys; serve(int(sys.argv[1]))"
        env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(os.getpid())], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        if self._read(120.0) != {"ready": True}:
            self.close()
            raise HostFailed("nbgrader's host process did not start")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read(self, timeout: float | None) -> dict | None:
        """The host's next answer; None past `timeout` seconds. HostFailed if it ended."""
        fd = self.proc.stdout.fileno()
        if timeout is not None and not select.select([fd], [], [], max(0.0, timeout))[0]:
            return None
        line = self.proc.stdout.readline()
        if not line:
            raise HostFailed(f"nbgrader's host process ended (status {self.proc.poll()})")
        return json.loads(line)

    def run(self, private: Path, student: str, env: dict, stderr: Path, timeout: float | None,
            on_timeout) -> int | None:
        """nbgrader's steps for one submission in a fresh child; its exit code, or None when it ran
        past `timeout` seconds and `on_timeout(pid)` was called to stop it."""
        request = {"private": str(private), "student": student, "env": env, "stderr": str(stderr)}
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError as e:
            raise HostFailed(f"nbgrader's host process is gone ({e})") from None
        started = self._read(60.0)
        if started is None:
            raise HostFailed("nbgrader's host process did not start a child")
        deadline = None if timeout is None else time.monotonic() + timeout
        done = self._read(None if deadline is None else deadline - time.monotonic())
        if done is None:
            on_timeout(started["pid"])
            self._read(60.0)  # its status, once stopped
            return None
        return done["status"]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def host() -> Host:
    """This thread's host, started (again) when it has none or its host has ended."""
    current = getattr(_local, "host", None)
    if current is None or not current.alive():
        _local.host = current = Host()
    return current
