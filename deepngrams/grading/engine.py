"""Where submissions are graded: Dask tasks, on a local cluster by default or on a cluster's scheduler.

A task takes bytes and gives bytes: in, one submission's checked files, the key of that student's
cases (the course's grading key never leaves the client) and the course (its configuration,
source notebook and gradebook template, sent once as a task of their own, addressed by their
content, so each worker fetches them once); out, the run's report, the private gradebook, the
graded notebook and the feedback. No file system is shared: the client (the
grader's own process) reads the submissions and is the only writer of the course. Student code
runs only in the sandbox that a task starts on its worker, never in a worker process.

A task that fails for the machinery (its worker lost, an error of the grader) is retried, and if
it keeps failing the submission is reported "not graded" and left for the next run; a student's
crash is a normal result with its reason.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

from deepngrams.config import ASSIGNMENT, ROOT
from deepngrams.grading.sandbox import Limits

RETRIES = 2  # automatic reruns of a task that raised (a worker lost mid-task is rerun by the scheduler too)
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


# ----------------------------------------------------------------------------------------
# The client's side: what goes out, what comes back
# ----------------------------------------------------------------------------------------
def course_blob(course: Path, template_db: Path) -> dict:
    """What every task needs of the course, as bytes: its configuration and source folder and the
    gradebook template (the assignment recorded)."""
    files = {"nbgrader_config.py": (course / "nbgrader_config.py").read_bytes()}
    source = course / "source" / ASSIGNMENT
    for path in sorted(source.rglob("*")):
        if path.is_file() and not path.is_symlink():
            files[str(Path("source", ASSIGNMENT, path.relative_to(source)))] = path.read_bytes()
    blob = {"files": files, "template_db": template_db.read_bytes()}
    blob["digest"] = _digest(blob)
    return blob


def course_future(client, blob: dict):
    """The course for every grading task to depend on: the result of a task, not scattered data.
    If every worker holding it is lost, the scheduler computes it again; scattered data would be
    gone for good, and every submission still waiting on it would fail with it."""
    return client.submit(_the_course, blob, key=f"deepngrams-course-{blob['digest']}", pure=False)


def _the_course(blob: dict) -> dict:
    return blob


def _digest(blob: dict) -> str:
    h = hashlib.sha256()
    for name, data in sorted(blob["files"].items()):
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    h.update(hashlib.sha256(blob["template_db"]).digest())
    return h.hexdigest()


def unpack_result(result: dict, into: Path) -> dict:
    """A task's result written as the private course the gradebook merge reads; returns its report."""
    private = into / "course"
    inner = result["report"]["internal"]
    private.mkdir(parents=True)
    for kind in ("autograded", "feedback"):
        for name, data in result[kind].items():
            path = private / kind / inner / _safe_relative(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return dict(result["report"], private=str(private))


def _safe_relative(name: str) -> Path:
    """A relative path from a worker's result that stays inside its folder."""
    path = Path(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"a result file has an unusable name: {name!r}")
    return path


# ----------------------------------------------------------------------------------------
# The worker's side
# ----------------------------------------------------------------------------------------
_COURSES: dict[str, Path] = {}  # the course blobs this worker has written out, by digest
_COURSES_LOCK = threading.Lock()


def _course_here(blob: dict) -> Path:
    """The course of `blob` as a folder on this worker (written once per worker and course)."""
    with _COURSES_LOCK:
        if blob["digest"] in _COURSES and _COURSES[blob["digest"]].is_dir():
            return _COURSES[blob["digest"]]
        folder = Path(tempfile.mkdtemp(prefix="deepngrams-course-", dir=_scratch_root()))
        course = folder / "course"
        for name, data in blob["files"].items():
            path = course / _safe_relative(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (folder / "gradebook.db").write_bytes(blob["template_db"])
        _COURSES[blob["digest"]] = folder
        return folder


def _scratch_root() -> str | None:
    """The worker's own folder, which Dask removes when the worker ends (or, after a crash, when the
    next worker starts). None outside a worker."""
    try:
        from distributed import get_worker
        return get_worker().local_directory
    except (ImportError, ValueError):
        return None


def grade_task(student: str, files: dict[str, bytes], student_secret: bytes, blob: dict, limits: dict,
               sandboxed: bool, threads: int) -> dict:
    """One submission, graded on this worker: bytes in, bytes out (see the module's doc)."""
    from deepngrams.grading.submission import autograde
    os.environ.setdefault("DEEPNGRAMS_BUNDLE", str(ROOT))
    folder = _course_here(blob)
    work = Path(tempfile.mkdtemp(prefix="deepngrams-submission-", dir=_scratch_root()))
    try:
        report = autograde(folder / "course", student, files, folder / "gradebook.db", student_secret, 0,
                           Limits(**limits), work, sandboxed, threads)
        private = Path(report.pop("private"))
        result = {"report": report}
        for kind in ("autograded", "feedback"):
            top = private / kind / report["internal"]
            result[kind] = {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*"))
                            if p.is_file() and not p.is_symlink()} if top.is_dir() else {}
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------------------
# Clusters
# ----------------------------------------------------------------------------------------
def is_local(address: str) -> bool:
    """Whether a scheduler address names this machine (a loopback address, or an in-process one)."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme == "inproc":
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def scheduler_problem(address: str, tls: bool, insecure: bool) -> str:
    """Why the grader refuses this scheduler ("" if it does not): student work and the keys of the
    students' cases cross the network, so a scheduler on another machine needs TLS unless the user says --insecure."""
    scheme = urlsplit(address).scheme if "://" in address else "tcp"
    if scheme not in ("tcp", "tls", "inproc", "ucx", "ws", "wss"):
        return f"the scheduler address {address!r} is not a Dask address (tcp://HOST:PORT or tls://HOST:PORT)"
    if is_local(address) or insecure or (scheme in ("tls", "wss") and tls):
        return ""
    if scheme in ("tls", "wss"):
        return (f"the scheduler {address} speaks TLS: give the grader its certificates (--tls-ca-file, --tls-cert, "
                f"--tls-key)")
    return (f"the scheduler {address} is on another machine and its traffic would be unencrypted (submissions "
            f"and the keys of their hidden cases cross the network): start it with TLS and use tls://, with "
            f"--tls-ca-file, --tls-cert and --tls-key, or say --insecure on a network you trust")


def security(ca_file: str | None, cert: str | None, key: str | None):
    """Dask's TLS settings from the three files, or None without them."""
    if not (ca_file or cert or key):
        return None
    missing = [flag for flag, value in (("--tls-ca-file", ca_file), ("--tls-cert", cert), ("--tls-key", key))
               if not value]
    if missing:
        raise ValueError(f"TLS needs the CA file, the certificate and its key: {', '.join(missing)} missing")
    from distributed.security import Security
    return Security(tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key, require_encryption=True)


LOOPBACK_ANY_PORT = "127.0.0.1:0"
STEALING_INTERVAL = "100ms"  # how often the local cluster's scheduler moves waiting tasks to idle workers
MONITOR_INTERVAL = "5s"  # how often the local cluster's servers sample the machine (Dask: 500 ms)


def client_for(scheduler: str | None, workers: int, tls=None):
    """A Dask client: of the scheduler at `scheduler`, or of a local cluster of `workers` workers
    (one task each; the client closes the cluster when it closes)."""
    import dask
    from distributed import Client, LocalCluster
    if scheduler:
        return Client(scheduler, security=tls, timeout="30s")
    # The local workers are threads of this process: a task only waits on nbgrader's host process
    # (grading.nbgrader_host), where the notebook's grading runs, so a worker process of its own
    # would add its start-up and nothing else. The hosts outlive the cluster, for this process's next
    # batch. Scheduler and workers talk in memory (inproc://): no port another user of the machine
    # could send them work on. Dask still starts an HTTP server for the scheduler and each worker: here
    # on a free port of 127.0.0.1 (not Dask's 8787, which another cluster may hold; a worker's would
    # listen on every interface) with no pages at all (its health, metrics and worker listings are
    # the grading's to keep). The grader's own limits govern memory (the sandbox's watchdog): Dask's
    # would pause or kill workers by its own measure of them. Every task needs the course, which at
    # first one worker holds: the scheduler sends each task there, and the other workers get theirs
    # by stealing, which Dask does once a second by default: more often here, so no worker waits long.
    # What only the dashboard would show is not gathered: a statistical profile of every worker's
    # threads (100 samples a second, in this process beside the grader's own threads) and the
    # system monitor's samples of CPU, memory, disk and network twice a second for each server.
    with dask.config.set({"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": [],
                          "distributed.scheduler.work-stealing-interval": STEALING_INTERVAL,
                          "distributed.worker.profile.enabled": False,
                          "distributed.admin.system-monitor.interval": MONITOR_INTERVAL}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=False, memory_limit=0,
                               dashboard_address=None, worker_dashboard_address=LOOPBACK_ANY_PORT,
                               scheduler_kwargs={"dashboard_address": LOOPBACK_ANY_PORT}, silence_logs=40)
    client = Client(cluster)
    client._deepngrams_cluster = cluster  # closed with the client (see close)
    return client


def close(client) -> None:
    cluster = getattr(client, "_deepngrams_cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def window(client) -> int:
    """How many submissions are in flight at once: enough to keep every worker busy."""
    return max(4, 2 * sum(client.nthreads().values()))


def failure(error: BaseException) -> str:
    """A machinery failure, in words for the report."""
    from distributed.scheduler import KilledWorker
    if isinstance(error, KilledWorker):
        return "the workers that ran it were lost (a re-run grades it)"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1][:300] if text else ''} (a re-run grades it)"


def submit(client, student: str, files: dict[str, bytes], student_secret: bytes, blob_future, limits: Limits,
           sandboxed: bool, threads: int):
    """One submission's task; its key names the student and the files, so a client that restarts
    and submits the same work again meets the same task."""
    digest = hashlib.sha256(student.encode("utf-8", "surrogateescape") + b"\0" + b"".join(
        name.encode() + b"\0" + hashlib.sha256(data).digest() for name, data in sorted(files.items()))).hexdigest()
    return client.submit(grade_task, student, files, student_secret, blob_future, asdict(limits), sandboxed, threads,
                         key=f"grade-{digest[:32]}", retries=RETRIES, pure=False)


# ----------------------------------------------------------------------------------------
# Can this machine grade?
# ----------------------------------------------------------------------------------------
def code_version(bundle: Path = ROOT) -> str:
    """The grading code and what it reads of the bundle, as one hash: the client and every worker
    must show the same (a worker with other code would give other verdicts)."""
    h = hashlib.sha256()
    files = sorted((bundle / "deepngrams").rglob("*.py")) + [bundle / "w1_unittest.py", bundle / "requirements.txt"] \
        + sorted((bundle / "model").glob("*")) + sorted((bundle / "data").glob("*.txt"))
    for path in files:
        if path.is_file():
            h.update(str(path.relative_to(bundle)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def worker_problems() -> list[str]:
    """What keeps this machine from grading ([] when nothing does)."""
    from deepngrams.grading import sandbox
    problems = []
    if problem := sandbox.available():
        problems.append(problem)
    for name in ("w1_unittest.py", "model", "data"):
        if not (ROOT / name).exists():
            problems.append(f"the bundle {ROOT} has no {name}: install the whole bundle on the worker")
    try:
        import nbgrader  # noqa: F401
    except ImportError as e:
        problems.append(f"nbgrader cannot be imported ({e}): run the worker from the bundle's environment (.venv)")
    return problems


def worker_report() -> dict:
    import platform
    import socket
    from deepngrams.grading import sandbox
    problems = worker_problems()
    notes = [note] if (note := sandbox.cpu_sharing_problem()) else []
    return {"host": socket.gethostname(), "python": platform.python_version(), "bundle": str(ROOT),
            "code": code_version(), "sandbox": "" if problems else sandbox.mode(), "problems": problems,
            "notes": notes}


def worker_check_main(argv: list[str] | None = None) -> int:
    """python -m deepngrams worker-check [--scheduler ADDRESS]: can this machine (or each worker) grade?"""
    import argparse
    p = argparse.ArgumentParser(prog="python -m deepngrams worker-check",
                                description="Say whether this machine, or every worker of a Dask cluster, can grade.")
    p.add_argument("--scheduler", default=os.environ.get(SCHEDULER_ENV) or None, metavar="ADDRESS",
                   help="check every worker of this cluster instead of this machine")
    p.add_argument("--tls-ca-file")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    args = p.parse_args(argv)
    mine = code_version()
    if args.scheduler:
        client = client_for(args.scheduler, 0, security(args.tls_ca_file, args.tls_cert, args.tls_key))
        try:
            reports = client.run(worker_report)
        finally:
            close(client)
    else:
        reports = {"this machine": worker_report()}
    bad = 0
    for where, r in sorted(reports.items()):
        problems = list(r["problems"])
        if r["code"] != mine:
            problems.append(f"its grading code ({r['code']}) differs from this machine's ({mine}): install the same "
                            f"bundle")
        bad += bool(problems)
        state = "can grade" if not problems else "cannot grade"
        print(f"{where} ({r['host']}, Python {r['python']}, {r['bundle']}): {state}"
              + (f", sandbox {r['sandbox']}" if not problems else ""))
        for problem in problems:
            print(f"  - {problem}")
        for note in r.get("notes", []):  # it can grade, but should know this
            print(f"  note: {note}")
    return 1 if bad else 0
