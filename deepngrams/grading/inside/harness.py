"""Runs one submission's notebook inside the sandbox (started by grading/sandbox.py).

It reads its job from stdin (the notebook with graded cells replaced by probe calls, and the
time limit of a cell), runs the notebook with nbclient in a fresh kernel, and writes to file
descriptor 3 (a socket) first the sandbox's socket census (`hand_over_socket_census`), then JSON
lines as it goes: each probe's observations when its cell ends, any
event (a cell over its time limit, out of memory, the kernel dying), and at the end the
executed notebook. The kernel never inherits descriptor 3 or sees the job, and this process
makes itself undumpable so the kernel cannot read its memory.

With a kernel factory (inside/zygote.py), the job's "zygote" is the descriptor of this sandbox's
line to it: the kernel is forked there, TensorFlow already imported, and joins this sandbox. If the
factory cannot give one, the kernel is started here as usual.

Standard library, nbformat and nbclient only: the grader's package is not in the sandbox.
"""
from __future__ import annotations

import array
import ctypes
import json
import math
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

# jsonschema loads an IRI checker that compiles a grammar on import (seconds of CPU in every process);
# nbformat's schema has no IRI to check, so nothing is lost without it.
sys.modules.setdefault("rfc3987_syntax", None)
MIME = "application/vnd.deepngrams.probe+json"
MEMORY_ERRORS = ("MemoryError", "ResourceExhaustedError", "bad_alloc")
MAX_DEPTH = 64  # the probes' own observations are a dozen levels deep at most
INTERRUPT_GRACE_S = 10.0  # a cell still running this long after its interrupt (it ignores SIGINT) kills the kernel
ANSI_CODE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # the colours of IPython's tracebacks
# Where the process limit shows: starting a process (os.fork, forkpty, posix_spawn, subprocess's
# Popen and _posixsubprocess, multiprocessing's launchers) or a thread.
STARTS_A_PROCESS = re.compile(r"fork|spawn|_posixsubprocess|Popen|subprocess|multiprocessing|start_new_thread|"
                              r"can't start new thread")


# Where a thread is refused: threading's Thread.start (RuntimeError "can't start new thread").
STARTS_A_THREAD = re.compile(r"start_new_thread|Thread\.start\b|\.start\(\)")


def _raised_where(error: dict, source, place: re.Pattern) -> bool:
    """Whether `place` shows in the frames of the last exception of an error output (without its
    message line) or in its cell's `source`."""
    traceback = [ANSI_CODE.sub("", str(entry)) for entry in error.get("traceback") or ()]
    heads = [i for i, entry in enumerate(traceback) if "Traceback (most recent call last)" in entry]
    frames = traceback[heads[-1] + 1:-1] if heads else []
    source = "".join(source) if isinstance(source, list) else str(source or "")
    return any(place.search(text) for text in (*frames, source))


def could_not_start_a_thread(error: dict, source: str = "") -> bool:
    """Whether a cell's error output is a thread the system refused: "can't start new thread", raised
    where a thread is started, as the frames of its traceback or the cell's `source` show. Python
    raises it both at the process limit (threads count as processes) and at the memory limit (no room
    for the thread's stack): the two cannot be told apart from here."""
    if error.get("ename") != "RuntimeError" or str(error.get("evalue")) != "can't start new thread":
        return False
    return _raised_where(error, source, STARTS_A_THREAD)


def hit_the_process_limit(error: dict, source: str = "") -> bool:
    """Whether a cell's error output is the process limit: EAGAIN (BlockingIOError, "Resource
    temporarily unavailable") where a process or thread is started, as the frames of its traceback
    (their code and where it lies) or the cell's `source` show. EAGAIN has causes of the cell's own
    too (a lock taken with LOCK_NB, a read of a non-blocking socket): those are errors of that cell,
    not a limit. The source counts because the line a frame shows may be a `finally:` after the
    call that failed."""
    if error.get("ename") != "BlockingIOError" or "emporarily unavailable" not in str(error.get("evalue")):
        return False
    return _raised_where(error, source, STARTS_A_PROCESS)


def read_observation(text, max_chars: int | None = None) -> dict:
    """A probe's observations from the JSON it displayed. Student code can display its own: what
    cannot be parsed (nested too deep, a number too long) or written back is an error of that cell
    alone, never of the harness. Past `max_chars` (the job's: the grader parses what comes back
    outside the sandbox, where its memory is not counted) it is not parsed at all."""
    if isinstance(text, str) and max_chars is not None and len(text) > max_chars:
        return {"error": f"observations too large (over {max_chars / 2**20:g} MiB)"}
    try:
        result = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return {"error": "unreadable observations"}
    stack = [(result, 0)]
    while stack:  # depth without recursion
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return {"error": "unreadable observations (nested too deeply)"}
        if isinstance(value, (list, dict)):
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return result if isinstance(result, dict) else {"error": "unreadable observations"}


def returned_notebook(nb, returned: dict) -> dict:
    """The executed notebook as the grader reads it (`verdicts.apply_verdicts`): each cell's prompt
    number and outputs, as text. `returned` (the job's): the MIME types kept, and how many outputs
    and traceback lines at most. The grader parses it outside the sandbox, where its memory is not
    counted: text costs it what it weighs, but millions of small lists or dicts would cost gigabytes."""
    def text(value) -> str:
        return "".join(map(str, value)) if isinstance(value, list) else str(value)

    left, cells = int(returned["max_outputs"]), []
    for cell in nb.get("cells", []):
        outputs = []
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if left <= 0:
                break
            left -= 1
            kind = out.get("output_type")
            if kind == "stream":
                outputs.append({"output_type": "stream", "name": text(out.get("name")), "text": text(out.get("text"))})
            elif kind == "error":
                lines = out.get("traceback") if isinstance(out.get("traceback"), list) else []
                outputs.append({"output_type": "error", "ename": text(out.get("ename")), "evalue": text(out.get("evalue")),
                                "traceback": [text(t) for t in lines[:int(returned["max_traceback_entries"])]]})
            elif kind in ("display_data", "execute_result") and isinstance(out.get("data"), dict):
                outputs.append({"output_type": kind,
                                "data": {k: text(v) for k, v in out["data"].items() if k in returned["mime"]}})
        count = cell.get("execution_count")
        cells.append({"execution_count": count if isinstance(count, int) else None, "outputs": outputs})
    return {"cells": cells}


NAMESPACES = ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup")  # the order the factory reads them in
ZYGOTE_WAIT_S = 60.0


class ForkedKernel:
    """The kernel the factory forked into this sandbox, behind the part of Popen's interface that
    jupyter_client uses. It is not this process's child: the factory's child, outside the sandbox's
    process tree, waits for it and sends how it ended."""

    def __init__(self, sock: socket.socket, pid: int, args: list[str]) -> None:
        self.sock, self.pid, self.args = sock, pid, args
        self.returncode: int | None = None
        self.stdin = self.stdout = self.stderr = None

    def _read(self, timeout: float) -> None:
        if self.returncode is not None or not select.select([self.sock], [], [], max(timeout, 0))[0]:
            return
        try:
            message = json.loads(self.sock.recv(65536) or b'{"exit": -9}')
        except (OSError, ValueError):
            message = {"exit": -9}
        if isinstance(message, dict):  # {"exit": status}, or {"error": ...} if it could not start
            code = message.get("exit", 1)
            self.returncode = code if isinstance(code, int) else 1

    def poll(self) -> int | None:
        self._read(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = 3600.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._read(left)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def forked_kernel(sock: socket.socket, namespaces: list[int], cmd: list[str], env: dict | None,
                  cwd: str | None) -> ForkedKernel:
    """Ask the factory for a kernel running `cmd`; raises OSError or ValueError if it gives none. The
    kernel starts only once told to go: one that comes too late (after this harness gave up and
    started its own) is told no and ends."""
    env = dict(os.environ if env is None else env, JPY_PARENT_PID=str(os.getpid()))  # as jupyter_client sets it
    request = {"argv": list(cmd), "env": env, "cwd": cwd or os.getcwd()}
    try:
        sock.sendmsg([json.dumps(request).encode()],
                      [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [*namespaces, 0, 1, 2]))])
        if not select.select([sock], [], [], ZYGOTE_WAIT_S)[0]:
            raise OSError("the kernel factory did not answer")
        answer = json.loads(sock.recv(65536) or b"{}")
        if not isinstance(answer, dict) or not isinstance(answer.get("pid"), int):
            raise ValueError(f"the kernel factory gave no kernel: {str(answer)[:300]}")
        sock.sendall(b"go")
    except (OSError, ValueError):
        try:
            sock.sendall(b"no")
        except OSError:
            pass
        raise
    return ForkedKernel(sock, answer["pid"], list(cmd))


def _popen_in_this_session(*args, start_new_session=False, **kwargs):
    """subprocess.Popen for jupyter_client's launcher, which starts a kernel in a session of its own:
    the sandbox refuses new sessions (each is a scheduling group of its own), so the kernel gets a
    process group of its own instead, which is what jupyter_client signals."""
    if start_new_session:
        kwargs.setdefault("process_group", 0)
    return subprocess.Popen(*args, **kwargs)


def launch_kernels(factory_fd: int | None, launched: list) -> None:
    """Start the kernel through the factory on descriptor `factory_fd`, or as usual where there is none
    or it gives none; each kernel started goes into `launched` (its exit status outlives
    jupyter_client's own reference, which its shutdown drops)."""
    from jupyter_client import launcher
    from jupyter_client.provisioning import local_provisioner
    launcher.Popen = _popen_in_this_session
    usual = local_provisioner.launch_kernel
    sock, namespaces = None, []
    if factory_fd is not None:
        try:
            sock = socket.socket(fileno=factory_fd)
            sock.set_inheritable(False)
            namespaces = [os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC) for name in NAMESPACES]
        except OSError as e:
            print(f"harness: no kernel factory: {e}", file=sys.stderr)

    def launch_kernel(cmd, stdin=None, stdout=None, stderr=None, env=None, independent=False, cwd=None, **kw):
        kernel = None
        if namespaces:
            try:
                kernel = forked_kernel(sock, namespaces, cmd, env, cwd)
            except (OSError, ValueError) as e:
                print(f"harness: starting the kernel here: {e}", file=sys.stderr)
            finally:
                for fd in namespaces:
                    os.close(fd)
                namespaces.clear()
        if kernel is None:
            kernel = usual(cmd, stdin=stdin, stdout=stdout, stderr=stderr, env=env, independent=independent, cwd=cwd,
                           **kw)
        launched.append(kernel)
        return kernel

    local_provisioner.launch_kernel = launch_kernel


def _undumpable() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


NETLINK_SOCK_DIAG = 4


def hand_over_socket_census() -> None:
    """Before anything else (none of the notebook's code has run yet): a sock_diag socket made in this
    sandbox's network namespace, sent to the grader as the first message on descriptor 3, through
    which it counts the buffers of every socket of the sandbox (grading/socket_census.py). This process
    keeps no copy: nothing the notebook runs can reach it."""
    try:
        census = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    except OSError:
        census = None
    try:
        with socket.socket(fileno=os.dup(3)) as channel:
            channel.sendmsg([b"\n"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [census.fileno()]))]
                            if census is not None else [])
    except OSError:
        pass
    finally:
        if census is not None:
            census.close()


def main() -> int:
    hand_over_socket_census()
    job = json.loads(sys.stdin.buffer.read())
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    _undumpable()
    report = os.fdopen(3, "w", encoding="utf-8")
    os.set_inheritable(3, False)
    launched: list = []  # the kernel's process (a Popen, or a ForkedKernel)
    launch_kernels(job["zygote"] if isinstance(job.get("zygote"), int) else None, launched)

    def emit(record: dict) -> None:
        report.write(json.dumps(record, allow_nan=True) + "\n")
        report.flush()

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    nb = nbformat.from_dict(job["notebook"])
    probes = {int(k): v for k, v in job["probes"].items()}
    timeout = float(job["cell_timeout"])
    grace = float(job.get("interrupt_grace", INTERRUPT_GRACE_S))
    started: dict[int, float] = {}
    running: list[int] = []  # the cell executing now
    observed = [0]  # characters of the observations read so far

    def on_start(cell, cell_index, **_):
        started[cell_index] = time.monotonic()
        running[:] = [cell_index]

    def on_done(cell, cell_index, execute_reply=None, **_):
        running.clear()
        seconds = time.monotonic() - started.get(cell_index, time.monotonic())
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if seconds >= timeout and any(o.get("ename") == "KeyboardInterrupt" for o in errors):
            emit({"event": "time limit", "cell": cell_index, "seconds": round(seconds, 1)})
        streams = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        if any(o.get("ename") in MEMORY_ERRORS for o in errors) or "MemoryError" in streams[-5000:]:
            emit({"event": "memory limit", "cell": cell_index})
        elif any(hit_the_process_limit(o, cell.get("source", "")) for o in errors):
            emit({"event": "process limit", "cell": cell_index})
        elif any(could_not_start_a_thread(o, cell.get("source", "")) for o in errors):
            emit({"event": "thread refused", "cell": cell_index})
        if cell_index in probes:
            found = [o for o in cell.get("outputs", []) if o.get("output_type") == "display_data"
                     and MIME in o.get("data", {})]
            cell.outputs = [o for o in cell.get("outputs", []) if o not in found]
            result = None
            if found:
                text = found[-1]["data"][MIME]
                result = read_observation(text, job.get("max_observation_chars"))
                if "error" not in result:
                    observed[0] += len(text)
                    if observed[0] > job.get("max_notebook_observation_chars", math.inf):
                        result = {"error": "observations too large (the notebook's together)"}
            elif errors:
                result = {"error": f"{errors[-1].get('ename')}: {str(errors[-1].get('evalue'))[:300]}"}
            emit({"probe": probes[cell_index]["grade_id"], "result": result})

    class Client(NotebookClient):
        """nbclient's, but a cell that outlives its interrupt by `grace` seconds (it ignores SIGINT)
        has its kernel killed, rather than holding the sandbox until the notebook's own limit."""

        async def _async_handle_timeout(self, timeout, cell=None):
            reply = await super()._async_handle_timeout(timeout, cell)
            if running:
                import asyncio
                asyncio.get_running_loop().call_later(grace, self._kill_if_still, running[0])
            return reply

        def _update_display_id(self, display_id, msg) -> None:
            """Nothing: an output stays as its cell showed it. Else a later cell could rewrite an earlier
            one's output (update_display) once the hidden tests' inputs reached the student's code, and the
            feedback shows the outputs of the cells before the first hidden test."""

        def _kill_if_still(self, cell_index: int) -> None:
            if running == [cell_index] and self.km is not None and self.km.provisioner is not None:
                emit({"event": "time limit", "cell": cell_index, "ignored_interrupt": True,
                      "seconds": round(time.monotonic() - started[cell_index], 1)})
                try:
                    self.km.provisioner.process.kill()
                except (OSError, AttributeError):
                    pass
                if self.task_poll_for_reply is not None:  # as nbclient does when it finds the kernel dead
                    self.task_poll_for_reply.cancel()

    # The kernel is killed once the last cell is done: a polite shutdown would wait a second or more
    # for TensorFlow to tear itself down, and nothing of the kernel outlives the sandbox anyway.
    client = Client(
        nb, timeout=timeout, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
        record_timing=False, shutdown_kernel="immediate", on_cell_execute=on_start, on_cell_executed=on_done,
        resources={"metadata": {"path": os.getcwd()}},
        extra_arguments=["--IPKernelApp.capture_fd_output=False",
                         "--IPKernelApp.exec_lines=['import deepngrams_probes']"])
    try:
        client.execute()
    except DeadKernelError:
        cell = max(started) if started else None
        code = None
        try:
            code = launched[-1].wait(timeout=5) if launched else None
        except Exception:  # noqa: BLE001 - only a detail of the report
            pass
        emit({"event": "kernel died", "cell": cell, "returncode": code})
    except Exception as e:  # noqa: BLE001 - any other failure of the run is reported, not raised
        emit({"event": "harness error", "error": f"{type(e).__name__}: {str(e)[:300]}"})
    emit({"notebook": returned_notebook(nb, job["returned"]) if "returned" in job else nb})
    report.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
