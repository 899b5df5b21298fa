"""Run one submission's notebook in a bubblewrap sandbox and collect what came out.

The sandbox sees the operating system and the Python environment read-only, the bundle's
student files read-only (the corpus, the weights and model card: what the notebook
legitimately reads, and a w1_unittest.py without the tests' models) at /bundle, and a scratch folder of its own in memory,
/bundle/work (its working directory), gone when it ends. Nothing else of the course: not source/, not the gradebook, not
other submissions, not the reference values. It has no network (its own empty network
namespace), its own process tree, and runs as an unprivileged user of its own (one per
worker, so the process limit counts only its processes) with no capabilities.

Limits: wall time (the whole sandbox is killed), time per cell (the kernel is interrupted),
CPU time, address space (memory), processes, file size. Each hit becomes a reason.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import ROOT

PACKAGE = Path(__file__).resolve().parent
# What the notebook may read, at /bundle: the corpus, the weights and the model card; and, as
# w1_unittest.py, a stand-in without the tests' models and reference values (graded_w1_unittest.py).
STUDENT_FILES = ("data/shakespeare_data.txt", "model/grulm.weights.h5", "model/model_card.json")
GRADED_UNITTEST = PACKAGE / "graded_w1_unittest.py"
BUNDLE = "/bundle"  # where the sandbox sees the bundle's student files
FIRST_UID = 61000  # sandbox users: FIRST_UID + worker slot


@dataclass(frozen=True)
class Limits:
    """What one submission may use. The defaults suit the course notebook on a slow CPU."""

    cell_timeout: float = 120.0  # seconds a cell may run before it is interrupted
    wall_timeout: float = 600.0  # seconds for the whole notebook, then the sandbox is killed
    memory_gib: float = 6.0  # address space of each process (TensorFlow reserves ~2 GiB)
    processes: int = 512  # processes and threads of the sandbox user
    output_mib: float = 64.0  # what the notebook may send back, outputs included
    file_mib: float = 512.0  # largest file it may write
    scratch_mib: float = 256.0  # size of its working folder and of its /tmp (both in memory)


@dataclass
class RunResult:
    """What came out of the sandbox; every field is untrusted data except the flags we set."""

    probes: dict = field(default_factory=dict)  # grade_id -> observations
    events: list = field(default_factory=list)  # time limit, memory limit, kernel died ...
    notebook: dict | None = None  # the executed notebook
    returncode: int | None = None
    wall_timed_out: bool = False
    output_cut: bool = False
    seconds: float = 0.0
    stderr: str = ""


def available() -> str | None:
    """Why sandboxes cannot run here, or None if they can."""
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (Debian: apt-get install bubblewrap)"
    if os.geteuid() != 0:
        return "the grader must run as root to give each sandbox its own user and mounts"
    return None


def _dirs_for(path: str, made: set[str]) -> list[str]:
    """bwrap arguments creating the parents of `path` world-readable (bwrap makes them 0700)."""
    args = []
    parts = Path(path).parts
    for i in range(2, len(parts)):
        parent = str(Path(*parts[:i]))
        if parent not in made:
            made.add(parent)
            args += ["--perms", "0755", "--dir", parent]
    return args


def _thread_env(threads: int) -> dict:
    """Threads of the kernel's numerical libraries: the machine's cores shared among the workers."""
    return {name: str(threads) for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}


def bwrap_args(uid: int, limits: Limits, bundle: Path = ROOT, threads: int = 1) -> list[str]:
    """The bubblewrap command line for one sandbox (the harness's command line follows it)."""
    scratch = str(int(limits.scratch_mib * 2**20))
    args = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "sandbox",
            # /tmp first: the environment may live below it (a clone in /tmp), bound on top of it.
            "--perms", "1777", "--size", scratch, "--tmpfs", "/tmp"]
    made: set[str] = {"/tmp"}
    for system in ("/usr", "/etc"):
        args += ["--ro-bind", system, system]
    for link in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        if os.path.islink(f"/{link}"):
            args += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        elif os.path.isdir(f"/{link}"):
            args += ["--ro-bind", f"/{link}", f"/{link}"]
    # Python itself and the virtual environment (wherever they live), read-only.
    for prefix in sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}):
        if not prefix.startswith(("/usr/", "/etc/")):
            args += _dirs_for(prefix, made) + ["--ro-bind", prefix, prefix]
    args += ["--perms", "0755", "--dir", BUNDLE]
    for name in STUDENT_FILES:
        target = f"{BUNDLE}/{name}"
        args += _dirs_for(target, made | {BUNDLE}) + ["--ro-bind", str(bundle / name), target]
    args += ["--ro-bind", str(GRADED_UNITTEST), f"{BUNDLE}/w1_unittest.py"]
    args += ["--perms", "0755", "--dir", "/grader",
             "--ro-bind", str(PACKAGE / "harness.py"), "/grader/harness.py",
             "--ro-bind", str(PACKAGE / "probes.py"), "/grader/deepngrams_probes.py",
             "--perms", "1777", "--size", scratch, "--tmpfs", f"{BUNDLE}/work",
             "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/run",
             "--chdir", f"{BUNDLE}/work",
             "--setenv", "HOME", "/tmp", "--setenv", "PYTHONPATH", "/grader",
             "--setenv", "DEEPNGRAMS_BUNDLE", BUNDLE, "--setenv", "NBGRADER_EXECUTION", "autograde",
             "--setenv", "IPYTHONDIR", "/tmp/ipython", "--setenv", "JUPYTER_RUNTIME_DIR", "/tmp/jupyter",
             "--setenv", "JUPYTER_DATA_DIR", "/tmp/jupyter-data", "--setenv", "MPLCONFIGDIR", "/tmp/matplotlib",
             "--setenv", "TF_CPP_MIN_LOG_LEVEL", "3", "--setenv", "PYTHONHASHSEED", "0",
             "--setenv", "PATH", f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin",
             *[a for name, value in _thread_env(threads).items() for a in ("--setenv", name, value)],
             "--unsetenv", "JUPYTER_CONFIG_DIR", "--unsetenv", "JUPYTER_PATH",
             "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
             "--bounding-set=-all", "--no-new-privs", "--"]
    return args


def _limit(limits: Limits):
    """Resource limits for the sandbox's processes, set just before bubblewrap starts."""
    def apply():
        gib = int(limits.memory_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (gib, gib))
        cpu = int(limits.wall_timeout * 2) + 10  # two cores for the whole wall time, then SIGXCPU
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
        size = int(limits.file_mib * 2**20)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.umask(0o022)
    return apply


def run(job: dict, scratch: Path, slot: int, limits: Limits, *, sandboxed: bool = True,
        bundle: Path = ROOT, threads: int = 1) -> RunResult:
    """Run the harness on `job` (notebook, probes, cell timeout) in a fresh sandbox.

    `sandboxed=False` runs the same harness as a plain child process in `scratch`, with the
    same limits but none of the isolation: only for measuring the sandbox's cost (`make bench`).
    """
    python = sys.executable
    if sandboxed:
        argv = bwrap_args(FIRST_UID + slot, limits, bundle, threads) + [python, "/grader/harness.py"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        scratch = Path("/")
    else:
        scratch.mkdir(parents=True, exist_ok=True)
        argv = [python, str(PACKAGE / "harness.py")]
        env = dict(os.environ, PYTHONPATH=str(scratch / ".probes"), DEEPNGRAMS_BUNDLE=str(bundle),
                   NBGRADER_EXECUTION="autograde", TF_CPP_MIN_LOG_LEVEL="3", **_thread_env(threads))
        (scratch / ".probes").mkdir(exist_ok=True)
        shutil.copy(PACKAGE / "probes.py", scratch / ".probes" / "deepngrams_probes.py")
    payload = json.dumps(job).encode()
    read_end, write_end = os.pipe()
    result = RunResult()
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            pass_fds=(3, write_end), env=env, cwd=scratch, start_new_session=True,
                            preexec_fn=_fd3(write_end, _limit(limits)))
    os.close(write_end)
    lines: list[bytes] = []
    cap = int(limits.output_mib * 2**20)

    def collect():
        total = 0
        with os.fdopen(read_end, "rb") as f:
            for line in f:
                total += len(line)
                if total > cap:
                    result.output_cut = True
                    continue  # keep draining, so the harness never blocks
                lines.append(line)

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    err = bytearray()

    def drain_stderr():
        for chunk in iter(lambda: proc.stderr.read(65536), b""):
            if len(err) < 65536:
                err.extend(chunk[:65536 - len(err)])

    err_reader = threading.Thread(target=drain_stderr, daemon=True)
    err_reader.start()
    try:
        proc.stdin.write(payload)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    try:
        proc.wait(timeout=limits.wall_timeout)
    except subprocess.TimeoutExpired:
        result.wall_timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    reader.join(timeout=30)
    err_reader.join(timeout=5)
    result.returncode = proc.returncode
    result.seconds = time.monotonic() - start
    result.stderr = err.decode("utf-8", "replace")
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # a line too deep to parse costs what it holds, no more
            continue
        if not isinstance(record, dict):
            continue
        if "probe" in record:
            result.probes[str(record["probe"])] = record.get("result")
        elif "event" in record:
            result.events.append(record)
        elif "notebook" in record and isinstance(record["notebook"], dict):
            result.notebook = record["notebook"]
    return result


def _fd3(fd: int, then):
    """Make `fd` the child's descriptor 3 (where the harness writes), then apply the limits."""
    def setup():
        if fd != 3:
            os.dup2(fd, 3)
            os.close(fd)
        then()
    return setup
