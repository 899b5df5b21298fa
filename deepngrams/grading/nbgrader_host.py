"""A long-lived process that has nbgrader loaded, and forks a fresh child for each submission.

Starting Python and importing nbgrader, nbconvert and their dependencies costs a second or two of
CPU, the same for every submission. A grading thread borrows a host (started on first use): the
host imports all of that once, then for each submission forks a child that runs nbgrader's
autograde and feedback (`run_steps`) and exits. Every child starts from the same
untouched state, so nothing of one submission reaches the next; the notebook itself still runs in
a fresh kernel in a fresh sandbox. The host also starts the kernel factory for those sandboxes
(grading/sandbox.py), so that it outlives each child: before its own imports when it is told the
kernels' thread count, else on its first request.

The host is a plain single-threaded process started with subprocess (forking a threaded worker
would not be safe), speaking one JSON line each way over its stdin and stdout:

    -> {"private": DIR, "student": ID, "env": {...}, "stderr": FILE}
    <- {"pid": PID}                  the child started
    -> {"stop": true}                (only past the caller's time limit) kill the child's tree
    <- {"status": CODE}              it ended: its exit code, or -N for signal N

The host kills the child itself: until it reaps the child, the pid cannot name another process.
Both sides read the channel with os.read and a line buffer of their own, so that a wait on the
descriptor never misses a line already read into a buffer. Anything unexpected on the channel
ends the host: the next submission gets a new one, never an answer meant for another.

A process keeps its hosts between submissions and between batches (`borrowed_host`): one for each
submission graded at once. A host dies with the process that uses it, and each child with the host
(PR_SET_PDEATHSIG, from a thread that lives as long as the process): a worker killed mid-submission
leaves nothing running.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from deepngrams.config import CARD_PATH, CORPUS_PATH, GRADE_JOB_ENV, ROOT


class HostFailed(RuntimeError):
    """The host process ended or stopped answering: the machinery failed, not the submission."""


HOST_NAME, CHILD_NAME = b"nbgrader-host", b"nbgrader-child"  # what `ps` shows for each


def die_with_parent(parent: int, name: bytes, subreaper: bool = False) -> None:
    """Be named `name` in process listings, and SIGKILLed when the thread that started this
    process ends; with `subreaper`, adopt the orphans of what this process starts (the sandbox's
    init, which outlives bubblewrap, is then reaped here as soon as it ends: sandbox._end_sandbox)."""
    import ctypes
    pr_set_pdeathsig, pr_set_name, pr_set_child_subreaper = 1, 15, 36
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_name, ctypes.c_char_p(name), 0, 0, 0)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if subreaper:
        libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0)
    if os.getppid() != parent:  # the parent ended before the line above
        os._exit(1)


def _preload() -> None:
    """What every submission's nbgrader run would otherwise import (and build) for itself."""
    import nbformat
    import nbgrader.apps  # noqa: F401
    import nbgrader.converters  # noqa: F401
    import nbconvert.exporters  # noqa: F401
    import traitlets.config.loader  # noqa: F401
    import deepngrams.grading.verdicts  # noqa: F401
    from deepngrams.grading import exercises, nbgrader_steps
    nbformat.validate(nbformat.v4.new_notebook())  # compiles the notebook schema's validator
    nbgrader_steps.compile_feedback_templates()
    exercises.draw_cases(0)  # reads the course's vocabulary and corpus, which every submission's cases come from


def _start_kernel_factory(env: dict) -> None:
    """The kernel factory for the job's sandboxes, started here, in the host, so that it outlives each
    submission's child (which inherits the line to it)."""
    try:
        job = json.loads(env.get(GRADE_JOB_ENV) or "null")
    except (TypeError, ValueError):
        return
    if isinstance(job, dict) and job.get("sandboxed") and isinstance(job.get("threads"), int):
        from deepngrams.grading import sandbox
        sandbox.start_kernel_factory(job["threads"])


def _child(request: dict) -> None:
    """In the forked child: nbgrader's steps for one submission, then exit with their status."""
    try:
        os.setsid()  # a process group of its own, for the caller to kill as a whole
        die_with_parent(int(request["host"]), CHILD_NAME, subreaper=True)
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


class Channel:
    """Lines of JSON read from a descriptor, waiting at most a given time for each."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buffer = fd, b""
        self.poll = select.poll()
        self.poll.register(fd, select.POLLIN)

    def read(self, timeout: float | None) -> dict | None:
        """The next line's object; None past `timeout` seconds; EOFError once the other side closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.poll.poll(None if wait is None else wait * 1000):
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)


def kill_tree(pid: int) -> None:
    """Kill a process, its process group and every process below it (the sandbox runs in a
    session of its own, so the group alone would miss it)."""
    import psutil
    try:
        below = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        below = []
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    for p in below:
        with contextlib.suppress(psutil.Error):
            p.kill()


def _wait_child(pid: int, requests: Channel) -> int:
    """The child's exit code, once it ends by itself or is stopped on the caller's request."""
    pidfd = os.pidfd_open(pid)
    watch = select.poll()
    watch.register(pidfd, select.POLLIN)
    watch.register(requests.fd, select.POLLIN)
    try:
        while True:
            if b"\n" in requests.buffer:
                if requests.read(0) != {"stop": True}:
                    os._exit(3)  # the channel is out of step
                kill_tree(pid)
                break
            ready = {fd for fd, _ in watch.poll()}
            if pidfd in ready:
                break
            if requests.fd in ready:
                chunk = os.read(requests.fd, 65536)
                if not chunk:
                    raise EOFError
                requests.buffer += chunk
    finally:
        os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def serve(parent: int, kernel_threads: int = 0) -> None:
    """The host's loop: one request at a time, each answered with the child's pid, then its status.
    With `kernel_threads`, the kernel factory its sandboxes will ask for starts first: its import of
    TensorFlow, the longest step before a first kernel, then runs beside the host's own imports."""
    die_with_parent(parent, HOST_NAME)
    requests, answers = Channel(0), os.fdopen(os.dup(1), "wb", buffering=0)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)  # nothing else may write on the channel
    if kernel_threads > 0:
        from deepngrams.grading import sandbox
        sandbox.start_kernel_factory(kernel_threads)
    _preload()
    answers.write(b'{"ready": true}\n')
    while True:
        try:
            request = requests.read(None)
        except EOFError:
            return
        if set(request) != {"private", "student", "env", "stderr"}:
            os._exit(3)
        request["host"] = os.getpid()
        _start_kernel_factory(request["env"])
        pid = os.fork()
        if pid == 0:
            answers.close()
            _child(request)
        answers.write(json.dumps({"pid": pid}).encode() + b"\n")
        try:
            code = _wait_child(pid, requests)
        except EOFError:
            kill_tree(pid)
            return
        answers.write(json.dumps({"status": code}).encode() + b"\n")


class Host:
    """The grader's side of one host process."""

    def __init__(self, kernel_threads: int | None = None) -> None:
        """A new host; `kernel_threads`: the thread count of the sandboxes' kernels it will run, to
        start their factory at once (None: on the first request, for that request's count)."""
        code = "from deepngrams.grading.nbgrader_host import serve; import sys; serve(*map(int, sys.argv[1:]))"
        env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        self.inputs = _preloaded_inputs()
        self.proc = _in_spawning_thread(lambda: subprocess.Popen(
            [sys.executable, "-c", code, str(os.getpid()), str(kernel_threads or 0)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, start_new_session=True, bufsize=0))
        self.answers = Channel(self.proc.stdout.fileno())
        self._expect("ready", 120.0, "did not start")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _expect(self, key: str, timeout: float | None, what: str):
        """The value of `key` in the host's next answer. Anything else (nothing in time, another
        answer, the host gone) ends the host and raises HostFailed."""
        try:
            answer = self.answers.read(timeout)
        except (EOFError, ValueError):
            answer = None
        if not isinstance(answer, dict) or key not in answer:
            self.close()
            raise HostFailed(f"nbgrader's host process {what} (status {self.proc.poll()})")
        return answer[key]

    def _send(self, message: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        except OSError as e:
            self.close()
            raise HostFailed(f"nbgrader's host process is gone ({e})") from None

    def run(self, private: Path, student: str, env: dict, stderr: Path, timeout: float | None) -> int | None:
        """nbgrader's steps for one submission in a fresh child; its exit code, or None when it ran
        past `timeout` seconds and was stopped, with everything it started."""
        self._send({"private": str(private), "student": student, "env": env, "stderr": str(stderr)})
        self._expect("pid", 60.0, "did not start a child")
        try:
            answer = self.answers.read(timeout)
        except (EOFError, ValueError):
            answer = None
        if answer is not None:
            if not isinstance(answer, dict) or "status" not in answer:
                self.close()
                raise HostFailed(f"nbgrader's host process ended or answered out of step (status {self.proc.poll()})")
            return answer["status"]
        self._send({"stop": True})
        self._expect("status", 60.0, "did not stop a child past its time")
        return None

    def close(self) -> None:
        """End the host (and, through it, any child still running)."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            self.proc.stdout.close()


def _preloaded_inputs() -> tuple:
    """What of the course's files a host read when it started (`_preload`): a host that read other
    versions of them is not borrowed again."""
    found = []
    for path in (CARD_PATH, CORPUS_PATH):
        try:
            st = path.stat()
            found.append((str(path), st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            found.append((str(path), None))
    return tuple(found)


_spawner: concurrent.futures.ThreadPoolExecutor | None = None  # its one thread lives as long as the process
_pool_lock = threading.Lock()
_idle: list[Host] = []  # this process's hosts between submissions
_pool_pid = os.getpid()  # a forked child starts a pool of its own: its parent's hosts and thread are not its


def _own_pool() -> None:
    """Forget a parent's pool in a forked child (call with `_pool_lock` held)."""
    global _spawner, _idle, _pool_pid
    if _pool_pid != os.getpid():
        _spawner, _idle, _pool_pid = None, [], os.getpid()


def _in_spawning_thread(start):
    """`start()`, run in this process's spawning thread, which lives as long as the process. A host
    dies with the thread that started it (PR_SET_PDEATHSIG names a thread, not a process): started
    by a grading thread, it would end with that thread (a local cluster's, gone with its batch)."""
    global _spawner
    with _pool_lock:
        _own_pool()
        if _spawner is None:
            _spawner = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepngrams-spawner")
        spawner = _spawner
    return spawner.submit(start).result()


@contextlib.contextmanager
def borrowed_host(kernel_threads: int | None = None) -> Iterator[Host]:
    """A host of this process for one submission: an idle one, else a new one (`Host(kernel_threads)`).
    It is kept for the next submission (of this batch or a later one) only when its exchange ended in
    step and it is alive."""
    inputs, found, ended = _preloaded_inputs(), None, []
    with _pool_lock:
        _own_pool()
        while _idle and found is None:
            candidate = _idle.pop()
            if candidate.alive() and candidate.inputs == inputs:
                found = candidate
            else:
                ended.append(candidate)
    for old in ended:
        old.close()
    current = found or Host(kernel_threads)
    try:
        yield current
    except BaseException:
        current.close()
        raise
    if current.alive():
        with _pool_lock:
            if _pool_pid == os.getpid():
                _idle.append(current)


def close_idle_hosts() -> None:
    """End this process's idle hosts (and their kernel factories): the next submission starts afresh,
    as the first of a new grading process does."""
    with _pool_lock:
        _own_pool()
        ended, _idle[:] = list(_idle), []
    for host in ended:
        host.close()
