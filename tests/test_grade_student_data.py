"""Student ids, student text and notebook metadata are data: odd folder names, escape sequences,
formulas, broken or fuzzed metadata, a failed merge.

One batch (`python -m deepngrams grade`, two workers) grades a solved notebook under folder names
that nbgrader's paths, globs and CSV cannot take, each handing it in with its metadata broken in
one of the ways students' editors and hands break it (tests/metadata_cases.py; one saved outside
nbformat's schema, as other editors save it), and a few more
with fuzzed metadata; one whose graded test cell carries terminal escape sequences as its id and
whose markdown links to scripts and a tracking image (in a folder named like a spreadsheet
formula); one whose merge fails; and one folder whose name is not UTF-8. A correct notebook gets
19/19 whatever its name and its metadata. The tests read what the batch printed and wrote.
"""
import contextlib
import copy
import csv
import io
import json
import os
import random
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from deepngrams.course import release
from deepngrams.grading import cells, gradebook, sandbox
from deepngrams.grading.batch import main as grade_main
from deepngrams.grading.untrusted import csv_cell

from metadata_cases import KINDS, fuzz

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sandbox.available() is not None, reason=str(sandbox.available()))]
ESCAPES = "test_x\x1b[2J\x1b[H\x1b]0;owned\x07\x9b31m\u202e"
ODD = ["a,b", "new\nline", "[ab]", "star*", "trailing ", "-dash", "é" * 125, "semi;colon", "=2+5"]  # "é" * 125: 250 bytes
# The metadata each odd name hands in its solved notebook with (the last odd name has the escaped grade id).
HARDER = ("not_a_mapping", "nested_deep", "grade_id_a_list", "solution_claims_grade", "test_not_graded",
          "missing_attachment", "huge_number", "saved_by_other_editors")
STUDENT_OF = dict(zip(HARDER, ODD))
FUZZED = [f"fuzzed_{i}" for i in range(3)]
MERGE_FAILS = "zz_merge_fails"
NOT_UTF8 = os.fsdecode(b"bad\xffname")
MARKUP = '<img src=x onerror=alert(1)>";alert(2);"'  # nbgrader's Formgrader pages show ids as written


def _solved() -> nbformat.NotebookNode:
    return nbformat.read(str(release.SUBMITTED / "alice_solved" / release.ASSIGNMENT / "deep_ngrams.ipynb"), 4)


HOSTILE_MARKDOWN = """[click](javascript:alert('HOSTILE_JS')) [also](JaVaScRiPt:alert(1))
[page](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)
"""
TRACKING_MARKDOWN = """![pixel](https://tracker.example.org/HOSTILE_PIXEL.gif)
<img src="https://tracker.example.org/HOSTILE_IMG.gif"> <a href="https://example.org/tracked">a link beside them</a>
"""
FINE_MARKDOWN = 'See <a href="https://example.org/ok">a fine link</a>.'



def _with_escaped_grade_id(nb):
    nb = copy.deepcopy(nb)
    nb.cells[1:1] = [nbformat.v4.new_markdown_cell(text) for text in (HOSTILE_MARKDOWN, TRACKING_MARKDOWN, FINE_MARKDOWN)]
    cell = nbformat.v4.new_code_cell('print("All tests passed")')
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": 5,
                                 "grade_id": ESCAPES, "schema_version": 3}
    nb.cells.append(cell)
    return nb


def _handed_in() -> dict[str, str]:
    """The text of the notebook each student hands in."""
    solved = _solved()
    data = json.loads(nbformat.writes(solved))
    texts = {STUDENT_OF[kind]: KINDS[kind](data) for kind in HARDER}
    texts["=2+5"] = nbformat.writes(_with_escaped_grade_id(solved))
    rng = random.Random(7)
    texts.update({student: json.dumps(fuzz(data, rng)) for student in FUZZED})
    return texts


@pytest.fixture(scope="module")
def batch():
    (release.ROOT / ".cache").mkdir(exist_ok=True)
    course = release.scratch_course(Path(tempfile.mkdtemp(prefix="test-names-", dir=release.ROOT / ".cache")))
    for student, text in _handed_in().items():
        folder = course / "submitted" / student / release.ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / "deep_ngrams.ipynb").write_text(text, encoding="utf-8")
    shutil.copytree(release.SUBMITTED / "bob_untouched", course / "submitted" / MERGE_FAILS)
    shutil.copytree(release.SUBMITTED / "bob_untouched", course / "submitted" / NOT_UTF8)
    shutil.copytree(release.SUBMITTED / "alice_solved", course / "submitted" / MARKUP)
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
    assert set(grades) == {csv_cell(s) for s in ODD + FUZZED}  # the merge that failed wrote nothing
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
    # The Formgrader renders the autograded notebook's markdown itself: links to scripts reach it as text.
    graded = nbformat.read(str(course / "autograded" / "=2+5" / release.ASSIGNMENT / "deep_ngrams.ipynb"), 4)
    for marker in ("HOSTILE_JS", "HOSTILE_PIXEL"):  # and images from elsewhere, which would tell when it is read
        shown = [c.source for c in graded.cells if c.cell_type == "markdown" and marker in c.source]
        assert len(shown) == 1 and shown[0].startswith("(This cell links to a script") and "```text\n" in shown[0]
    assert FINE_MARKDOWN in [c.source for c in graded.cells]


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


# ----------------------------------------------------------------------------------------
# Metadata: whatever a student's editor or hand put there, a correct notebook gets 19/19
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [*HARDER, *FUZZED])
def test_a_correct_submission_gets_full_marks_whatever_its_metadata(batch, kind):
    course, _, _ = batch
    student = STUDENT_OF.get(kind, kind)
    row = _rows(course / "report.csv", "student")[csv_cell(student)]
    assert row["reason"] == "", row
    assert (row["total"], row["out_of"]) == ("19", "19"), row
    page = course / "feedback" / student / release.ASSIGNMENT / f"{release.ASSIGNMENT}.html"
    assert "All tests passed (checked by the grader)" in page.read_text()


def test_the_graded_notebook_has_the_source_structure(batch):
    course, _, _ = batch
    source = nbformat.read(str(course / "source" / release.ASSIGNMENT / f"{release.ASSIGNMENT}.ipynb"), 4)

    def tests(nb):
        return [(cells.nbgrader_meta(c)["grade_id"], float(cells.nbgrader_meta(c)["points"]))
                for c in nb.cells if cells.is_test_cell(c)]

    for student in (STUDENT_OF["solution_claims_grade"], STUDENT_OF["test_not_graded"], FUZZED[0]):
        done = nbformat.read(str(course / "autograded" / student / release.ASSIGNMENT / f"{release.ASSIGNMENT}.ipynb"), 4)
        assert tests(done) == tests(source)


def test_a_name_that_web_pages_read_as_markup_never_reaches_the_gradebook(batch):
    course, _, printed = batch
    row = _rows(course / "report.csv", "student")[csv_cell(MARKUP)]
    assert row["reason"].startswith("not graded: the student folder's name has") and "rename" in row["reason"]
    assert not (course / "autograded" / MARKUP).exists() and not (course / "feedback" / MARKUP).exists()
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert MARKUP not in {s.id for s in gb.students}
