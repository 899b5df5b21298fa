"""One submission: nbgrader's autograde and feedback in a private copy of the course, in a fresh child of
nbgrader's host (grading.nbgrader_host)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
import time
import unicodedata
from dataclasses import asdict
from pathlib import Path

from deepngrams.config import ASSIGNMENT, GRADE_JOB_ENV, MAX_SUBMIT_FILE_BYTES, ROOT, SECRET, TIMESTAMP, WORKER_MARGIN_S
from deepngrams.course.course_setup import SETTING_UP_ENV
from deepngrams.grading import nbgrader_host
from deepngrams.grading.preflight import (NOTEBOOK, check_notebook, fingerprint, handed_in_timestamp, read_handed_in,
                                          read_submission, submitted_with)
from deepngrams.grading.sandbox import Limits, mode as sandbox_mode
from deepngrams.grading.untrusted import BIDI_OVERRIDES, printable

PRIVATE_CONFIG = '''\
# A private course for grading one submission (made by deepngrams.grade; removed afterwards).
c = get_config()  # noqa: F821
load_subconfig({main!r})  # noqa: F821 - the course's own configuration
c.CourseDirectory.root = {root!r}
'''


def _worker(private: Path, student: str, env: dict, timeout: float | None = None,
            kernel_threads: int | None = None) -> tuple[int | None, str]:
    """Run `nbgrader_host.run_steps` in a fresh child of an nbgrader host; past `timeout` seconds it
    is killed with everything it started, and the status is None. A host that fails is replaced
    once; a second failure is the machinery's (nbgrader_host.HostFailed), never the student's.
    `kernel_threads`: the sandboxed kernels' thread count, for a new host's kernel factory."""
    stderr = private.parent / "nbgrader-stderr.txt"
    for attempt in (1, 2):
        try:
            with nbgrader_host.borrowed_host(kernel_threads) as host:
                status = host.run(private, student, env, stderr, timeout)
            break
        except nbgrader_host.HostFailed:
            if attempt == 2:
                raise
    err = stderr.read_text(errors="replace").strip()[-300:] if stderr.is_file() else ""
    if status is None:
        return None, f"nbgrader's steps ran over {timeout:g} s and were stopped"
    return status, err


def internal_id(student: str) -> str:
    """The name a student is graded under inside the grader: nbgrader globs paths and builds file
    names from student ids, so a folder name with a comma, a glob bracket, a newline or 250 bytes
    must never reach it."""
    return "s" + hashlib.sha256(student.encode("utf-8", "surrogateescape")).hexdigest()[:16]


# What HTML and JavaScript read as markup or the end of a string, in text, attributes and scripts.
MARKUP = "<>&\"'`\\"


def unusable_name(student: str) -> str:
    """Why a student folder's name cannot be used as a student id ("" if it can)."""
    try:
        student.encode("utf-8")
    except UnicodeEncodeError:
        return "the student folder's name is not valid UTF-8: rename the folder"
    if not student.strip():
        return "the student folder's name is blank: rename the folder"
    markup = sorted(set(student) & set(MARKUP))
    if markup:
        return (f"the student folder's name has {' '.join(markup)}, which web pages read as markup (nbgrader's "
                f"Formgrader shows student ids as written): rename the folder")
    return ""


def door_refusals(course: Path) -> dict[str, str]:
    """The student folders plain nbgrader (the door) cannot take, with why: a name with a line break
    (which stops nbgrader's whole run), that the Formgrader would run as markup, that nbgrader would
    print to the terminal as it is or read as a file pattern (`_door_name_problem`); a notebook or
    timestamp that is not a plain file (nbgrader would follow a link, or wait on a pipe for good), and
    a link or a device anywhere in the folder (`_not_plain`); a timestamp nbgrader cannot read. The
    batch refuses such notebooks and timestamps too, and the names it cannot show (markup); the others
    it grades under an internal id and prints escaped."""
    refused = {}
    folders = sorted((course / "submitted").iterdir()) if (course / "submitted").is_dir() else []
    for folder in folders:
        handed_in = folder / ASSIGNMENT
        if not handed_in.is_dir():
            continue
        student = folder.name
        reason = unusable_name(student) or _door_name_problem(student)
        try:
            reason = reason or _not_plain(handed_in) or _unreadable_timestamp(handed_in)
        except OSError as e:
            reason = f"its folder cannot be read ({e.strerror})"
        if reason:
            refused[student] = reason
    return refused


GLOB = "*?[]"


def _door_name_problem(student: str) -> str:
    """Why plain nbgrader must not take a folder of this name ("" if it may): nbgrader stops its whole
    run at a line break, prints the name to the terminal as it is, and reads it as a file pattern."""
    if "\n" in student:
        return "the student folder's name has a line break, on which nbgrader stops its whole run: rename the folder"
    if any(unicodedata.category(c) == "Cc" or c in BIDI_OVERRIDES for c in student):
        return ("the student folder's name has control characters (or text direction overrides), which nbgrader "
                "prints to the terminal as they are: rename the folder")
    if set(student) & set(GLOB):
        return ("the student folder's name has * ? [ or ], which nbgrader reads as a pattern of folder names (it "
                "would grade other students' folders under this name): rename the folder")
    return ""


def _unreadable_timestamp(handed_in: Path) -> str:
    """Why nbgrader cannot read the folder's timestamp.txt ("" if it can, or there is none or an empty
    one): nbgrader fails that submission with the file's text in its log, the batch refuses it."""
    path = handed_in / TIMESTAMP
    if not os.path.lexists(path):
        return ""
    try:
        raw = read_handed_in(path, MAX_SUBMIT_FILE_BYTES)
    except ValueError as e:
        raw = str(e)
    return timestamp_refusal(raw)


def _not_plain(handed_in: Path) -> str:
    """Why nbgrader must not read or copy what is in `handed_in` ("" if it may): the notebook or the
    timestamp not a plain file, or anything in the folder a link or a device (nbgrader copies what is
    handed in beside the notebook, following links: a link to /dev/zero fills the disk)."""
    if handed_in.is_symlink():
        return "the assignment's folder is a link, which nbgrader would follow: hand in the folder itself"
    for name in (NOTEBOOK, TIMESTAMP):
        path = handed_in / name
        if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
            return f"{name} is not a plain file (a link, a pipe or a folder): hand in the file itself"
    for folder, folders, files in os.walk(handed_in):
        for name in folders + files:
            mode = os.lstat(os.path.join(folder, name)).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                return f"{name!r} beside the notebook is a link or a device, which nbgrader would follow: remove it"
    return ""


def excluded_students(course: Path) -> str:
    """nbgrader's CourseDirectory.student_id_exclude for the door: the folders `door_refusals` names,
    each said on stderr. A name with a comma (nbgrader splits the list there) or a line break (nbgrader
    stops its whole run on it before reading the list) cannot be left out: it is named, to be renamed."""
    if os.environ.get(SETTING_UP_ENV) or os.environ.get(GRADE_JOB_ENV):
        return ""  # the set-up's own nbgrader run, or one submission of a batch (a private course)
    try:
        refused = door_refusals(course)
    except OSError:
        return ""
    kept_in = {student for student in refused if "," in student or "\n" in student}
    for student, reason in refused.items():
        left = "cannot be left out by nbgrader, so rename it:" if student in kept_in else "left out:"
        print(f"[deepngrams] {printable(repr(student))} {left} {reason}", file=sys.stderr)
    return ",".join(student for student in refused if student not in kept_in)


def handed_in_files(course: Path, student: str,
                    graded_ids: list[str]) -> tuple[dict[str, bytes], str, list[str], str]:
    """What of a student's folder goes to grading, read once where the course is: the assignment's
    notebook checked (grading.preflight) with its metadata made harmless, and nbgrader's timestamp and
    secret (`submitted_with`), also when the notebook cannot be graded: its feedback page is released
    as the others are. Returns the files by name, the reason the submission cannot be graded ("" if
    none), the notes, and the fingerprint of exactly what was read (a file changed meanwhile is graded
    next run)."""
    found, others = read_submission(course / "submitted" / student / ASSIGNMENT)
    files: dict[str, bytes] = {}
    reason, notes = "", []
    handed_in = found.get(NOTEBOOK)
    if isinstance(handed_in, str):
        reason = handed_in if handed_in.startswith("the submission folder") else f"{NOTEBOOK}: {handed_in}"
    elif handed_in is None:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        reason = f"no {NOTEBOOK} handed in" + (f" (found {shown}: rename it)" if others else "")
    else:
        problem, notes, files[NOTEBOOK] = check_notebook(handed_in, graded_ids)
        if problem:
            reason, files = f"{NOTEBOOK}: {problem}", {}
    raw = found.get(TIMESTAMP)
    if not reason and raw is not None and (refused := timestamp_refusal(raw)):
        reason, files = refused, {}
    submitted, note = submitted_with(found)
    return {**files, **submitted}, reason, notes + [note] * bool(note), fingerprint(found, others)


# nbgrader fails a submission whose timestamp.txt holds something it cannot read as a time: both doors
# refuse it, with this reason (graded as on time, a late submission could hide its lateness).
TIMESTAMP_UNREADABLE = ("holds no time nbgrader can read, so whether the submission is late cannot be decided: hand "
                        "it in again (nbgrader's submit writes the file) or correct the file, and grade again")


def timestamp_refusal(raw: bytes | str) -> str:
    """Why a submission's timestamp.txt (its bytes, or why they could not be read) refuses it ("" if
    nbgrader can read it as a time, or finds it empty: then the submission is not late)."""
    if isinstance(raw, str):  # a link, a pipe, unreadable, too long: read_handed_in's reason, up to its advice
        return (f"{TIMESTAMP} cannot be read as a plain file of at most {MAX_SUBMIT_FILE_BYTES} bytes "
                f"({raw.split(':')[0]}): hand it in again (nbgrader's submit writes the file), and grade again")
    try:
        empty = not raw.decode("utf-8").strip()  # as nbgrader reads it: Unicode's white space is nothing
    except UnicodeDecodeError:
        empty = False
    return "" if empty or handed_in_timestamp(raw) is not None else f"{TIMESTAMP} {TIMESTAMP_UNREADABLE}"


def autograde(course: Path, student: str, files: dict[str, bytes], template_db: Path, student_secret: bytes,
              slot: int, limits: Limits, work: Path, sandboxed: bool = True, threads: int = 1) -> dict:
    """nbgrader's autograde and feedback of `files` (from `handed_in_files`) in a private course under
    `work`, made from `course`'s configuration and source; returns the run's report. `student_secret`
    is the key of the student's cases (exercises.student_key of the folder's name, as on every door).

    The private course holds a copy of the gradebook, the files and the course's source (linked);
    in it the student has an internal id (`internal_id`), never the folder's name. The graded
    notebook, feedback and gradebook stay in `work` (report["private"]) for the caller to merge.
    """
    start = time.monotonic()
    inner = internal_id(student)
    private = work / "course"
    target = private / "submitted" / inner / ASSIGNMENT
    target.mkdir(parents=True)
    os.symlink((course / "source").resolve(), private / "source")
    shutil.copy(template_db, private / "gradebook.db")
    for name, data in files.items():
        (target / Path(name).name).write_bytes(data)
    if NOTEBOOK not in files:  # refused before grading: nothing for nbgrader to run
        _beside_the_feedback(private, inner, files)
        return {"student": student, "internal": inner, "reason": "", "notes": [],
                "seconds": round(time.monotonic() - start, 1), "private": str(private), "graded": False,
                "recorded": None, "sandbox": sandbox_mode() if sandboxed else "none"}
    (private / "nbgrader_config.py").write_text(
        PRIVATE_CONFIG.format(main=str((course / "nbgrader_config.py").resolve()), root=str(private)))
    report_path, key_path = work / "run.json", work / "student.key"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)  # new, the grader's alone
    with os.fdopen(fd, "w") as f:
        f.write(student_secret.hex())
    job = {"student_key_file": str(key_path), "scratch": str(work / "scratch"), "slot": slot, "limits": asdict(limits),
           "report": str(report_path), "sandboxed": sandboxed, "threads": threads}
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **{GRADE_JOB_ENV: json.dumps(job)})
    status, message = _worker(private, inner, env, limits.wall_timeout + WORKER_MARGIN_S,
                              threads if sandboxed else None)
    _beside_the_feedback(private, inner, files)  # where nbgrader failed or ran out of time before its copy
    run = json.loads(report_path.read_text()) if report_path.is_file() else {}
    reason = run.get("reason", "") if status == 0 else f"nbgrader could not grade it: {message[:200]}"
    return {"student": student, "internal": inner, "reason": reason, "notes": [],
            "seconds": round(time.monotonic() - start, 1), "private": str(private), "graded": status == 0,
            "recorded": recorded_grades(private, inner) if status == 0 else None,
            "sandbox": sandbox_mode() if sandboxed else "none"}


def _beside_the_feedback(private: Path, inner: str, files: dict[str, bytes]) -> None:
    """What nbgrader's submit wrote (`submitted_with`) in the graded and feedback folders where nbgrader has
    not copied it there: release_feedback reads both files beside every page, a page that says why a
    submission was not graded too, and stops for the whole class where they are missing."""
    for kind in ("autograded", "feedback"):
        folder = private / kind / inner / ASSIGNMENT
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            if name != NOTEBOOK and not os.path.lexists(folder / name):
                (folder / name).write_bytes(data)


def recorded_grades(private: Path, inner: str) -> dict:
    """What nbgrader's autograde recorded of the submission in the private gradebook, as JSON: when it
    was handed in and each grade's automatic score. It is read here, where the submission was graded,
    so that the course's one writer only writes (a grading machine's work, not the central one's)."""
    import warnings
    from nbgrader.api import Gradebook
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's notes on nbgrader's own session use
        with Gradebook(f"sqlite:///{private / 'gradebook.db'}") as gb:
            sub = gb.find_submission(ASSIGNMENT, inner)
            return {"timestamp": sub.timestamp.isoformat() if sub.timestamp else None,
                    "grades": [[nb.name, g.name, g.auto_score, g.needs_manual_grade]
                               for nb in sub.notebooks for g in nb.grades]}
