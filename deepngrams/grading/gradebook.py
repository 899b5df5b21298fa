"""What the course keeps of a grading: the gradebook (replaced, never half-written), the graded notebook
and feedback folders, each student's marker, the grader's fingerprint and the course's grading key."""
from __future__ import annotations

import contextlib
import csv
import hashlib
import html
import io
import json
import os
import secrets
import shutil
import sqlite3
import tempfile
import warnings
from datetime import datetime
from pathlib import Path

from deepngrams.atomic import _umask, write_bytes
from deepngrams.config import ASSIGNMENT, ROOT
from deepngrams.grading.preflight import fingerprint, read_submission
from deepngrams.course.release import exercise_names
from deepngrams.grading.exercises import grading_key
from deepngrams.grading.report import Outcome, exercise_of, publish_feedback
from deepngrams.grading.untrusted import csv_cell

NOT_GRADED_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>deep_ngrams: not graded</title></head>
<body><h1>deep_ngrams: your submission could not be graded</h1>
<p>Student: {student}</p><p>Reason: {reason}</p><p>Every exercise scores 0. Fix this and hand it in again.</p>
</body></html>
"""


GRADES_COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                  "raw_score", "late_submission_penalty", "score", "max_score"]  # nbgrader's CsvExportPlugin



def _db(path: Path) -> str:
    return f"sqlite:///{path}"


def _copy_db(src: Path, dst: Path) -> None:
    """A consistent copy of an SQLite file, even while someone else has it open."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)


def _stage(course: Path, report: dict, kind: str) -> Path:
    """A new folder for course/`kind`/<student>, beside it under a random name."""
    src = Path(report["private"]) / kind / report.get("internal", report["student"])
    (course / kind).mkdir(exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=".new-", dir=course / kind))
    if src.is_dir():
        shutil.copytree(src, fresh, dirs_exist_ok=True, symlinks=True)
    page = fresh / ASSIGNMENT / f"{ASSIGNMENT}.html"
    if kind == "feedback" and not page.is_file():  # nothing nbgrader could grade: the feedback is the reason
        page.parent.mkdir(exist_ok=True)
        page.write_text(NOT_GRADED_PAGE.format(student=html.escape(report["student"]),
                                               reason=html.escape(report["reason"] or "not graded")))
    if kind == "feedback":
        publish_feedback(fresh)
    os.chmod(fresh, 0o755 & ~_umask())
    return fresh


def merge(course: Path, report: dict) -> None:
    """Write one student's result into the course: graded notebook and feedback folders, then the
    gradebook (one transaction). If any step fails, the course is left as it was.

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


@contextlib.contextmanager
def one_transaction(gb):
    """nbgrader's Gradebook commits after each of its calls; within this block its calls share one
    SQLite transaction, committed at the end or rolled back whole (by SQLite's journal if the
    process dies first). The gradebook is written in place, at a cost that does not grow with the
    course, and never holds half of a result."""
    session = gb.db
    session.commit = session.flush  # shadows the session's own commit for nbgrader's calls
    try:
        yield
        del session.commit
        session.commit()
    except BaseException:
        vars(session).pop("commit", None)
        session.rollback()
        raise


_kept_open: dict[Path, object] = {}  # course -> its nbgrader Gradebook, while a batch merges into it


@contextlib.contextmanager
def kept_open(course: Path):
    """Within this block the course's gradebook is opened once for every merge and read: SQLAlchemy
    compiles nbgrader's statements once per engine, which costs more than the merge itself when the
    gradebook is opened for each result. Each use still ends its own transaction and forgets what it
    read, so what another process (the Formgrader) writes meanwhile is seen."""
    from nbgrader.api import Gradebook
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gb = Gradebook(_db(course / "gradebook.db"))
    _kept_open[course] = gb
    try:
        yield
    finally:
        del _kept_open[course]
        gb.close()


@contextlib.contextmanager
def course_gradebook(course: Path):
    """The course's nbgrader Gradebook: the one kept open (`kept_open`), else one opened for this use."""
    from nbgrader.api import Gradebook
    gb = _kept_open.get(course)
    if gb is None:
        with Gradebook(_db(course / "gradebook.db")) as gb:
            yield gb
        return
    try:
        yield gb
    finally:
        gb.db.close()  # ends the session's transaction and empties its identity map; the engine stays


def _merge_gradebook(course: Path, report: dict) -> None:
    """The grades nbgrader recorded where the submission was graded (report["recorded"]:
    `submission.recorded_grades`), written into the course's gradebook."""
    grades, timestamp = {}, None
    if report["graded"]:
        recorded = report["recorded"]
        grades = {(notebook, name): (score, manual) for notebook, name, score, manual in recorded["grades"]}
        timestamp = datetime.fromisoformat(recorded["timestamp"]) if recorded["timestamp"] else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's notes on nbgrader's own session use
        with course_gradebook(course) as gb, one_transaction(gb):
            _write_result(gb, report["student"], report["graded"], grades, timestamp)


def _write_result(gb, student: str, graded: bool, grades: dict, timestamp) -> None:
    """One student's submission and grades, through nbgrader's own calls."""
    gb.update_or_create_student(student)
    if graded:
        sub = gb.update_or_create_submission(ASSIGNMENT, student, timestamp=timestamp)
    else:
        sub = gb.update_or_create_submission(ASSIGNMENT, student)
    for nb in sub.notebooks:
        for g in nb.grades:
            g.auto_score, g.needs_manual_grade = grades.get((nb.name, g.name), (0.0, False))
            g.manual_score = None


def scores_of(course: Path, student: str) -> dict:
    """{exercise: (points, out of)} of one student, from the course's gradebook."""
    from nbgrader.api import MissingEntry
    names = exercise_names()
    scores: dict = {}
    with course_gradebook(course) as gb:
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
        name = path.relative_to(bundle) if path.is_relative_to(bundle) else path.relative_to(course)
        h.update(str(name).encode() + b"\0" + (path.read_bytes() if path.is_file() else b"(missing)"))
    h.update(grading_key(course))
    return h.hexdigest()[:16]


def submission_hash(course: Path, student: str) -> str:
    """The fingerprint of what grading would read of the student's folder now."""
    return fingerprint(*read_submission(course / "submitted" / student / ASSIGNMENT))


def _marker(course: Path, student: str) -> Path:
    return course / "autograded" / student / ASSIGNMENT / ".deepngrams-grade.json"


def saved_outcome(course: Path, student: str, version: str | None = None) -> Outcome | None:
    """The outcome recorded when this student was last graded, if it still holds: same files
    and (when `version` is given) the same grader."""
    try:
        saved = json.loads(_marker(course, student).read_text())
    except (OSError, ValueError):
        return None
    try:
        now = submission_hash(course, student)
    except Exception:  # noqa: BLE001 - a folder that cannot be read now is graded, and says why
        return None
    if saved.get("submission") != now or version and saved.get("grader") != version:
        return None
    return Outcome(student, scores_of(course, student), saved.get("reason", ""), saved.get("notes", []),
                   saved.get("seconds", 0.0), skipped=True, sandbox=saved.get("sandbox", ""))


def save_outcome(course: Path, report: dict, version: str) -> Outcome:
    """Merge one student's report into the course and mark it graded (with the sandbox mode it ran
    in, report["sandbox"], and the fingerprint of the files it graded, report["submission"]: a file
    changed while it was graded is graded again next run); a failure here costs this student alone
    (the gradebook stays as it was, no marker, a reason in the report)."""
    student, sandbox = report["student"], report.get("sandbox", "none")
    try:
        merge(course, report)
        outcome = Outcome(student, scores_of(course, student), report["reason"], report["notes"], report["seconds"],
                          sandbox=sandbox)
        write_bytes(_marker(course, student), json.dumps(
            {"submission": report["submission"], "grader": version, "reason": outcome.reason,
             "notes": outcome.notes, "seconds": outcome.seconds, "sandbox": sandbox}, indent=1).encode())
    except Exception as e:  # noqa: BLE001 - one student's failure never stops the batch
        outcome = Outcome(student, {}, f"not graded: the result could not be saved ({type(e).__name__}: {e})",
                          report["notes"], report["seconds"], sandbox=sandbox)
        with contextlib.suppress(OSError):
            _marker(course, student).unlink()
    finally:
        shutil.rmtree(report["private"], ignore_errors=True)
    return outcome


def export_grades(course: Path) -> None:
    """grades.csv from the gradebook, with the columns and values of `nbgrader export`, written
    atomically. nbgrader's exporter joins fields with commas unquoted; here every cell is quoted
    where needed and text cells cannot start a spreadsheet formula."""
    from nbgrader.api import MissingEntry

    def text(value) -> str:
        return "" if value is None else csv_cell(value)

    def number(value) -> str:
        return "" if value is None else str(value)

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(GRADES_COLUMNS)
    with warnings.catch_warnings(), course_gradebook(course) as gb:
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
