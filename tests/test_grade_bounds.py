"""The grader's own work on a student's file is bounded, and what it writes is safe to read.

No submission is run here: preflight, the worker's time limit, the internal ids, the grades CSV
and the report are checked one function at a time.
"""
import csv
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from deepngrams import config
from deepngrams.grading import gradebook
from deepngrams.grading import preflight
from deepngrams.grading import report
from deepngrams.grading import submission
from deepngrams.course import release
from deepngrams.config import ROOT
from deepngrams.grading.untrusted import csv_cell

ODD = ["a,b", "new\nline", "[ab]", "star*", "trailing ", "-dash", "é" * 125, "=2+5", '"quoted"', "plain"]


def _huge_notebook(path: Path, cells: int) -> None:
    cell = {"cell_type": "raw", "source": "", "metadata": {"nbgrader": {"grade_id": "test_line_to_tensor"}}}
    nb = {"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": [cell] * cells}
    path.write_text(json.dumps(nb, separators=(",", ":")))


# Preflight in a child of its own (killed if it runs past the bound), which imports only preflight.
PREFLIGHT = ("import json, sys\nfrom pathlib import Path\nfrom deepngrams.grading import preflight\n"
             "print(json.dumps(preflight.preflight(Path(sys.argv[1]), ['test_line_to_tensor'])))")


@pytest.mark.slow
def test_a_notebook_of_100k_cells_gets_a_reason_in_bounded_time(tmp_path):
    path = tmp_path / "deep_ngrams.ipynb"
    _huge_notebook(path, 100_000)
    assert path.stat().st_size < config.MAX_NOTEBOOK_BYTES
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    start = time.monotonic()
    try:  # a generous bound: it takes about a second
        done = subprocess.run([sys.executable, "-c", PREFLIGHT, str(path)], capture_output=True, text=True,
                              env=env, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("preflight still running after 60 s on a 100k-cell notebook")
    assert done.returncode == 0, done.stderr[-2000:]
    reason, notes = json.loads(done.stdout.splitlines()[-1])
    assert reason.startswith("too many cells (100000, at most") and notes == []
    assert time.monotonic() - start < 60


def test_duplicate_ids_are_counted_in_one_pass(tmp_path):
    path = tmp_path / "deep_ngrams.ipynb"
    _huge_notebook(path, config.MAX_CELLS)
    start = time.monotonic()
    reason, notes = preflight.preflight(path, ["test_line_to_tensor", "test_GRULM"])
    assert reason == ""
    assert (f"cell test_line_to_tensor appears {config.MAX_CELLS} times: the first is graded, the others run as "
            f"ordinary cells") in notes
    assert "deleted cell test_GRULM put back" in notes
    assert time.monotonic() - start < 30


STUCK_CONFIG = '''\
import os, subprocess, time
child = subprocess.Popen(["sleep", "300"])
open("child.pid", "w").write(str(child.pid))
time.sleep(300)
'''


@pytest.mark.slow
def test_the_worker_time_limit_kills_a_stuck_nbgrader_step_and_what_it_started(tmp_path):
    (tmp_path / "nbgrader_config.py").write_text(STUCK_CONFIG)  # run_steps loads it: it hangs
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    start = time.monotonic()
    # The limit counts from the child's fork off the nbgrader host, which has nbgrader loaded: the
    # configuration file runs within a second.
    status, message = submission._worker(tmp_path, "s0", env, timeout=10)
    assert time.monotonic() - start < 90
    assert status is None and "ran over 10 s and were stopped" in message
    pid = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 10
    while _running(pid):
        assert time.monotonic() < deadline, "what the stuck step started outlived its time limit"
        time.sleep(0.1)


def _running(pid: int) -> bool:
    """Whether `pid` is a process that has not ended (a zombie has: it waits only to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_internal_ids_are_plain_and_distinct():
    ids = [submission.internal_id(s) for s in ODD + [os.fsdecode(b"bad\xff")]]
    assert len(set(ids)) == len(ids)
    assert all(i.isascii() and i.isalnum() and len(i) < 20 for i in ids)
    assert submission.unusable_name(os.fsdecode(b"bad\xff")).startswith("the student folder's name is not valid UTF-8")
    assert submission.unusable_name(" ")
    assert not any(submission.unusable_name(s) for s in ODD if not set(s) & set(submission.MARKUP))


@pytest.mark.parametrize("name", ["<img src=x onerror=alert(1)>", 'x";alert(1);"', "x';alert(1);'", "</script>",
                                  "a&lt;b", "tick`${alert(1)}`", "back\\slash", '"quoted"'])
def test_a_name_web_pages_read_as_markup_is_refused(name):
    """nbgrader's Formgrader writes student ids into its pages and scripts unescaped."""
    reason = submission.unusable_name(name)
    assert reason.startswith("the student folder's name has") and reason.endswith("rename the folder")


@pytest.fixture(scope="module")
def empty_gradebook(tmp_path_factory) -> Path:
    """A gradebook holding the assignment alone, for each test to copy: a new gradebook runs
    nbgrader's `alembic` in a child process for its schema version (seconds of imports)."""
    path = tmp_path_factory.mktemp("gradebook") / "gradebook.db"
    with Gradebook(f"sqlite:///{path}") as gb:
        gb.add_assignment(release.ASSIGNMENT)
    return path


def test_grades_csv_is_quoted_with_one_row_per_student(tmp_path, empty_gradebook):
    shutil.copy(empty_gradebook, tmp_path / "gradebook.db")
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gb:
        for student in ODD:
            gb.add_student(student, last_name="=cmd|' /C calc'!A0", first_name="x,y")
    gradebook.export_grades(tmp_path)
    with (tmp_path / "grades.csv").open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == gradebook.GRADES_COLUMNS
    assert sorted(r["student_id"] for r in rows) == sorted(csv_cell(s) for s in ODD)
    for r in rows:
        assert r["assignment"] == release.ASSIGNMENT and r["score"] == "0.0" and r["timestamp"] == ""
        assert r["last_name"] == "'=cmd|' /C calc'!A0" and r["first_name"] == "x,y"
    assert not list(tmp_path.glob(".grades.csv*"))


def test_report_and_table_escape_student_text(tmp_path):
    outcomes = [report.Outcome("=2+5\x1b[2J", {"GRULM": (4.0, 4.0)}, "bad \x1b]0;title\x07", ["cell -x\u202e"]),
                report.Outcome("plain", {"GRULM": (-1.0, 4.0)}, "", [])]
    report.write_report(tmp_path, outcomes)
    with (tmp_path / "report.csv").open(newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"'=2+5\\x1b[2J", "plain"}
    assert rows["'=2+5\\x1b[2J"]["reason"] == "bad \\x1b]0;title\\x07"
    assert rows["'=2+5\\x1b[2J"]["notes"] == "cell -x\\u202e" and rows["plain"]["GRULM"] == "-1"
    table = report.format_report(outcomes)
    assert "\x1b" not in table and "\u202e" not in table and "=2+5\\x1b[2J" in table and "\\x1b]0;title\\x07" in table


def test_a_merge_failure_for_a_name_the_file_system_refuses_costs_that_student_only(tmp_path, empty_gradebook):
    course = tmp_path
    shutil.copy(empty_gradebook, course / "gradebook.db")
    private = tmp_path / "private"
    private.mkdir()
    report = {"student": "x" * 300, "reason": "no deep_ngrams.ipynb handed in", "notes": [], "seconds": 1.0,
              "private": str(private), "graded": False, "submission": "0" * 16}  # 300 bytes: no such folder
    before = (course / "gradebook.db").read_bytes()
    outcome = gradebook.save_outcome(course, report, "v")
    assert outcome.reason.startswith("not graded: the result could not be saved (OSError")
    assert outcome.scores == {} and not private.exists()
    assert (course / "gradebook.db").read_bytes() == before
    assert not [p for kind in ("autograded", "feedback") if (course / kind).is_dir() for p in (course / kind).iterdir()]


def _folder(course: Path, student: str = "student") -> Path:
    folder = course / "submitted" / student / config.ASSIGNMENT
    folder.mkdir(parents=True)
    return folder


def test_only_the_assignments_notebook_and_submits_files_are_read(tmp_path, monkeypatch):
    """A thousand hard links to one large notebook, named *.ipynb, cost the grader nothing: nbgrader
    grades only the assignment's notebook, so no other file is read, by grading or by its fingerprint,
    and each of those once by each."""
    folder = _folder(tmp_path)
    notebook = folder / "deep_ngrams.ipynb"
    notebook.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}))
    (folder / "timestamp.txt").write_text("2026-12-01 10:00:00.000000 UTC")
    (folder / "submission_secret.txt").write_text("0123456789abcdef")
    for i in range(1000):
        os.link(notebook, folder / f"copy{i:04}.ipynb")
    read = []
    real = preflight.read_handed_in
    monkeypatch.setattr(preflight, "read_handed_in", lambda path, *a: read.append(path.name) or real(path, *a))
    files, reason, notes, _ = submission.handed_in_files(tmp_path, "student", [])
    gradebook.submission_hash(tmp_path, "student")
    assert reason == "" and notes == []
    assert sorted(files) == ["deep_ngrams.ipynb", "submission_secret.txt", "timestamp.txt"]
    assert sorted(read) == ["deep_ngrams.ipynb", "deep_ngrams.ipynb", "submission_secret.txt", "submission_secret.txt",
                            "timestamp.txt", "timestamp.txt"]


NOT_GRADABLE = b"{ not json"
USABLE_SECRETS = [secrets.token_hex(64).encode(), b"written by hand\r\n", b"x" * 1024, b"\x01\x02 ascii controls", b" \n"]


@pytest.mark.parametrize("notebook", [b"", NOT_GRADABLE], ids=["graded", "refused"])
@pytest.mark.parametrize("secret", USABLE_SECRETS, ids=["submit", "newline", "longest", "controls", "blank"])
def test_the_secret_nbgrader_submit_wrote_goes_along_byte_for_byte(tmp_path, secret, notebook):
    """nbgrader's release_feedback files the feedback under a hash of submission_secret.txt, which the
    student's fetch_feedback computes from their own copy: the graded and feedback folders need it as
    handed in, for a notebook that cannot be graded too (its page says why)."""
    folder = _folder(tmp_path)
    (folder / "deep_ngrams.ipynb").write_bytes(notebook or json.dumps(
        {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}).encode())
    (folder / "timestamp.txt").write_text("2026-12-01 10:00:00.000000 UTC")
    (folder / "submission_secret.txt").write_bytes(secret)
    files, reason, notes, _ = submission.handed_in_files(tmp_path, "student", [])
    assert files["submission_secret.txt"] == secret and not any("secret" in n for n in notes)
    assert files["timestamp.txt"] == b"2026-12-01 10:00:00.000000 UTC"
    assert ("deep_ngrams.ipynb" in files) == (notebook != NOT_GRADABLE) and bool(reason) == (notebook == NOT_GRADABLE)


def _unusable_secret(kind: str, path: Path) -> None:
    if kind == "link":
        (path.parent / "elsewhere").write_text("a usable secret, but behind a link")
        path.symlink_to(path.parent / "elsewhere")
    elif kind == "folder":
        path.mkdir()
    elif kind == "pipe":
        os.mkfifo(path)
    else:
        path.write_bytes({"empty": b"", "binary": b"\xff\xfe\x00", "utf8": "clé".encode(), "too long": b"x" * 1025}[kind])


UNUSABLE = ["empty", "binary", "utf8", "too long", "link", "folder", "pipe"]


@pytest.mark.parametrize("notebook", [b"", NOT_GRADABLE], ids=["graded", "refused"])
@pytest.mark.parametrize("kind", UNUSABLE)
def test_a_secret_release_feedback_could_not_use_is_replaced_and_noted(tmp_path, kind, notebook):
    """release_feedback stops for the whole class at a secret it cannot read as text: such a secret is
    replaced by a new one, as submit writes them (that student's feedback is then released where no
    one fetches it), and the note says so; nothing behind a link or a pipe is read."""
    folder = _folder(tmp_path)
    (folder / "deep_ngrams.ipynb").write_bytes(notebook or json.dumps(
        {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}).encode())
    _unusable_secret(kind, folder / "submission_secret.txt")
    files, _, notes, _ = submission.handed_in_files(tmp_path, "student", [])
    new = files["submission_secret.txt"]
    assert len(new) == 128 and re.fullmatch(rb"[0-9a-f]+", new)
    assert new != submission.handed_in_files(tmp_path, "student", [])[0]["submission_secret.txt"]  # drawn anew
    assert [n for n in notes if "submission_secret.txt" in n and "replaced" in n], notes
    assert files["timestamp.txt"] == b""  # none handed in: release_feedback needs one, and empty is not late


@pytest.mark.parametrize("timestamp", [None, b"", b"  \n", b"not a time", b"\xff"],
                         ids=["missing", "empty", "blank", "not a time", "binary"])
def test_a_secret_always_goes_with_a_timestamp(tmp_path, timestamp):
    """release_feedback reads timestamp.txt beside each page before its secret: with a secret and no time
    nbgrader can read, an empty one goes along (not late; a time it cannot read refuses the notebook)."""
    folder = _folder(tmp_path)
    shutil.copy(release.SUBMITTED / "bob_untouched" / config.ASSIGNMENT / "deep_ngrams.ipynb", folder)
    (folder / "submission_secret.txt").write_bytes(b"0123456789abcdef")
    if timestamp is not None:
        (folder / "timestamp.txt").write_bytes(timestamp)
    files, reason, _, _ = submission.handed_in_files(tmp_path, "student", [])
    assert files["timestamp.txt"] == b"" and files["submission_secret.txt"] == b"0123456789abcdef"
    assert ("deep_ngrams.ipynb" in files) == (reason == "") == (timestamp in (None, b"", b"  \n"))


@pytest.mark.parametrize("timestamp", [None, "2026-12-01 10:00:00.000000 UTC"], ids=["by hand", "zip_collect"])
def test_a_missing_secret_is_made_without_a_note(tmp_path, timestamp):
    """A folder handed in by hand (the samples) has neither file, and nbgrader's zip_collect writes only the
    timestamp: release_feedback would stop for the whole class at the first such page, so each gets a new
    secret (and an empty timestamp where none: not late), with no note on every student."""
    folder = _folder(tmp_path)
    shutil.copy(release.SUBMITTED / "alice_solved" / config.ASSIGNMENT / "deep_ngrams.ipynb", folder)
    if timestamp:
        (folder / "timestamp.txt").write_text(timestamp)
    files, reason, notes, _ = submission.handed_in_files(tmp_path, "student", [])
    assert reason == "" and not any("secret" in n for n in notes)
    assert sorted(files) == ["deep_ngrams.ipynb", "submission_secret.txt", "timestamp.txt"]
    assert re.fullmatch(rb"[0-9a-f]{128}", files["submission_secret.txt"])
    assert files["timestamp.txt"] == (timestamp or "").encode()


def test_a_broken_notebook_beside_the_assignments_costs_nothing(tmp_path):
    folder = _folder(tmp_path)
    shutil.copy(release.SUBMITTED / "alice_solved" / config.ASSIGNMENT / "deep_ngrams.ipynb", folder)
    (folder / "Untitled.ipynb").write_bytes(b"{ not json")
    (folder / "scratch.ipynb").write_bytes(b"")
    files, reason, _, _ = submission.handed_in_files(tmp_path, "student", [])
    assert reason == "" and sorted(files) == ["deep_ngrams.ipynb", "submission_secret.txt", "timestamp.txt"]


def test_a_missing_notebook_names_a_few_of_the_others(tmp_path):
    folder = _folder(tmp_path)
    for i in range(8):
        (folder / f"my_work_{i}.ipynb").write_text("{}")
    files, reason, _, _ = submission.handed_in_files(tmp_path, "student", [])
    assert sorted(files) == ["submission_secret.txt", "timestamp.txt"] and reason == ("no deep_ngrams.ipynb handed in (found my_work_0.ipynb, my_work_1.ipynb, "
                                      "my_work_2.ipynb, my_work_3.ipynb, my_work_4.ipynb and 3 more: rename it)")


def test_the_fingerprint_tells_apart_every_change_grading_could_see(tmp_path):
    folder = _folder(tmp_path)
    notebook = folder / "deep_ngrams.ipynb"
    seen = set()

    def now() -> str:
        found = gradebook.submission_hash(tmp_path, "student")
        assert found == submission.handed_in_files(tmp_path, "student", [])[3]  # one way to read, both places
        assert found not in seen
        seen.add(found)
        return found

    now()  # nothing handed in
    (folder / "other.ipynb").write_bytes(b"")  # a name is enough to count while the notebook is missing
    now()
    notebook.write_bytes(b"{}")
    now()
    notebook.write_bytes(b"{ }")
    now()
    (folder / "timestamp.txt").write_bytes(b"{ }")  # the same bytes, in another file
    now()
    (folder / "submission_secret.txt").write_bytes(b"{ }")  # and in a third
    now()
    notebook.unlink()
    notebook.symlink_to(folder / "other.ipynb")  # read as the reason it is refused
    now()
    notebook.unlink()
    notebook.write_text("Ea link, not a file: hand in the notebook itself")  # the bytes of that reason
    now()
    found = gradebook.submission_hash(tmp_path, "student")
    (folder / "notes.txt").write_text("not read")
    (folder / "scratch.ipynb").write_text("not read either: the notebook is there")
    assert gradebook.submission_hash(tmp_path, "student") == found


def test_a_file_changed_while_it_is_graded_is_graded_again_next_run(tmp_path, monkeypatch):
    """The mark of a graded submission records what was read before grading, not what the folder
    holds when the result is saved: a file collected again meanwhile is not skipped next run."""
    folder = _folder(tmp_path)
    (folder / "deep_ngrams.ipynb").write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                                                         "cells": []}))
    monkeypatch.setattr(gradebook, "merge", lambda course, report: None)
    monkeypatch.setattr(gradebook, "scores_of", lambda course, student: {})

    def graded(change) -> bool:
        shutil.rmtree(tmp_path / "autograded", ignore_errors=True)
        _, reason, notes, read = submission.handed_in_files(tmp_path, "student", [])
        change()  # while the sandbox runs
        private = tmp_path / "private"
        private.mkdir()
        gradebook.save_outcome(tmp_path, {"student": "student", "reason": reason, "notes": notes, "seconds": 1.0,
                                          "private": str(private), "submission": read}, "v")
        return gradebook.saved_outcome(tmp_path, "student", "v") is not None

    assert graded(lambda: None)
    assert not graded(lambda: shutil.copy(release.SUBMITTED / "alice_solved" / config.ASSIGNMENT /
                                          "deep_ngrams.ipynb", folder))


@pytest.mark.parametrize("notebook", [True, False], ids=["nbgrader failed", "refused"])
def test_a_page_that_says_why_keeps_submits_files_beside_it(tmp_path, monkeypatch, notebook):
    """Where nbgrader stops or runs out of time before copying the submission's files, or never runs (a
    refused notebook), the graded and feedback folders still get them, and the course's feedback folder
    the page that says why: release_feedback would stop for the whole class there otherwise."""
    course = release.scratch_course(tmp_path)
    (tmp_path / "template.db").write_bytes(b"")
    ran = []
    monkeypatch.setattr(submission, "_worker", lambda *a, **k: ran.append(a) or (None, "ran over 10 s and was stopped"))
    files = {"timestamp.txt": b"2026-12-01 10:00:00.000000 UTC", "submission_secret.txt": b"0123456789abcdef"}
    if notebook:
        files["deep_ngrams.ipynb"] = b"{}"
    report = submission.autograde(course, "student", files, tmp_path / "template.db", b"key", 0, config.Limits(),
                                  tmp_path / "work")
    assert not report["graded"] and len(ran) == notebook  # nbgrader is not started for a refused notebook
    for kind in ("autograded", "feedback"):
        folder = Path(report["private"]) / kind / report["internal"] / config.ASSIGNMENT
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == {
            k: v for k, v in files.items() if k != "deep_ngrams.ipynb"}
    staged = gradebook._stage(course, dict(report, reason=report["reason"] or "refused: not JSON"), "feedback")
    assert sorted(p.name for p in (staged / config.ASSIGNMENT).iterdir()) == [
        "deep_ngrams.html", "submission_secret.txt", "timestamp.txt"]
    assert "could not be graded" in (staged / config.ASSIGNMENT / "deep_ngrams.html").read_text()
