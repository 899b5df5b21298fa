"""Plain `nbgrader autograde` (what the Formgrader's Autograde button runs) grades as the batch does.

A fresh course (no Generate clicked, no gradebook) is set up by its configuration; the notebooks
run sandboxed, with the grader's verdicts; the roster names the students.
"""
import json
import re
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

import hostile
from metadata_cases import BREAKOUTS, LIVE_LINKS, REMOTE_IMAGES, SPLIT_BY_MARKUP, live_links
from deepngrams.course import course_setup, release
from deepngrams.grading import batch, sandbox
from deepngrams.grading.report import score_table

pytestmark = pytest.mark.slow

FULL = dict(hostile.POINTS)
CAROL = dict(FULL, GRULM=0, compile_model=0, temperature_random_sampling=0, GenerativeModel=0)


PARENT_CELL = "import os\nprint('kernel parent', os.getppid())"
# Markdown cells carol adds: the Formgrader renders them.
SCRIPT_LINKS = LIVE_LINKS[:3] + BREAKOUTS[:1] + SPLIT_BY_MARKUP[4:5] + REMOTE_IMAGES[:1]
# carol's log_perplexity notes a digest of every case it is called on; her last cell prints them.
RECORD_CASES = ("import hashlib\n_cases_seen = []\n_log_perplexity = log_perplexity\n\n"
                "def log_perplexity(preds, target):\n"
                "    _cases_seen.append(hashlib.sha256(np.asarray(preds, np.float32).tobytes()).hexdigest()[:12])\n"
                "    return _log_perplexity(preds, target)")
PRINT_CASES = "print('cases seen:', ' '.join(_cases_seen))"
EXTRA_FILES = {"evil.html": "<script>alert(1)</script>", "sub/evil.svg": "<svg onload=alert(1)></svg>"}


def _write(course: Path, student: str, nb) -> None:
    path = course / "submitted" / student / release.ASSIGNMENT / f"{release.ASSIGNMENT}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, str(path))


@pytest.fixture(scope="module")
def course():
    if problem := sandbox.available():
        pytest.skip(f"no sandbox here: {problem}")
    (release.ROOT / ".cache").mkdir(exist_ok=True)
    course = release.scratch_course(Path(tempfile.mkdtemp(prefix="test-door-", dir=release.ROOT / ".cache")))
    (course / "students.csv").write_text("id,first_name,last_name,email\nalice_solved,Alice,Liddell,\n")
    rel = release.read(release.RELEASE_NB)
    samples = release.sample_submissions(rel)
    _write(course, "alice_solved", samples["alice_solved"])
    carol = samples["carol_partial"]
    carol.cells.append(nbformat.v4.new_code_cell(PARENT_CELL))  # graded after alice: from the factory
    carol.cells[4:4] = [nbformat.v4.new_markdown_cell(markdown) for markdown in SCRIPT_LINKS]
    answer = next(c for c in carol.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "line_to_tensor")
    answer.cell_type, answer.source = "markdown", answer.source + "\n# (data: one string or a list of them)"
    del answer["outputs"], answer["execution_count"]  # an answer saved as markdown, which nbgrader turns back
    at = next(i for i, c in enumerate(carol.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "log_perplexity")
    carol.cells.insert(at + 1, nbformat.v4.new_code_cell(RECORD_CASES))
    carol.cells.append(nbformat.v4.new_code_cell(PRINT_CASES))
    # Two cells of one id (nbformat gives the second a random one when nbgrader reads the file) and a
    # deleted test cell (nbgrader puts it back, with a new id): the cases drawn must not change.
    carol.cells = [c for c in carol.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_line_to_tensor_hidden"]
    carol.cells[1].id = carol.cells[0].id
    path = course / "submitted" / "carol_partial" / release.ASSIGNMENT / f"{release.ASSIGNMENT}.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(carol))  # as written: nbformat.write would give the repeated id a new one
    handed_in = course / "submitted" / "carol_partial" / release.ASSIGNMENT
    (handed_in / "sub").mkdir()
    for name, text in EXTRA_FILES.items():
        (handed_in / name).write_text(text)
    ctx = hostile.Context(course, samples["alice_solved"], samples["bob_untouched"], "door", 120.0, 300.0, 4.0)
    patcher = next(c for c in hostile.cases() if c.name == "x02_patch_unittest")
    patcher.build(ctx).write(course / "submitted" / "mallory_patcher" / release.ASSIGNMENT)
    done = release.nbgrader("autograde", release.ASSIGNMENT, cwd=course)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    yield course, done.stdout + done.stderr
    shutil.rmtree(course.parent, ignore_errors=True)


def _scores(course: Path) -> dict:
    names, rows = score_table(course, {})
    return {student: {ex: got for ex, (got, _) in scores.items()} for student, scores, _ in rows}


def test_a_fresh_course_records_its_assignment_when_its_configuration_loads(course):
    course, _ = course
    assert course_setup.assignment_recorded(course)


def test_the_samples_get_the_batchs_scores(course):
    """carol saved her line_to_tensor answer as markdown (with `(data:` in it, which looks like a link):
    nbgrader turns it back into code and it keeps its points."""
    scores = _scores(course[0])
    assert scores["alice_solved"] == FULL
    assert scores["carol_partial"] == CAROL


def _cases_seen(course: Path) -> str:
    path = course / "autograded" / "carol_partial" / release.ASSIGNMENT / f"{release.ASSIGNMENT}.ipynb"
    [cell] = [c for c in nbformat.read(str(path), 4).cells if c.source == PRINT_CASES]
    return "".join(o.get("text", "") for o in cell.outputs)


def test_the_batch_draws_the_cases_the_door_drew(course):
    """One student's file draws the same cases through either door: the seed is the student's name and
    the notebook's code, not the cell ids nbformat and nbgrader made up for carol's repeated id and
    deleted test cell, nor the way each door reads the file."""
    course, _ = course
    door = _cases_seen(course)
    assert door.startswith("cases seen: ") and len(door.split()) >= 4, door
    other = release.scratch_course(Path(tempfile.mkdtemp(prefix="test-door-batch-", dir=release.ROOT / ".cache")))
    try:
        shutil.copytree(course / "submitted" / "carol_partial", other / "submitted" / "carol_partial")
        (other / ".grading").mkdir(mode=0o700, exist_ok=True)
        shutil.copy(course / ".grading" / "hidden-cases.key", other / ".grading" / "hidden-cases.key")
        [outcome] = batch.grade(other, workers=1, progress=False)
        assert {ex: got for ex, (got, _) in outcome.scores.items()} == CAROL, outcome
        assert _cases_seen(other) == door
    finally:
        shutil.rmtree(other.parent, ignore_errors=True)


def test_notebooks_run_in_the_sandbox_and_the_grader_judges(course):
    course, log = course
    assert "Ran in the sandbox" in log and "WITHOUT a sandbox" not in log
    assert _scores(course)["mallory_patcher"] == {ex: 0 for ex in FULL}


def test_one_command_imports_tensorflow_once_for_all_its_kernels(course):
    """The kernels after the first are forked from the command's kernel factory: their parent is
    outside the sandbox (pid 0 seen from inside), where a kernel started in the sandbox has one there."""
    course, _ = course
    path = course / "autograded" / "carol_partial" / release.ASSIGNMENT / f"{release.ASSIGNMENT}.ipynb"
    [cell] = [c for c in nbformat.read(str(path), 4).cells if c.source == PARENT_CELL]
    assert [o.get("text") for o in cell.outputs] == ["kernel parent 0\n"], cell.outputs


def test_markdown_that_links_to_a_script_reaches_the_formgrader_as_text(course):
    """The Formgrader renders the autograded notebook on the Jupyter server's origin: what plain nbgrader
    writes there has no live link to a script and no image from elsewhere, and the log says which cells
    were shown as text."""
    course, log = course
    path = course / "autograded" / "carol_partial" / release.ASSIGNMENT / f"{release.ASSIGNMENT}.ipynb"
    markdown = [c.source for c in nbformat.read(str(path), 4).cells if c.cell_type == "markdown"]
    from nbconvert.preprocessors.sanitize import SanitizeHTML
    for link in SCRIPT_LINKS:  # as written, or as the sanitiser leaves it (comments gone, in the code block)
        [shown] = [m for m in markdown if link in m or SanitizeHTML().sanitize_html_tags(link) in m]
        assert shown.startswith("(This cell links to a script"), shown
    assert [m for m in markdown if live_links(m)] == []
    assert log.count("shown as text") >= len(SCRIPT_LINKS)


def test_only_the_notebook_reaches_the_graded_folder_the_formgrader_serves(course):
    """nbgrader copies what is handed in beside the notebook into autograded/, which the Formgrader serves
    on the Jupyter server's origin: a page and a picture with script are gone from there. Beside the notebook
    are only the two files release_feedback reads, as the grader writes them (none was handed in here: an
    empty time, not late, and a new secret). (A link beside the notebook leaves the whole folder out:
    test_a_link_or_a_device_anywhere_in_a_folder_leaves_it_out.)"""
    course, log = course
    graded = course / "autograded" / "carol_partial" / release.ASSIGNMENT
    assert sorted(p.name for p in graded.rglob("*")) == [f"{release.ASSIGNMENT}.ipynb", "submission_secret.txt",
                                                         "timestamp.txt"]  # generate_feedback copies the two
    assert (graded / "timestamp.txt").read_bytes() == b""
    assert re.fullmatch(rb"[0-9a-f]{128}", (graded / "submission_secret.txt").read_bytes())
    assert "evil.html" in log and "not copied for grading" in log


def test_the_source_notebook_handed_in_is_refused_as_a_copy_and_as_a_link():
    """nbgrader's collect copies what a link in the exchange points to, and autograde reads through links:
    the course's own notebook (hidden tests and solutions) handed in as a file is refused with the reason,
    and as a link is left out; neither scores."""
    (release.ROOT / ".cache").mkdir(exist_ok=True)
    course = release.scratch_course(Path(tempfile.mkdtemp(prefix="test-door-link-", dir=release.ROOT / ".cache")))
    source = course / "source" / release.ASSIGNMENT / f"{release.ASSIGNMENT}.ipynb"
    try:
        for student in ("trudy_copied", "mallet_linked"):
            (course / "submitted" / student / release.ASSIGNMENT).mkdir(parents=True)
        shutil.copy(source, course / "submitted" / "trudy_copied" / release.ASSIGNMENT / source.name)
        (course / "submitted" / "mallet_linked" / release.ASSIGNMENT / source.name).symlink_to(source)
        done = release.nbgrader("autograde", release.ASSIGNMENT, cwd=course, timeout=300)
        text = done.stdout + done.stderr
        assert done.returncode != 0 and "trudy_copied: not graded: it holds the course's hidden tests" in text
        assert "[deepngrams] 'mallet_linked' left out" in text
        for student in ("trudy_copied", "mallet_linked"):
            assert not (course / "autograded" / student / release.ASSIGNMENT / source.name).exists()
            assert _scores(course).get(student, {}) in ({}, {ex: 0 for ex in FULL})
    finally:
        shutil.rmtree(course.parent, ignore_errors=True)


def test_folders_nbgrader_cannot_take_are_left_out_and_the_others_graded():
    """A notebook that is a pipe held nbgrader's run for good, one that is a link was followed, markup in
    a name reached the Formgrader's pages: each is left out and said why (escaped), and the student
    beside them is graded. A line break in a name stops nbgrader's run before it reads what to leave out:
    that folder is named, to be renamed."""
    import os
    (release.ROOT / ".cache").mkdir(exist_ok=True)
    course = release.scratch_course(Path(tempfile.mkdtemp(prefix="test-door-odd-", dir=release.ROOT / ".cache")))
    untouched = release.read(release.RELEASE_NB)
    notebook = f"{release.ASSIGNMENT}.ipynb"
    try:
        for student in ("<img src=x onerror=alert(1)>", "<esc\x1b]0;owned\x07>", "zz_ok"):
            _write(course, student, untouched)
        pipe = course / "submitted" / "piped" / release.ASSIGNMENT
        pipe.mkdir(parents=True)
        os.mkfifo(pipe / notebook)
        linked = course / "submitted" / "linked" / release.ASSIGNMENT
        linked.mkdir(parents=True)
        (linked / notebook).symlink_to(course / "submitted" / "zz_ok" / release.ASSIGNMENT / notebook)
        done = release.nbgrader("autograde", release.ASSIGNMENT, cwd=course, timeout=300)
        text = done.stdout + done.stderr
        assert done.returncode == 0, text[-3000:]
        assert (course / "autograded" / "zz_ok" / release.ASSIGNMENT / notebook).is_file()
        with sqlite3.connect(course / "gradebook.db") as con:
            students = {i for (i,) in con.execute("SELECT id FROM student")}
        assert "zz_ok" in students and not students & {"<img src=x onerror=alert(1)>", "<esc\x1b]0;owned\x07>", "piped", "linked"}
        for shown in ("'<img src=x onerror=alert(1)>'", r"'<esc\x1b]0;owned\x07>'", "'piped'", "'linked'"):
            assert f"[deepngrams] {shown} left out" in text, shown
        assert "\x1b" not in text and "\x07" not in text
        _write(course, "a\nb", untouched)
        done = release.nbgrader("autograde", release.ASSIGNMENT, cwd=course, timeout=300)
        assert r"[deepngrams] 'a\nb' cannot be left out by nbgrader, so rename it" in done.stderr
    finally:
        shutil.rmtree(course.parent, ignore_errors=True)


def test_a_link_or_a_device_anywhere_in_a_folder_leaves_it_out(tmp_path):
    """nbgrader copies what is handed in beside the notebook and follows links: a link to /dev/zero fills
    the disk, one to a terminal waits for good. Plain files and folders are taken."""
    import os
    from deepngrams.grading.submission import door_refusals
    for student in ("ok", "zero", "tty", "folder_link", "whole_link"):
        (tmp_path / "submitted" / student / release.ASSIGNMENT / "sub").mkdir(parents=True)
        (tmp_path / "submitted" / student / release.ASSIGNMENT / f"{release.ASSIGNMENT}.ipynb").write_text("{}")
    (tmp_path / "submitted" / "ok" / release.ASSIGNMENT / "sub" / "notes.md").write_text("mine")
    (tmp_path / "submitted" / "zero" / release.ASSIGNMENT / "notes.bin").symlink_to("/dev/zero")
    (tmp_path / "submitted" / "tty" / release.ASSIGNMENT / "sub" / "in").symlink_to("/dev/tty")
    (tmp_path / "submitted" / "folder_link" / release.ASSIGNMENT / "etc").symlink_to("/etc")
    whole = tmp_path / "submitted" / "whole_link" / release.ASSIGNMENT
    shutil.rmtree(whole)
    os.symlink(tmp_path / "submitted" / "ok" / release.ASSIGNMENT, whole)
    refused = door_refusals(tmp_path)
    assert sorted(refused) == ["folder_link", "tty", "whole_link", "zero"]
    assert "'notes.bin'" in refused["zero"] and "'in'" in refused["tty"] and "'etc'" in refused["folder_link"]


def test_a_name_nbgrader_would_print_raw_or_read_as_a_pattern_leaves_the_folder_out(tmp_path):
    """nbgrader prints student ids to the terminal as they are and reads them as file patterns (a folder
    named "[a]lice" would grade alice's, one named "*" everyone's): such folders are left out, and
    said why; ordinary names, with accents or joiners, are taken."""
    from deepngrams.grading.submission import door_refusals
    names = ["ok", "Zoë_Łukasz", "می\u200cخواهم", "soft\u00adhyphen", "esc\x1b]0;owned\x07", "bidi\u202ename",
             "bell\x07", "[a]lice_solved", "*", "who?", "a]b"]
    for student in names:
        (tmp_path / "submitted" / student / release.ASSIGNMENT).mkdir(parents=True)
        (tmp_path / "submitted" / student / release.ASSIGNMENT / f"{release.ASSIGNMENT}.ipynb").write_text("{}")
    refused = door_refusals(tmp_path)
    assert sorted(refused) == sorted(names[4:])
    assert all("terminal" in refused[n] for n in names[4:7]) and all("pattern" in refused[n] for n in names[7:])
    assert all("rename the folder" in reason for reason in refused.values())


def test_students_have_names_from_the_roster_or_their_id(course):
    course, _ = course
    with sqlite3.connect(course / "gradebook.db") as con:
        names = {i: (first, last) for i, first, last in con.execute("SELECT id, first_name, last_name FROM student")}
    assert names["alice_solved"] == ("Alice", "Liddell")
    assert names["carol_partial"] == ("", "carol_partial")
    assert names["mallory_patcher"] == ("", "mallory_patcher")


def test_without_bubblewrap_nbgrader_refuses_to_run_a_notebook(course, tmp_path):
    """No silent fall-back to running student code unsandboxed: the message names the fix."""
    course, _ = course
    venv_bin = str(Path(sys.executable).parent)
    assert shutil.which("bwrap", path=venv_bin) is None
    done = release.nbgrader("autograde", release.ASSIGNMENT, "--force", "--student", "carol_partial",
                            cwd=course, env={"PATH": venv_bin})  # the environment's python and alembic, no bwrap
    text = done.stdout + done.stderr
    assert "bubblewrap is not installed" in text and "DEEPNGRAMS_NO_SANDBOX=1" in text
    assert "Ran in the sandbox" not in text and "WITHOUT a sandbox" not in text
