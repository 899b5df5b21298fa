"""Run notebooks in sandboxes as an ordinary user (nobody): the rootless mode's test driver.

The tests (root) call `as_nobody(request)`, which runs this file as nobody. As a script it
reads the request on stdin, {"runs": [{"cells": [...], "slot": 0, "limits": {...}, "factory": false,
"probes": {...}}, ...], "side_by_side": false, "refused": [...] (optional, replaces sandbox.REFUSED)},
runs each notebook with `sandbox.run` (all at once when side_by_side, else one after the other;
"factory": its kernel forked by a kernel factory) and prints {"mode", "available", "euid",
"results"}: each result holds the RunResult's fields, the text each cell printed ("texts") and
the processes of the user left in other PID namespaces once that run returned ("left").
"""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

NOBODY = 65534


def _closed_ancestor(path: str) -> str | None:
    """The highest folder above `path` that others may not enter, if any."""
    from deepngrams.course.exchange import closed_ancestor
    found = closed_ancestor(Path(path))
    return None if found is None else str(found)


def as_nobody(request: dict, timeout: float = 300, uid: int = NOBODY) -> dict:
    """Run this file as nobody (or as the user `uid`, with no name: tests that run at the same time
    and count the processes their user left use users of their own) on `request`, from root;
    returns what it printed.

    Where the interpreter lives in a folder nobody may not enter (a Python under /root), the
    runner gets a private mount namespace in which that folder is an empty, open one holding
    just the interpreter's installation.
    """
    from deepngrams.config import ROOT
    home = tempfile.mkdtemp()
    os.chmod(home, 0o777)
    env = {"PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin", "HOME": home, "PYTHONPATH": str(ROOT),
           "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"}
    command = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable, __file__]
    base, stash = os.path.realpath(sys.base_prefix), None
    if (closed := _closed_ancestor(os.path.realpath(sys.executable))) is not None:
        stash = tempfile.mkdtemp()
        script = (f"mount --bind {base} {stash} && mount -t tmpfs -o mode=0755 tmpfs {closed} && "
                  f"mkdir -p {base} && mount --bind {stash} {base} && exec \"$@\"")
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *command]
    try:
        done = subprocess.run(command, input=json.dumps(request), capture_output=True, text=True, cwd=home,
                              env=env, timeout=timeout)
    finally:  # root made both folders: they go, whatever nobody left in them
        shutil.rmtree(home, ignore_errors=True)
        if stash is not None:
            shutil.rmtree(stash, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _left() -> list[int]:
    """Processes of this user in a PID namespace other than ours: what a sandbox left behind."""
    own, left = os.readlink("/proc/self/ns/pid"), []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.stat(f"/proc/{name}").st_uid == os.geteuid() \
                    and os.readlink(f"/proc/{name}/ns/pid") != own:
                left.append(int(name))
        except OSError:
            continue
    return left


def wait_ready(factory, timeout: float = 300) -> None:
    """Until `factory` has imported TensorFlow (it then removes its private folder): the limits of the
    sandbox that follows then time that sandbox alone, not the import on a loaded machine."""
    assert factory is not None, "the kernel factory did not start"
    deadline = time.monotonic() + timeout
    while os.path.exists(factory.home):
        assert factory.proc.poll() is None and time.monotonic() < deadline, "the kernel factory never got ready"
        time.sleep(0.1)
    # A factory that ends while it imports removes its folder too.
    assert factory.proc.poll() is None, "the kernel factory ended before it was ready"


def run_one(spec: dict, scratch: Path) -> dict:
    from nbformat.v4 import new_code_cell, new_notebook
    from deepngrams.grading import sandbox
    nb = new_notebook(cells=[new_code_cell(s) for s in spec["cells"]])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    limits = sandbox.Limits(**spec.get("limits", {}))
    if spec.get("factory"):  # its kernel forked by a kernel factory (else started in the sandbox)
        wait_ready(sandbox.start_kernel_factory(1))
    else:
        sandbox.stop_kernel_factories()
    result = sandbox.run({"notebook": nb, "probes": spec.get("probes", {}), "cell_timeout": limits.cell_timeout},
                         scratch, spec.get("slot", 0), limits)
    cells = (result.notebook or {}).get("cells", [])
    out = dataclasses.asdict(result)
    out["notebook"] = result.notebook is not None
    out["texts"] = ["".join(o.get("text", "") + str(o.get("evalue", "")) + str(o.get("data", {}).get("text/plain", ""))
                            for o in c.get("outputs", [])) for c in cells]
    out["left"] = _left()
    return out


def main() -> None:
    # As the product's grading child does: adopt each sandbox's init, which outlives bubblewrap, so
    # that sandbox.run reaps it as soon as it ends (the init of some machines reaps only every second).
    from deepngrams.grading import nbgrader_host
    nbgrader_host.die_with_parent(os.getppid(), b"rootless-runner", subreaper=True)
    from deepngrams.grading import sandbox
    request = json.load(sys.stdin)
    if "refused" in request:
        sandbox.REFUSED = tuple(request["refused"])
    scratch = Path(tempfile.mkdtemp())
    runs = request["runs"]
    results: list = [None] * len(runs)

    def task(i: int) -> None:
        results[i] = run_one(runs[i], scratch / str(i))

    try:
        if request.get("side_by_side"):
            threads = [threading.Thread(target=task, args=(i,)) for i in range(len(runs))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        else:
            for i in range(len(runs)):
                task(i)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({"mode": sandbox.mode(), "available": sandbox.available(), "euid": os.geteuid(),
                      "results": results}))


if __name__ == "__main__":
    main()
