"""A course directory ready for nbgrader: its assignment recorded in the gradebook, its students named.

nbgrader's autograde needs the assignment in the gradebook (what `generate_assignment`, the
Formgrader's Generate button, records), and lists students without names as "None, None".
The course's nbgrader_config.py calls `set_up` when it loads, so every door (the Formgrader,
plain `nbgrader`, `python -m deepngrams grade`) finds a fresh course ready; it costs a gradebook
query when there is nothing to do.
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import os
import re
import sqlite3
import sys
from pathlib import Path

from deepngrams.config import ASSIGNMENT, COURSE_DIR, GRADE_JOB_ENV, SOURCE_NB

SETTING_UP_ENV = "DEEPNGRAMS_SETTING_UP"  # set in the nbgrader command that set_up runs (no recursion)
ROSTER = "students.csv"  # nbgrader's roster columns: id, first_name, last_name, email
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")  # ids named here; any other is left to nbgrader


def source_notebook(course: Path) -> Path:
    return course / SOURCE_NB.relative_to(COURSE_DIR)


def _recorded_digest(course: Path) -> Path:
    return course / ".grading" / "recorded-source.sha256"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assignment_recorded(course: Path) -> bool:
    """Whether the gradebook holds the assignment as the source notebook is now."""
    db = course / "gradebook.db"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            found = con.execute("SELECT count(*) FROM notebook JOIN assignment ON notebook.assignment_id = "
                                "assignment.id WHERE assignment.name = ?", (ASSIGNMENT,)).fetchone()[0]
    except sqlite3.Error:
        return False  # no gradebook yet, or one nbgrader has not set up
    try:
        return found > 0 and _recorded_digest(course).read_text().strip() == _digest(source_notebook(course))
    except OSError:
        return False


@contextlib.contextmanager
def _course_lock(course: Path):
    """One set-up at a time per course (the Formgrader and a batch may start together)."""
    folder = course / ".grading"
    folder.mkdir(mode=0o700, exist_ok=True)
    with open(folder / "setup.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def record_assignment(course: Path) -> None:
    """nbgrader generate_assignment, when the gradebook lacks the assignment or the source changed."""
    from deepngrams.course.release import nbgrader
    if assignment_recorded(course):
        return
    with _course_lock(course):
        if assignment_recorded(course):
            return
        digest = _digest(source_notebook(course))
        done = nbgrader("generate_assignment", ASSIGNMENT, "--force", cwd=course, env={SETTING_UP_ENV: "1"})
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
            raise RuntimeError(f"nbgrader generate_assignment failed in {course}:\n{tail}")
        _recorded_digest(course).write_text(digest + "\n")


def roster(course: Path) -> dict[str, dict]:
    """The course's students.csv (nbgrader's roster format), by id; {} without one."""
    try:
        with open(course / ROSTER, newline="", encoding="utf-8") as f:
            return {row["id"]: row for row in csv.DictReader(f) if row.get("id")}
    except (OSError, KeyError, csv.Error, UnicodeDecodeError):
        return {}


def name_students(course: Path) -> None:
    """The roster's students in the gradebook with their names, and every other student there
    without a name given their id as last name (the Formgrader would show "None, None"). A
    student is never added for a folder in submitted/: only grading adds one, so a submission
    that could not be graded has no row of zeros in nbgrader's export."""
    names = roster(course)
    known, named = _students(course)
    todo = {i for i in set(names) | known if _PLAIN_ID.fullmatch(i)} - named
    if not todo:
        return
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student in sorted(todo):
            row = names.get(student, {})
            gb.update_or_create_student(student, first_name=row.get("first_name") or "",
                                        last_name=row.get("last_name") or student,
                                        email=row.get("email") or None)


def _students(course: Path) -> tuple[set[str], set[str]]:
    """The ids of the gradebook's students, and of those with a name (a cheap query, without nbgrader)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{course / 'gradebook.db'}?mode=ro", uri=True)) as con:
            rows = con.execute("SELECT id, first_name IS NOT NULL OR last_name IS NOT NULL FROM student").fetchall()
    except sqlite3.Error:
        return set(), set()
    return {i for i, _ in rows}, {i for i, has_name in rows if has_name}


def set_up(course: Path) -> None:
    """Record the assignment and name the students, if that is still to do (see the module's doc).

    Called by the course's configuration as it loads, so it never raises: a course it cannot set
    up (read-only, broken source) is left to nbgrader's own messages.
    """
    inside = os.environ.get(SETTING_UP_ENV) or os.environ.get(GRADE_JOB_ENV)
    if inside or "generate_assignment" in sys.argv[:3]:
        return  # the set-up's own nbgrader run, one submission of a batch, or generate_assignment itself
    if not source_notebook(course).is_file() or not os.access(course, os.W_OK):
        return
    try:
        record_assignment(course)
        name_students(course)
    except Exception as e:  # noqa: BLE001 - a configuration that raises would stop every nbgrader command
        print(f"[deepngrams] could not set up the course {course}: {str(e)[-500:]}", file=sys.stderr)
