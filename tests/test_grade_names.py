"""Student ids and student text are data: odd folder names, escape sequences, formulas, a failed merge.

One small batch (`python -m deepngrams grade`, two workers) grades a solved notebook under folder names that
nbgrader's paths, globs and CSV cannot take, one whose graded test cell carries terminal escape
sequences as its id and whose markdown links to scripts and a tracking image (in a folder named
like a spreadsheet formula), one whose merge fails, and
one folder whose name is not UTF-8. The tests read what the batch printed and wrote.
"""
import contextlib
import copy
import csv
import io
import os
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from deepngrams.course import release
from deepngrams.grading import sandbox
from deepngrams.grading.untrusted import csv_cell
from deepngrams.grading.batch import main as grade_main
from deepngrams.grading import gradebook

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sandbox.available() is not None, reason=str(sandbox.available()))]
ESCAPES = "test_x\x1b[2J\x1b[H\x1b]0;owned\x07\x9b31m\u202e"
ODD = ["a,b", "new\nline", "[ab]", "star*", "trailing ", "-dash", "é" * 125, "=2+5"]  # "é" * 125: 250 bytes
MERGE_FAILS = "zz_merge_fails"
NOT_UTF8 = os.fsdecode(b"bad\xffname")


def _solved() -> nbformat.NotebookNode:
    return nbformat.read(str(release.SUBMITTED / "alice_solved" / release.ASSIGNMENT / "deep_ngrams.ipynb"), 4)


HOSTILE_MARKDOWN = """[click](javascript:alert('HOSTILE_JS')) [also](JaVaScRiPt:alert(1))
[page](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)
![pixel](https://tracker.example.org/HOSTILE_PIXEL.gif)
<img src="https://tracker.example.org/HOSTILE_IMG.gif"> <a href="https://example.org/ok">a fine link</a>
"""


def _with_escaped_grade_id(nb):
    nb = copy.deepcopy(nb)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(HOSTILE_MARKDOWN))
    cell = nbformat.v4.new_code_cell('print("All tests passed")')
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": 5,
                                 "grade_id": ESCAPES, "schema_version": 3}
    nb.cells.append(cell)
    return nb


@pytest.fixture(scope="module")
def batch():
    (release.ROOT / ".cache").mkdir(exist_ok=True)
    course = release.scratch_course(Path(tempfile.mkdtemp(prefix="test-names-", dir=release.ROOT / ".cache")))
    solved = _solved()
    for student in ODD:
        folder = course / "submitted" / student / release.ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(_with_escaped_grade_id(solved) if student == "=2+5" else solved,
                       str(folder / "deep_ngrams.ipynb"))
    shutil.copytree(release.SUBMITTED / "bob_untouched", course / "submitted" / MERGE_FAILS)
    shutil.copytree(release.SUBMITTED / "bob_untouched", course / "submitted" / NOT_UTF8)
    real_merge = gradebook.merge

    def merge(course_, report):
        if report["student"] == MERGE_FAILS:
            raise OSError("injected: the disk is full")
        return real_merge(course_, report)

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(gradebook, "merge", merge)
        status = grade_main(["--course", str(course), "--workers", "2"])
    yield course, status, out.getvalue()
    shutil.rmtree(course.parent, ignore_errors=True)


def _rows(path: Path, key: str) -> dict:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    ids = [r[key] for r in rows]
    assert len(ids) == len(set(ids)), ids
    return {r[key]: r for r in rows}


def test_every_odd_folder_name_gets_its_points(batch):
    course, status, _ = batch
    assert status == 0
    report = _rows(course / "report.csv", "student")
    for student in ODD:
        row = report[csv_cell(student)]
        assert (row["total"], row["out_of"]) == ("19", "19"), (student, row)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert set(ODD) <= {s.id for s in gb.students}
    for student in ODD:
        page = course / "feedback" / student / release.ASSIGNMENT / "deep_ngrams.html"
        assert "All tests passed (checked by the grader)" in page.read_text()
        assert (course / "autograded" / student / release.ASSIGNMENT / "deep_ngrams.ipynb").is_file()
    leftovers = [p.name for kind in ("autograded", "feedback") for p in (course / kind).iterdir()
                 if p.name.startswith(".")]
    assert leftovers == []


def test_grades_csv_has_one_quoted_row_per_student(batch):
    course, _, _ = batch
    grades = _rows(course / "grades.csv", "student_id")
    assert set(grades) == {csv_cell(s) for s in ODD}  # the merge that failed wrote nothing
    for student in ODD:
        assert grades[csv_cell(student)]["score"] == "19.0"
    assert grades["'=2+5"]["assignment"] == release.ASSIGNMENT
    assert grades["'-dash"]["max_score"] == "19.0"


def test_no_control_character_or_live_formula_reaches_a_person(batch):
    course, _, printed = batch
    for text in (printed, (course / "report.csv").read_text(), (course / "grades.csv").read_text()):
        assert not any(c in text for c in "\x1b\x07\x9b\u202e"), repr(text[:200])
    assert "\\x1b[2J" in printed and "\\x1b]0;owned\\x07" in printed
    report = _rows(course / "report.csv", "student")
    assert "'=2+5" in report and "=2+5" not in report
    assert "\\x1b[2J" in report["'=2+5"]["notes"]
    for path in (course / "report.csv", course / "grades.csv"):
        with path.open(newline="") as f:
            for row in csv.reader(f):
                assert not any(cell[:1] in ("=", "+", "@", "\t", "\r") for cell in row), row
                assert not any(cell[:1] == "-" and not _number(cell) for cell in row), row
    page = (course / "feedback" / "=2+5" / release.ASSIGNMENT / "deep_ngrams.html").read_text()
    assert 'http-equiv="Content-Security-Policy"' in page and "<script" not in page.lower()
    urls = _urls(page)  # of elements, not text: escaped markup may show as text, it does not load
    assert ("a", "https://example.org/ok") in urls
    assert not [u for _, u in urls if u.lower().startswith(("javascript", "data:text"))], urls
    assert not [u for tag, u in urls if tag != "a" and not u.startswith("data:image/")], urls


def test_a_failed_merge_costs_that_student_only(batch):
    course, _, printed = batch
    report = _rows(course / "report.csv", "student")
    assert report[MERGE_FAILS]["reason"].startswith("not graded: the result could not be saved")
    assert "injected" in report[MERGE_FAILS]["reason"] and MERGE_FAILS in printed
    assert not (course / "autograded" / MERGE_FAILS).exists()
    assert all(report[csv_cell(s)]["total"] == "19" for s in ODD)


def test_a_name_that_is_not_utf8_is_refused_before_the_batch(batch):
    course, _, printed = batch
    report = _rows(course / "report.csv", "student")
    row = report["bad\\udcffname"]
    assert "not valid UTF-8" in row["reason"] and row["total"] == "0"
    assert not (course / "autograded" / NOT_UTF8).exists() and not (course / "feedback" / NOT_UTF8).exists()
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert NOT_UTF8 not in {s.id for s in gb.students}


def _urls(page: str) -> list[tuple[str, str]]:
    """(tag, URL) of every href and src of the page's elements."""
    found = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.extend((tag, v) for k, v in attrs if k in ("href", "src") and v)

    Parser().feed(page)
    return found


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
