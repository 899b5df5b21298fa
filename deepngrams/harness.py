"""Runs one submission's notebook inside the sandbox (started by deepngrams.sandbox).

It reads its job from stdin (the notebook with graded cells replaced by probe calls, and the
time limit of a cell), runs the notebook with nbclient in a fresh kernel, and writes JSON
lines to file descriptor 3 as it goes: each probe's observations when its cell ends, any
event (a cell over its time limit, out of memory, the kernel dying), and at the end the
executed notebook. The kernel never inherits descriptor 3 or sees the job, and this process
makes itself undumpable so the kernel cannot read its memory.

Standard library, nbformat and nbclient only: the grader's package is not in the sandbox.
"""
from __future__ import annotations

import ctypes
import json
import os
import sys
import time

MIME = "application/vnd.deepngrams.probe+json"
MEMORY_ERRORS = ("MemoryError", "ResourceExhaustedError", "bad_alloc")
MAX_DEPTH = 64  # the probes' own observations are a dozen levels deep at most


def read_observation(text) -> dict:
    """A probe's observations from the JSON it displayed. Student code can display its own: what
    cannot be parsed (nested too deep, a number too long) or written back is an error of that cell
    alone, never of the harness."""
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


def _undumpable() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


def main() -> int:
    job = json.loads(sys.stdin.buffer.read())
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    _undumpable()
    report = os.fdopen(3, "w", encoding="utf-8")
    os.set_inheritable(3, False)

    def emit(record: dict) -> None:
        report.write(json.dumps(record, allow_nan=True) + "\n")
        report.flush()

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    nb = nbformat.from_dict(job["notebook"])
    probes = {int(k): v for k, v in job["probes"].items()}
    timeout = float(job["cell_timeout"])
    started: dict[int, float] = {}

    def on_start(cell, cell_index, **_):
        started[cell_index] = time.monotonic()

    def on_done(cell, cell_index, execute_reply=None, **_):
        seconds = time.monotonic() - started.get(cell_index, time.monotonic())
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if seconds >= timeout and any(o.get("ename") == "KeyboardInterrupt" for o in errors):
            emit({"event": "time limit", "cell": cell_index, "seconds": round(seconds, 1)})
        streams = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        if any(o.get("ename") in MEMORY_ERRORS for o in errors) or "MemoryError" in streams[-5000:]:
            emit({"event": "memory limit", "cell": cell_index})
        elif any(o.get("ename") == "BlockingIOError" and "emporarily unavailable" in str(o.get("evalue"))
                 for o in errors):
            emit({"event": "process limit", "cell": cell_index})
        if cell_index in probes:
            found = [o for o in cell.get("outputs", []) if o.get("output_type") == "display_data"
                     and MIME in o.get("data", {})]
            cell.outputs = [o for o in cell.get("outputs", []) if o not in found]
            result = None
            if found:
                result = read_observation(found[-1]["data"][MIME])
            elif errors:
                result = {"error": f"{errors[-1].get('ename')}: {str(errors[-1].get('evalue'))[:300]}"}
            emit({"probe": probes[cell_index]["grade_id"], "result": result})

    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
        record_timing=False, on_cell_execute=on_start, on_cell_executed=on_done,
        resources={"metadata": {"path": os.getcwd()}},
        extra_arguments=["--IPKernelApp.capture_fd_output=False",
                         "--IPKernelApp.exec_lines=['import deepngrams_probes']"])
    try:
        client.execute()
    except DeadKernelError:
        cell = max(started) if started else None
        code = None
        try:
            code = client.km.provisioner.process.poll() if client.km and client.km.provisioner else None
        except Exception:  # noqa: BLE001 - only a detail of the report
            pass
        emit({"event": "kernel died", "cell": cell, "returncode": code})
    except Exception as e:  # noqa: BLE001 - any other failure of the run is reported, not raised
        emit({"event": "harness error", "error": f"{type(e).__name__}: {str(e)[:300]}"})
    emit({"notebook": nb})
    report.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
