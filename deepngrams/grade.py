"""Grade every submission of a course: in parallel, sandboxed, with the grader's own verdicts.

    python -m deepngrams grade [--course grader] [--workers 2] [--force] [--student ID ...]

It keeps nbgrader's course layout, gradebook and feedback, and runs nbgrader's own autograde
pipeline for each submission, with one step swapped: instead of running the notebook in the
grader's process, `SandboxedExecute` runs it in a sandbox (deepngrams.sandbox) with every
graded test cell replaced by a probe, and the grader judges the probes' observations
(deepngrams.checks). So:

1. every file is checked first (JSON, nbformat, kernel, copied or deleted graded cells):
   what nbgrader can repair is repaired and noted, the rest gets a reason and zero points;
2. each submission is autograded in a private copy of the course (its own gradebook copy),
   several at a time, and the course's gradebook is then updated for that student alone,
   by writing a new file and renaming it over the old one;
3. a submission already graded (same files, same grader) is skipped unless `--force`;
4. the report: a table per exercise with time and reason, `report.csv`, nbgrader's
   `grades.csv` and HTML feedback.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import copy
import csv
import errno
import hashlib
import html
import io
import json
import os
import queue
import secrets
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .atomic import _umask, atomic_path, write_bytes
from .config import ROOT
from .nbgrader_steps import _nbgrader, harmless_file
from .sandbox import Limits, RunResult, mode as sandbox_mode
from .untrusted import clean_feedback_html, csv_cell, printable

ASSIGNMENT = "deep_ngrams"
COURSE_DIR = ROOT / "grader"
MAX_NOTEBOOK_BYTES = 20 * 2**20
MAX_CELLS = 2000  # the assignment has 55; nbgrader's steps slow down with every cell
WORKER_MARGIN_S = 300.0  # nbgrader's own steps around the sandbox (autograde, feedback), beyond its wall limit
PROBE_CELL = "__import__('sys').modules['deepngrams_probes'].run({probe!r}, globals(), {inputs!r})"
UNKNOWN_CELL = 'raise RuntimeError("This graded cell is not known to the grader, so it earns nothing.")'
PASSED = "All tests passed (checked by the grader).\n"
SAFE_MIME = ("text/plain", "image/png", "image/jpeg")
NOT_GRADED_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>deep_ngrams: not graded</title></head>
<body><h1>deep_ngrams: your submission could not be graded</h1>
<p>Student: {student}</p><p>Reason: {reason}</p><p>Every exercise scores 0. Fix this and hand it in again.</p>
</body></html>
"""
GRADES_COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                  "raw_score", "late_submission_penalty", "score", "max_score"]  # nbgrader's CsvExportPlugin


@dataclass
class Outcome:
    """One student's result."""

    student: str
    scores: dict = field(default_factory=dict)  # exercise -> (points, out of)
    reason: str = ""  # why it could not run normally ("" when it did)
    notes: list = field(default_factory=list)  # what was repaired
    seconds: float = 0.0
    skipped: bool = False

    @property
    def total(self) -> tuple[float, float]:
        return (sum(s for s, _ in self.scores.values()), sum(m for _, m in self.scores.values()))


# ----------------------------------------------------------------------------------------
# 1. Preflight: can this file be graded, and what needs repair?
# ----------------------------------------------------------------------------------------
def read_handed_in(path: Path, limit: int = MAX_NOTEBOOK_BYTES) -> bytes:
    """The bytes of a file a student handed in. Links, folders and devices are refused (ValueError
    with the reason): the grader runs as root, and a link could point at the solutions."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise ValueError("a link, not a file: hand in the notebook itself" if e.errno == errno.ELOOP
                         else f"cannot be read ({e.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ValueError("not a plain file (a folder?): hand in the notebook itself")
    with os.fdopen(fd, "rb") as f:
        if info.st_size > limit:
            raise ValueError(f"file too large ({info.st_size / 2**20:.0f} MiB, at most {limit // 2**20} MiB)")
        return f.read(limit + 1)


def preflight(path: Path, graded_ids: list[str]) -> tuple[str, list[str]]:
    """(reason it cannot be graded or "", notes on what nbgrader will repair)."""
    import nbformat
    try:
        raw = harmless_file(read_handed_in(path))
    except ValueError as e:
        return str(e), []
    if not raw:
        return "empty file: nothing was handed in", []
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        detail = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:100]
        return f"not JSON, so not a notebook ({detail}); was it saved from Jupyter?", []
    if not isinstance(data, dict) or "cells" not in data and "worksheets" not in data:
        return "valid JSON but not a notebook (no cells): hand in the .ipynb file itself", []
    version = data.get("nbformat")
    if version != 4:
        return f"nbformat {repr(version)[:20]} is not supported: open it in JupyterLab and save it (nbformat 4)", []
    cells = data.get("cells")
    if isinstance(cells, list) and len(cells) > MAX_CELLS:
        return (f"too many cells ({len(cells)}, at most {MAX_CELLS}): hand in the assignment's notebook "
                f"with your answers"), []
    try:
        nb = nbformat.reads(json.dumps(data), as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # noqa: BLE001 - nbformat raises several types for broken files
        return f"not a valid nbformat 4 notebook ({type(e).__name__}: {str(e).splitlines()[0][:100]})", []
    notes = []
    kernel = nb.metadata.get("kernelspec", {})
    if kernel.get("language", "python") != "python" or "python" not in str(kernel.get("name", "python3")):
        notes.append(f"kernel {kernel.get('name')!r} replaced by the course's python3")
    ids = [_nbgrader(c).get("grade_id") for c in nb.cells]
    counts = collections.Counter(i for i in ids if isinstance(i, str) and i)  # linear: a notebook may have many cells
    for gid in sorted(g for g, n in counts.items() if n > 1):
        notes.append(f"cell {gid} appears {counts[gid]} times: only the first counts")
    for gid in graded_ids:
        if gid not in counts:
            notes.append(f"deleted cell {gid} put back")
    for cell in nb.cells:
        gid = _nbgrader(cell).get("grade_id")
        if _nbgrader(cell).get("grade") and gid not in graded_ids:
            notes.append(f"graded cell {gid} is not part of the assignment: it counts for nothing")
    return "", notes


# ----------------------------------------------------------------------------------------
# 2. In the sandbox: the notebook to run, and what comes back
# ----------------------------------------------------------------------------------------
def is_test_cell(cell) -> bool:
    return cell.cell_type == "code" and bool(_nbgrader(cell).get("grade")) and not _nbgrader(cell).get("solution")


def build_job(nb, prepared: dict, cell_timeout: float) -> dict:
    """The notebook the sandbox runs: each graded test cell becomes a probe with its inputs."""
    from .nbgrader_steps import NOT_RUN
    nb = copy.deepcopy(nb)
    probes = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if not is_test_cell(cell) or cell.source == NOT_RUN:
            continue
        check = prepared.get(_nbgrader(cell).get("grade_id"))
        if check is None:
            cell.source = UNKNOWN_CELL
            continue
        cell.source = PROBE_CELL.format(probe=check["probe"], inputs=json.dumps(check["inputs"]))
        probes[str(i)] = {"grade_id": _nbgrader(cell)["grade_id"]}
    return {"notebook": nb, "probes": probes, "cell_timeout": cell_timeout}


def _safe_outputs(outputs) -> list:
    """Outputs from the sandbox, kept only where they are well-formed and inert (no HTML or script)."""
    import nbformat
    kept = []
    for out in outputs if isinstance(outputs, list) else []:
        if not isinstance(out, dict):
            continue
        kind = out.get("output_type")
        if kind == "stream" and isinstance(out.get("text"), str):
            kept.append(nbformat.v4.new_output("stream", name="stderr" if out.get("name") == "stderr" else "stdout",
                                               text=out["text"]))
        elif kind == "error":
            tb = out.get("traceback")
            kept.append(nbformat.v4.new_output("error", ename=str(out.get("ename"))[:200],
                                               evalue=str(out.get("evalue"))[:2000],
                                               traceback=[str(t)[:2000] for t in tb[:50]] if isinstance(tb, list) else []))
        elif kind in ("execute_result", "display_data") and isinstance(out.get("data"), dict):
            data = {k: v for k, v in out["data"].items() if k in SAFE_MIME and isinstance(v, (str, list))}
            if data:
                kept.append(nbformat.v4.new_output("display_data", data=data))
    return kept


def reason_of(result: RunResult, limits: Limits) -> str:
    """The first thing that stopped the notebook from running normally, in words ("" if nothing)."""
    for event in result.events:
        kind = event.get("event")
        cell = event.get("cell")
        where = f" in cell {cell}" if isinstance(cell, int) else ""
        if kind == "time limit":
            return f"time limit: a cell ran over {limits.cell_timeout:g} s and was interrupted{where}"
        if kind == "memory limit" and event.get("scope") == "sandbox":
            return (f"memory limit: the notebook's processes together used more than {limits.memory_gib:g} GiB "
                    f"and the sandbox was stopped; the cells after that did not run")
        if kind == "memory limit":
            return f"memory limit: a process ran out of the {limits.memory_gib:g} GiB it may use{where}"
        if kind == "process limit":
            return f"process limit: the code started more than {limits.processes} processes{where}"
        if kind == "kernel died":
            code = event.get("returncode")
            how = {-9: "killed", -6: "aborted", -11: "a crash (segmentation fault)", -24: "its CPU time limit"}.get(
                code, f"exit status {code}" if code is not None else "an unknown cause")
            return f"kernel died{where} ({how}); the cells after it did not run"
        if kind == "harness error":
            return f"the notebook could not be run: {str(event.get('error'))[:200]}"
    if result.wall_timed_out:
        return f"time limit: the notebook ran over {limits.wall_timeout:g} s and was stopped"
    if result.output_cut:
        return f"output limit: the notebook printed over {limits.output_mib:g} MiB; the rest was dropped"
    if result.notebook is None:
        if "fork" in result.stderr.lower() or "resource temporarily unavailable" in result.stderr.lower():
            return f"process limit: more than {limits.processes} processes"
        return f"kernel died or the run was stopped (status {result.returncode}); nothing came back"
    return ""


def apply_verdicts(nb, prepared: dict, result: RunResult) -> list[str]:
    """Fill `nb` (the sanitized submission) with the run's outputs and the grader's verdicts.

    Returns the graded cells that failed. Only outputs of ordinary cells come from the
    sandbox; every graded test cell's output is written here, from `checks.judge`.
    """
    import nbformat
    from .checks import judge
    from .nbgrader_steps import NOT_RUN
    from nbconvert.preprocessors.sanitize import SanitizeHTML
    ran = result.notebook.get("cells") if isinstance(result.notebook, dict) else None
    failed = []
    sanitize = SanitizeHTML()
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":  # the feedback page shows markdown as HTML: no script from students
            sanitize.preprocess_cell(cell, {}, i)
            continue
        same = isinstance(ran, list) and i < len(ran) and isinstance(ran[i], dict)
        count = ran[i].get("execution_count") if same else None
        # The run's prompt numbers stay: failure messages point at "In [k], line n" of the student's code.
        cell.execution_count = count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else None
        if not is_test_cell(cell):
            cell.outputs = _safe_outputs(ran[i].get("outputs")) if same else []
            continue
        gid = _nbgrader(cell).get("grade_id")
        if cell.source == NOT_RUN:
            problems = ["Not graded: this test comes after the cell marked `# grade-up-to-here`."]
        elif gid not in prepared:
            problems = ["This graded cell is not known to the grader, so it earns nothing."]
        else:
            problems = judge(prepared[gid], result.probes.get(gid))
        if problems:
            failed.append(gid)
            cell.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="\n".join(problems),
                                                   traceback=["AssertionError: " + p for p in problems])]
        else:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=PASSED)]
    return failed


# ----------------------------------------------------------------------------------------
# 3. One submission: nbgrader's autograde in a private copy of the course
# ----------------------------------------------------------------------------------------
PRIVATE_CONFIG = '''\
# A private course for grading one submission (made by deepngrams.grade; removed afterwards).
from nbgrader.preprocessors import Execute
from deepngrams.nbgrader_steps import SandboxedExecute

c = get_config()  # noqa: F821
load_subconfig({main!r})  # noqa: F821 - the course's own configuration
c.CourseDirectory.root = {root!r}
c.Autograde.autograde_preprocessors = [SandboxedExecute if step is Execute else step
                                       for step in c.Autograde.autograde_preprocessors]
'''


def worker_main(argv: list[str]) -> int:
    """nbgrader's autograde, then its feedback, for one student of a private course (one process).

    Run as a child of the grader: `python -c "...worker_main..." <private course> <student>`.
    """
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader
    private, student = Path(argv[0]), argv[1]
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


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill a process, its process group and every process below it (the sandbox runs in a
    session of its own, so the group alone would miss it)."""
    import psutil
    try:
        below = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        below = []
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    for p in below:
        with contextlib.suppress(psutil.Error):
            p.kill()
    proc.wait()


def _worker(private: Path, student: str, env: dict, timeout: float | None = None) -> tuple[int | None, str]:
    """Run `worker_main` in a child process; past `timeout` seconds it is killed with everything
    it started, and the status is None."""
    code = "import sys; from deepngrams.grade import worker_main; sys.exit(worker_main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, str(private), student], cwd=private, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, errors="replace", start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        return None, f"nbgrader's steps ran over {timeout:g} s and were stopped"
    finally:
        if proc.poll() is None:
            _kill_tree(proc)
    return proc.returncode, err.strip()[-300:]


def internal_id(student: str) -> str:
    """The name a student is graded under inside the grader: nbgrader globs paths and builds file
    names from student ids, so a folder name with a comma, a glob bracket, a newline or 250 bytes
    must never reach it."""
    return "s" + hashlib.sha256(student.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def unusable_name(student: str) -> str:
    """Why a student folder's name cannot be used as a student id ("" if it can)."""
    try:
        student.encode("utf-8")
    except UnicodeEncodeError:
        return "the student folder's name is not valid UTF-8: rename the folder"
    if not student.strip():
        return "the student folder's name is blank: rename the folder"
    return ""


def grade_one(course: Path, student: str, template_db: Path, checks_path: Path, slot: int, limits: Limits,
              work: Path, sandboxed: bool = True, threads: int = 1) -> dict:
    """Autograde one student's submission in a private course under `work`; returns its report.

    The private course holds a copy of the gradebook and of the submission, and the course's
    source (linked); in it the student has an internal id (`internal_id`), never the folder's
    name. The run's reason and notes come back in the report; the graded notebook,
    feedback and gradebook stay in `work` for the caller to merge.
    """
    start = time.monotonic()
    sub_dir = course / "submitted" / student / ASSIGNMENT
    inner = internal_id(student)
    private = work / "course"
    (private / "submitted" / inner / ASSIGNMENT).mkdir(parents=True)
    os.symlink((course / "source").resolve(), private / "source")
    shutil.copy(template_db, private / "gradebook.db")
    graded_ids = json.loads(checks_path.read_text())["graded_ids"]
    reason, notes = "", []
    target = private / "submitted" / inner / ASSIGNMENT
    handed_in = sorted(p.name for p in sub_dir.glob("*.ipynb"))
    if any(p.is_symlink() for p in (sub_dir.parent, sub_dir)):
        reason = "the submission folder is a link: hand in the files themselves"
        handed_in = []
    for name in handed_in:
        problem, found = preflight(sub_dir / name, graded_ids)
        notes += found
        if problem:
            reason = reason or f"{name}: {problem}"
            continue
        (target / name).write_bytes(harmless_file(read_handed_in(sub_dir / name)))
    if not reason and f"{ASSIGNMENT}.ipynb" not in handed_in:
        reason = f"no {ASSIGNMENT}.ipynb handed in" + (f" (found {', '.join(handed_in)}: rename it)"
                                                       if handed_in else "")
    try:
        (target / "timestamp.txt").write_bytes(read_handed_in(sub_dir / "timestamp.txt", 1000))
    except ValueError:
        pass  # no timestamp (or not a plain file): nbgrader grades it as not late
    (private / "nbgrader_config.py").write_text(
        PRIVATE_CONFIG.format(main=str((course / "nbgrader_config.py").resolve()), root=str(private)))
    report_path = work / "run.json"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               DEEPNGRAMS_GRADE_JOB=json.dumps({"checks": str(checks_path), "scratch": str(work / "scratch"),
                                                "slot": slot, "limits": asdict(limits), "report": str(report_path),
                                                "sandboxed": sandboxed, "threads": threads}))
    status, message = _worker(private, inner, env, limits.wall_timeout + WORKER_MARGIN_S)
    if status != 0 and not reason:
        reason = f"nbgrader could not grade it: {message[:200]}"
    run = json.loads(report_path.read_text()) if report_path.is_file() else {}
    return {"student": student, "internal": inner, "reason": reason or run.get("reason", ""), "notes": notes,
            "seconds": round(time.monotonic() - start, 1), "private": str(private), "graded": status == 0}


# ----------------------------------------------------------------------------------------
# 4. Into the course: gradebook (atomic), graded notebook, feedback, markers
# ----------------------------------------------------------------------------------------
def _db(path: Path) -> str:
    return f"sqlite:///{path}"


def _copy_db(src: Path, dst: Path) -> None:
    """A consistent copy of an SQLite file, even while someone else has it open."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)


def _publish_feedback(folder: Path) -> None:
    """Every HTML page in `folder` made safe to open (deepngrams.untrusted.clean_feedback_html)."""
    for page in folder.rglob("*.html"):
        if page.is_file() and not page.is_symlink():
            page.write_text(clean_feedback_html(page.read_text(encoding="utf-8", errors="replace"),
                                                f"{ASSIGNMENT}: feedback"), encoding="utf-8")


def _stage(course: Path, report: dict, kind: str) -> Path:
    """A new folder for course/`kind`/<student>, beside it under a random name."""
    src = Path(report["private"]) / kind / report.get("internal", report["student"])
    (course / kind).mkdir(exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=".new-", dir=course / kind))
    if src.is_dir():
        shutil.copytree(src, fresh, dirs_exist_ok=True, symlinks=True)
    elif kind == "feedback":  # nothing nbgrader could grade: the feedback is the reason
        page = fresh / ASSIGNMENT / f"{ASSIGNMENT}.html"
        page.parent.mkdir()
        page.write_text(NOT_GRADED_PAGE.format(student=html.escape(report["student"]),
                                               reason=html.escape(report["reason"] or "not graded")))
    if kind == "feedback":
        _publish_feedback(fresh)
    os.chmod(fresh, 0o755 & ~_umask())
    return fresh


def merge(course: Path, report: dict) -> None:
    """Write one student's result into the course: graded notebook and feedback folders, then the
    gradebook (a new file renamed over the old). If any step fails, the course is left as it was.

    The private course knows the student by the internal id; here the real id is used, for the
    gradebook and for the folders in autograded/ and feedback/ (temporary folders beside them
    get random names, so a long or odd student id never makes a longer one)."""
    student = report["student"]
    staged: dict[str, Path] = {}
    swapped: list[tuple[Path, Path | None]] = []  # (destination, where its old content went)
    try:
        for kind in ("autograded", "feedback"):
            staged[kind] = _stage(course, report, kind)
        for kind, fresh in staged.items():
            dst = course / kind / student
            old = None
            if dst.exists() or dst.is_symlink():
                old = course / kind / f".old-{secrets.token_hex(8)}"
                dst.rename(old)
            swapped.append((dst, old))
            fresh.rename(dst)
        _merge_gradebook(course, report)
    except BaseException:
        for dst, old in reversed(swapped):
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst, ignore_errors=True)
            if old is not None:
                old.rename(dst)
        raise
    finally:
        for fresh in staged.values():
            shutil.rmtree(fresh, ignore_errors=True)
    for _, old in swapped:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _merge_gradebook(course: Path, report: dict) -> None:
    from nbgrader.api import Gradebook
    student = report["student"]
    inner = report.get("internal", student)
    db = course / "gradebook.db"
    private = Path(report["private"])
    with atomic_path(db) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's notes on nbgrader's own session use
        _copy_db(db, Path(tmp))
        with Gradebook(_db(Path(tmp))) as gb:
            gb.update_or_create_student(student)
            grades = {}
            if report["graded"]:
                with Gradebook(_db(private / "gradebook.db")) as pgb:
                    psub = pgb.find_submission(ASSIGNMENT, inner)
                    timestamp = psub.timestamp
                    for nb in psub.notebooks:
                        for g in nb.grades:
                            grades[(nb.name, g.name)] = (g.auto_score, g.needs_manual_grade)
                sub = gb.update_or_create_submission(ASSIGNMENT, student, timestamp=timestamp)
            else:
                sub = gb.update_or_create_submission(ASSIGNMENT, student)
            for nb in sub.notebooks:
                for g in nb.grades:
                    g.auto_score, g.needs_manual_grade = grades.get((nb.name, g.name), (0.0, False))
                    g.manual_score = None
            gb.db.commit()


def scores_of(course: Path, student: str) -> dict:
    """{exercise: (points, out of)} of one student, from the course's gradebook."""
    from nbgrader.api import Gradebook, MissingEntry
    from .demo import exercise_of
    from .release import exercise_names
    names = exercise_names()
    scores: dict = {}
    with Gradebook(_db(course / "gradebook.db")) as gb:
        try:
            sub = gb.find_submission(ASSIGNMENT, student)
        except MissingEntry:
            return {}
        for nb in sub.notebooks:
            for g in nb.grades:
                got, out_of = scores.get(exercise_of(g.name, names), (0.0, 0.0))
                scores[exercise_of(g.name, names)] = (got + (g.score or 0.0), out_of + g.max_score)
    return scores


def grader_version(course: Path, bundle: Path = ROOT) -> str:
    """What a verdict depends on besides the submission: every file of the grading code (the whole
    package, the solution and the configuration included), the course's source notebook and
    configuration, the bundle's tests, model files (weights, card, reference values) and corpus,
    the pinned requirements and the grading key. Any change to one of them regrades everyone."""
    h = hashlib.sha256()
    files = sorted((bundle / "deepngrams").rglob("*.py")) + sorted((course / "source" / ASSIGNMENT).glob("*.ipynb")) \
        + [course / "nbgrader_config.py", bundle / "w1_unittest.py", bundle / "requirements.txt"] \
        + sorted((bundle / "model").glob("*.json")) + sorted((bundle / "model").glob("*.h5")) \
        + sorted((bundle / "data").glob("*.txt"))
    for path in files:
        h.update(path.name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"(missing)"))
    h.update(grading_key(course))
    return h.hexdigest()[:16]


def submission_hash(course: Path, student: str) -> str:
    h = hashlib.sha256()
    for path in sorted((course / "submitted" / student / ASSIGNMENT).glob("*")):
        h.update(path.name.encode() + b"\0")
        if path.is_symlink():
            h.update(b"link " + os.readlink(path).encode())
        elif path.is_file():
            try:
                h.update(read_handed_in(path))
            except ValueError:
                h.update(str(path.stat().st_size).encode())
    return h.hexdigest()[:16]


def _marker(course: Path, student: str) -> Path:
    return course / "autograded" / student / ASSIGNMENT / ".deepngrams-grade.json"


def saved_outcome(course: Path, student: str, version: str | None = None) -> Outcome | None:
    """The outcome recorded when this student was last graded, if it still holds: same files
    and (when `version` is given) the same grader."""
    try:
        saved = json.loads(_marker(course, student).read_text())
    except (OSError, ValueError):
        return None
    if saved.get("submission") != submission_hash(course, student) or version and saved.get("grader") != version:
        return None
    return Outcome(student, scores_of(course, student), saved.get("reason", ""), saved.get("notes", []),
                   saved.get("seconds", 0.0), skipped=True)


# ----------------------------------------------------------------------------------------
# 5. The batch
# ----------------------------------------------------------------------------------------
def grading_key(course: Path) -> bytes:
    """The course's grading key (made on first use, readable by the grader alone): with the student
    id and the notebook's bytes it seeds every case of a submission (checks.secret_for)."""
    path = course / ".grading" / "hidden-cases.key"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path.parent, 0o700)
    try:
        key = path.read_bytes()
        if len(key) >= 16:
            return key
    except FileNotFoundError:
        pass
    from .checks import new_key
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(new_key())
    os.chmod(path, 0o600)
    return path.read_bytes()


def prepare_checks(course: Path, path: Path) -> None:
    """What the batch's graders need besides each submission (a grader-only file): the grading key
    and the graded cells of the source notebook. Each submission's cases are drawn from them."""
    import nbformat
    source = course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    graded_ids = [_nbgrader(c)["grade_id"] for c in nbformat.read(str(source), 4).cells if is_test_cell(c)]
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps({"key": grading_key(course).hex(), "graded_ids": graded_ids}))
    os.chmod(path, 0o600)


def check_course(course: Path) -> list[str]:
    """Why this course cannot be graded here ([] when it can): found once, before any work starts.

    nbgrader logs a configuration file that fails and goes on without it, which would grade
    every submission with its defaults (no sandbox, no verdicts) and give everyone 0.
    """
    from nbgrader.preprocessors import Execute
    from traitlets.config.loader import PyFileConfigLoader
    from .nbgrader_steps import GradeUpToHere, OverwriteCellsKeepingOrder
    config_file = course / "nbgrader_config.py"
    source = course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    problems = []
    if not source.is_file():
        problems.append(f"{source} is missing: the course needs its source notebook (copy grader/source/ from the "
                        f"bundle {ROOT})")
    if not config_file.is_file():
        return problems + [f"{config_file} is missing: copy grader/nbgrader_config.py from the bundle {ROOT}"]
    try:
        config = PyFileConfigLoader(config_file.name, path=str(course)).load_config()
    except Exception as e:  # noqa: BLE001 - any failure of the instructor's file is reported as it is
        lines = [line for line in str(e).strip().splitlines() if line.strip()] or [type(e).__name__]
        return problems + [f"{config_file} fails to load ({lines[-1][:300]}). A course kept outside the bundle "
                           f"names it: set BUNDLE_PATH = {str(ROOT)!r} in that file (or DEEPNGRAMS_BUNDLE={ROOT})"]
    steps = config.get("Autograde", {}).get("autograde_preprocessors", [])
    sanitize = config.get("Autograde", {}).get("sanitize_preprocessors", [])
    if Execute not in steps or GradeUpToHere not in steps or OverwriteCellsKeepingOrder not in sanitize:
        problems.append(f"{config_file} does not set up this course's grading steps (Autograde.autograde_preprocessors "
                        f"and sanitize_preprocessors): copy grader/nbgrader_config.py from the bundle {ROOT}")
    return problems


def ensure_assignment(course: Path) -> None:
    """Record the assignment in the gradebook (nbgrader generate_assignment), as nbgrader needs."""
    from .release import nbgrader
    done = nbgrader("generate_assignment", ASSIGNMENT, "--force", cwd=course)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise RuntimeError(f"nbgrader generate_assignment failed in {course}:\n{tail}")


def grade(course: Path = COURSE_DIR, *, workers: int = 2, force: bool = False, students: list[str] | None = None,
          limits: Limits | None = None, progress: bool = True, sandboxed: bool = True) -> list[Outcome]:
    """Grade the course's submissions; returns one Outcome per student, sorted by name."""
    from tqdm import tqdm
    from . import sandbox
    course = Path(course).resolve()
    limits = limits or Limits()
    if sandboxed and (problem := sandbox.available()):
        raise RuntimeError(f"cannot grade: {problem}")
    os.environ.setdefault("DEEPNGRAMS_BUNDLE", str(ROOT))  # the course's configuration finds this bundle
    if problems := check_course(course):
        raise RuntimeError("cannot grade " + str(course) + ":\n  " + "\n  ".join(problems))
    all_students = sorted(p.name for p in (course / "submitted").iterdir()
                          if (p / ASSIGNMENT).is_dir()) if (course / "submitted").is_dir() else []
    unknown = sorted(set(students or []) - set(all_students))
    if unknown:
        raise ValueError(f"no submission from {', '.join(map(repr, unknown))} in {course / 'submitted'}")
    chosen = students or all_students
    ensure_assignment(course)
    version = grader_version(course)
    outcomes: dict[str, Outcome] = {}
    refused = {s: problem for s in all_students if (problem := unusable_name(s))}
    todo = []
    for student in chosen:
        if student in refused:  # before anything is written for it
            outcomes[student] = Outcome(student, reason=f"not graded: {refused[student]}")
            continue
        saved = saved_outcome(course, student, version)
        if saved and not force:
            outcomes[student] = saved
        else:
            todo.append(student)

    work_root = course / ".grading"
    work_root.mkdir(mode=0o700, exist_ok=True)
    batch = Path(tempfile.mkdtemp(prefix="batch-", dir=work_root))
    try:
        if todo:
            checks_path = batch / "checks.json"
            prepare_checks(course, checks_path)
            template = batch / "gradebook.db"
            _copy_db(course / "gradebook.db", template)
            threads = max(1, (os.cpu_count() or 1) // workers)
            slots: queue.Queue = queue.Queue()
            for slot in range(workers):
                slots.put(slot)

            def task(student: str) -> dict:
                slot = slots.get()
                try:
                    return grade_one(course, student, template, checks_path, slot, limits,
                                     Path(tempfile.mkdtemp(prefix="s-", dir=batch)), sandboxed, threads)
                finally:
                    slots.put(slot)

            bar = tqdm(total=len(todo), desc="grading", unit="submission", disable=not progress, dynamic_ncols=True)
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(task, s): s for s in todo}
                for future in concurrent.futures.as_completed(futures):
                    student = futures[future]
                    try:
                        report = future.result()
                    except Exception as e:  # noqa: BLE001 - one student's failure never stops the batch
                        report = {"student": student, "reason": f"grader error: {type(e).__name__}: {e}",
                                  "notes": [], "seconds": 0.0, "private": str(batch / "none"), "graded": False}
                    outcomes[student] = record(course, report, version, sandbox_mode() if sandboxed else "none")
                    bar.set_postfix_str(printable(student[:20]))
                    bar.update()
            bar.close()
    finally:
        shutil.rmtree(batch, ignore_errors=True)
    export_grades(course)
    results = [outcomes[s] for s in sorted(outcomes)]
    everyone = {s: outcomes.get(s) or (None if s in refused else saved_outcome(course, s)) for s in all_students}
    write_report(course, [o for _, o in sorted(everyone.items()) if o is not None])
    return results


def record(course: Path, report: dict, version: str, sandbox: str = "none") -> Outcome:
    """Merge one student's report into the course and mark it graded (with the sandbox mode it ran
    in); a failure here costs this student alone (the gradebook stays as it was, no marker, a
    reason in the report)."""
    student = report["student"]
    try:
        merge(course, report)
        outcome = Outcome(student, scores_of(course, student), report["reason"], report["notes"], report["seconds"])
        write_bytes(_marker(course, student), json.dumps(
            {"submission": submission_hash(course, student), "grader": version, "reason": outcome.reason,
             "notes": outcome.notes, "seconds": outcome.seconds, "sandbox": sandbox}, indent=1).encode())
    except Exception as e:  # noqa: BLE001 - one student's failure never stops the batch
        outcome = Outcome(student, {}, f"not graded: the result could not be saved ({type(e).__name__}: {e})",
                          report["notes"], report["seconds"])
        with contextlib.suppress(OSError):
            _marker(course, student).unlink()
    finally:
        shutil.rmtree(report["private"], ignore_errors=True)
    return outcome


def export_grades(course: Path) -> None:
    """grades.csv from the gradebook, with the columns and values of `nbgrader export`, written
    atomically. nbgrader's exporter joins fields with commas unquoted; here every cell is quoted
    where needed and text cells cannot start a spreadsheet formula."""
    from nbgrader.api import Gradebook, MissingEntry

    def text(value) -> str:
        return "" if value is None else csv_cell(value)

    def number(value) -> str:
        return "" if value is None else str(value)

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(GRADES_COLUMNS)
    with warnings.catch_warnings(), Gradebook(_db(course / "gradebook.db")) as gb:
        warnings.simplefilter("ignore")  # SQLAlchemy's notes on nbgrader's own session use
        for assignment in gb.assignments:
            for student in gb.students:
                try:
                    sub = gb.find_submission(assignment.name, student.id)
                except MissingEntry:
                    timestamp, raw, penalty, score = "", 0.0, 0.0, 0.0
                else:
                    timestamp, raw, penalty = sub.timestamp, sub.score, sub.late_submission_penalty
                    score = max(0.0, raw - penalty)
                w.writerow([text(assignment.name), text(assignment.duedate), text(timestamp), text(student.id),
                            text(student.last_name), text(student.first_name), text(student.email),
                            number(raw), number(penalty), number(score), number(assignment.max_score)])
    write_bytes(course / "grades.csv", buf.getvalue().encode())


def write_report(course: Path, outcomes: list[Outcome]) -> None:
    """report.csv: per student, the points of each exercise, the total, the time and the reason."""
    from .release import exercise_names
    names = exercise_names()
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["student", *names, "total", "out_of", "seconds", "reason", "notes"])
    for o in outcomes:
        got, out_of = o.total
        w.writerow([csv_cell(o.student), *[f"{o.scores[n][0]:g}" if n in o.scores else "" for n in names],
                    f"{got:g}", f"{out_of:g}", f"{o.seconds:.1f}", csv_cell(o.reason), csv_cell("; ".join(o.notes))])
    write_bytes(course / "report.csv", buf.getvalue().encode())


def format_report(outcomes: list[Outcome]) -> str:
    from .demo import format_table
    from .release import exercise_names
    rows = [(o.student, o.scores, "; ".join(filter(None, [o.reason, *o.notes]))
             + (" (already graded)" if o.skipped else "")) for o in outcomes]
    return format_table(exercise_names(), rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deepngrams grade", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--course", type=Path, default=COURSE_DIR, help="nbgrader course directory (default: grader/)")
    p.add_argument("--workers", type=int, default=max(1, min(os.cpu_count() or 1, 8)),
                   help="submissions graded at once (default: one per core, at most 8)")
    p.add_argument("--force", action="store_true", help="grade again what is already graded")
    p.add_argument("--student", action="append", help="grade only this student (repeatable)")
    d = Limits()
    p.add_argument("--cell-timeout", type=float, default=d.cell_timeout, help="seconds a cell may run")
    p.add_argument("--timeout", type=float, default=d.wall_timeout, help="seconds a whole notebook may run")
    p.add_argument("--memory", type=float, default=d.memory_gib, help="GiB of memory the processes may use together")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be at least 1")
    limits = Limits(cell_timeout=args.cell_timeout, wall_timeout=args.timeout, memory_gib=args.memory)
    course = args.course.resolve()
    if not (course / "source" / ASSIGNMENT).is_dir():
        p.error(f"{course} is not the course directory: it has no source/{ASSIGNMENT}/")
    start = time.monotonic()
    try:
        outcomes = grade(course, workers=args.workers, force=args.force, students=args.student, limits=limits)
    except (RuntimeError, ValueError) as e:
        print(f"error: {printable(e)}", file=sys.stderr)
        return 2
    print()
    print(format_report(outcomes))
    print()
    done = sum(not o.skipped for o in outcomes)
    print(f"Graded {done}, skipped {len(outcomes) - done} already graded (use --force to grade again), "
          f"in {time.monotonic() - start:.0f} s with {args.workers} workers.")
    print(f"Sandbox:         {sandbox_mode()}")
    print(f"Report:          {course / 'report.csv'}")
    print(f"Grades (CSV):    {course / 'grades.csv'}")
    print(f"Feedback (HTML): {course / 'feedback'}/<student>/{ASSIGNMENT}/")
    return 0
