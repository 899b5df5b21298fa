"""JupyterLab in Chromium, used as a student and as an instructor use it.

One JupyterLab server (as `make lab` starts it, headless) on a temporary copy of the bundle's
student files and of the course: the student opens the release notebook, types one exercise, runs
every cell, sees each test cell pass and validates with nbgrader's button; the instructor finds
the assignment and the sample submissions in the Formgrader, autogrades one and opens its graded
notebook. The repository's assignment/ and grader/ are never touched.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from deepngrams.config import ASSIGNMENT, COURSE_DIR, RELEASE_NB, ROOT
from deepngrams.course import release

NOTEBOOK = f"student/assignment/{ASSIGNMENT}.ipynb"  # in the server's root folder
TYPED_EXERCISE = "line_to_tensor"
SOLVED_STUDENT = "alice_solved"
STUDENTS = ("alice_solved", "bob_untouched", "carol_partial")
NEWS_PLUGIN = "@jupyterlab/apputils-extension:announcements"
PASS_MESSAGE = "All tests passed"  # what w1_unittest prints when a test cell passes

# Milliseconds, for Playwright. Running the notebook trains the model a little (about a minute on 2 cores).
PAGE_TIMEOUT = 60_000
RUN_ALL_TIMEOUT = 300_000
VALIDATE_TIMEOUT = 240_000
AUTOGRADE_TIMEOUT = 300_000
SERVER_START_TIMEOUT = 120  # seconds


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path
    process: subprocess.Popen

    def page_url(self, path: str) -> str:
        return f"{self.url}{path}?token={self.token}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unittest_cell_sources(nb) -> list[str]:
    """The sources of the cells that call a w1_unittest test: each must print PASS_MESSAGE."""
    return [cell.source for cell in nb.cells
            if cell.cell_type == "code" and cell.source.startswith("w1_unittest.test_")]


def student_notebook():
    """A student's notebook with every exercise solved but TYPED_EXERCISE, and that exercise's solution."""
    released = release.read(RELEASE_NB)
    solved = release.sample_submissions(released)[SOLVED_STUDENT]
    typed_solution = release.cells_by_id(solved)[TYPED_EXERCISE].source
    release.cells_by_id(solved)[TYPED_EXERCISE].source = release.cells_by_id(released)[TYPED_EXERCISE].source
    return solved, typed_solution


def copy_bundle_for_lab(lab_root: Path) -> None:
    """The student's files under student/, the course under grader/, the bundle's root nbgrader config.

    The copy lies outside the bundle: the course finds the bundle through DEEPNGRAMS_BUNDLE, as a
    course kept elsewhere does, and the student's notebook finds its own copies of the files.
    """
    student = lab_root / "student"
    student.mkdir(parents=True)
    for name in ("assignment", "data", "model"):
        shutil.copytree(ROOT / name, student / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copy(ROOT / "w1_unittest.py", student / "w1_unittest.py")
    course = lab_root / "grader"
    course.mkdir()
    shutil.copy(COURSE_DIR / "nbgrader_config.py", course / "nbgrader_config.py")
    for name in ("source", "submitted"):
        shutil.copytree(COURSE_DIR / name, course / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    if (COURSE_DIR / "students.csv").is_file():  # the roster: the students' names
        shutil.copy(COURSE_DIR / "students.csv", course / "students.csv")
    shutil.copy(ROOT / "nbgrader_config.py", lab_root / "nbgrader_config.py")  # CourseDirectory.root = ./grader


def jupyter_environment(state: Path) -> dict:
    """Jupyter's and IPython's per-user folders in `state`: nothing of the machine's user leaks in.

    The lab's settings turn the news plugin off (as `make lab` does), draw every cell of a
    notebook, so the page holds every cell's output, and turn autosave off: an autosave still
    writing when Validate saves makes JupyterLab see the file changed on disk and ask ("File
    Changed"), and Validate waits for that answer.
    """
    page_config = state / "config" / "labconfig" / "page_config.json"
    page_config.parent.mkdir(parents=True)
    page_config.write_text(json.dumps({"disabledExtensions": {NEWS_PLUGIN: True}}))
    settings = state / "settings" / "@jupyterlab"
    tracker = settings / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    docmanager = settings / "docmanager-extension" / "plugin.jupyterlab-settings"
    docmanager.parent.mkdir(parents=True)
    docmanager.write_text(json.dumps({"autosave": False}))
    bin_dir = Path(sys.executable).parent  # nbgrader runs `alembic` from it
    return dict(os.environ,
                PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                DEEPNGRAMS_BUNDLE=str(ROOT),
                JUPYTER_CONFIG_DIR=str(state / "config"),
                JUPYTER_DATA_DIR=str(state / "data"),
                JUPYTER_RUNTIME_DIR=str(state / "runtime"),
                JUPYTERLAB_SETTINGS_DIR=str(state / "settings"),
                JUPYTERLAB_WORKSPACES_DIR=str(state / "workspaces"),
                IPYTHONDIR=str(state / "ipython"))


def start_lab(lab_root: Path, state: Path) -> Lab:
    """`make lab`'s JupyterLab, headless, on `lab_root`; it runs there so nbgrader reads its config."""
    port, token = free_port(), secrets.token_hex(16)
    command = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1",
               f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={lab_root}", "--LabApp.news_url=None"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = state / "jupyterlab.log"
    with open(log, "w") as log_file:
        process = subprocess.Popen(command, cwd=lab_root, env=jupyter_environment(state), stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    lab = Lab(f"http://127.0.0.1:{port}/", token, lab_root, log, process)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(lab.page_url("api/status"), timeout=10):
                return lab
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                stop_lab(lab)
                raise RuntimeError(f"JupyterLab did not start; the end of its log:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)


def stop_lab(lab: Lab) -> None:
    """The server and its kernels (one process group)."""
    try:
        os.killpg(lab.process.pid, signal.SIGTERM)
        lab.process.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(lab.process.pid, signal.SIGKILL)
        lab.process.wait(timeout=30)


@pytest.fixture(scope="module")
def lab():
    state = Path(tempfile.mkdtemp(prefix="deepngrams-browser-"))
    try:
        lab_root = state / "lab"
        copy_bundle_for_lab(lab_root)
        solved, _ = student_notebook()
        release.write(solved, lab_root / NOTEBOOK)
        server = start_lab(lab_root, state)
        yield server
        stop_lab(server)
    finally:
        shutil.rmtree(state, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The student's side

def open_notebook(page, lab: Lab, path: str):
    """The notebook's panel, once its kernel is idle."""
    page.goto(lab.page_url(f"lab/tree/{path}"), timeout=PAGE_TIMEOUT)
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=PAGE_TIMEOUT)
    return panel


def code_cell_starting_with(panel, text: str):
    cell = panel.locator(".jp-CodeCell").filter(
        has=panel.page.locator(".cm-content", has_text=re.compile("^" + re.escape(text))))
    cell.wait_for(timeout=PAGE_TIMEOUT)
    return cell


def type_into_cell(cell, text: str) -> None:
    """Replace a cell's code as a student would write it: click in the editor, select all, type.

    The text goes in as typed input without per-key events, so the editor's auto-indent and
    bracket closing do not change it.
    """
    editor = cell.locator(".cm-content")
    editor.click()
    page = cell.page
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.insert_text(text)
    page.keyboard.press("Escape")  # back to command mode


def editor_text(cell) -> str:
    return "\n".join(cell.locator(".cm-line").all_text_contents())


def click_menu(page, menu: str, item: str) -> None:
    page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(menu)}$")).click()
    page.locator(".lm-Menu:visible .lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()


PROMPTS = """panel => [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent.trim())"""


def run_all_cells(panel) -> None:
    """Run > Run All Cells, then wait until no cell is queued or running any more."""
    click_menu(panel.page, "Run", "Run All Cells")
    node = panel.element_handle()
    panel.page.wait_for_function(f"panel => ({PROMPTS})(panel).includes('[*]:')", arg=node, timeout=PAGE_TIMEOUT)
    panel.page.wait_for_function(f"panel => !({PROMPTS})(panel).includes('[*]:')", arg=node,
                                 timeout=RUN_ALL_TIMEOUT)
    panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=PAGE_TIMEOUT)


def cells_of(panel) -> list[dict]:
    """Each code cell as the page shows it: its prompt, code, and outputs by kind."""
    return panel.evaluate("""panel => [...panel.querySelectorAll('.jp-CodeCell')].map(cell => ({
        prompt: cell.querySelector('.jp-InputPrompt').textContent.trim(),
        code: [...cell.querySelectorAll('.cm-line')].map(line => line.textContent).join('\\n'),
        outputs: [...cell.querySelectorAll('.jp-OutputArea-output')].map(out => ({
            mime: out.dataset.mimeType || '', text: out.innerText})),
    }))""")


def is_error_output(output: dict) -> bool:
    """A traceback (JupyterLab shows errors as stderr, with the exception's name and a traceback)."""
    return output["mime"] == "application/vnd.jupyter.stderr" and \
        bool(re.search(r"Traceback|^\w*(Error|Exception)\b", output["text"], re.M))


def test_student_types_an_exercise_runs_all_cells_and_validates(lab, page):
    _, typed_solution = student_notebook()
    panel = open_notebook(page, lab, NOTEBOOK)

    exercise = code_cell_starting_with(panel, f"def {TYPED_EXERCISE}(")
    assert "raise NotImplementedError()" in editor_text(exercise)
    type_into_cell(exercise, typed_solution)
    assert editor_text(exercise).split() == typed_solution.split()

    started = time.monotonic()
    run_all_cells(panel)
    run_seconds = time.monotonic() - started
    print(f"Run All Cells: {run_seconds:.0f} s")

    cells = cells_of(panel)
    not_run = [cell["code"].splitlines()[0] for cell in cells if not re.fullmatch(r"\[\d+\]:", cell["prompt"])]
    errors = [f"{cell['code'].splitlines()[0]}\n{output['text'][-1500:]}"
              for cell in cells for output in cell["outputs"] if is_error_output(output)]
    assert not errors, "error output after Run All:\n\n" + "\n\n".join(errors)
    assert not not_run, f"cells not run after Run All ({run_seconds:.0f} s): {not_run}"

    expected_tests = unittest_cell_sources(release.read(RELEASE_NB))
    shown_tests = [cell for cell in cells if cell["code"].startswith("w1_unittest.test_")]
    assert [cell["code"] for cell in shown_tests] == expected_tests
    failing = [cell["code"] for cell in shown_tests
               if not any(PASS_MESSAGE in output["text"] for output in cell["outputs"])]
    assert not failing, f"test cells without {PASS_MESSAGE!r}: {failing}"

    started = time.monotonic()
    button = panel.locator(".jp-NotebookPanel-toolbar jp-button.validate-button")
    button.click()
    dialog = page.locator(".jp-Dialog")
    try:
        dialog.wait_for(timeout=VALIDATE_TIMEOUT)
    except PlaywrightTimeoutError:
        pytest.fail(f"no dialog {VALIDATE_TIMEOUT // 1000} s after Validate; the button says {button.inner_text()!r}")
    print(f"Validate: {time.monotonic() - started:.0f} s")
    title = dialog.locator(".jp-Dialog-header").inner_text()
    assert title.strip() == "Validation Results", f"Validate showed {title!r}:\n{dialog.inner_text()[-3000:]}"
    message = dialog.locator("#validation-message")
    assert "validation-success" in message.get_attribute("class"), message.inner_text()
    assert "Success! Your notebook passes all the tests." in message.inner_text()
    dialog.get_by_role("button", name="Ok").click()

    saved = release.cells_by_id(release.read(lab.root / NOTEBOOK))[TYPED_EXERCISE].source
    assert saved.split() == typed_solution.split()  # Validate saved what was typed


# ---------------------------------------------------------------------------------------------
# The instructor's side

def open_formgrader(page, lab: Lab):
    """Nbgrader > Formgrader in JupyterLab: the Formgrader's pages in a frame of the main area."""
    page.goto(lab.page_url("lab"), timeout=PAGE_TIMEOUT)
    click_menu(page, "Nbgrader", "Formgrader")
    return page.frame_locator("#formgrader-iframe iframe")


def score_of(text: str) -> tuple[float, float]:
    """'19 / 19' as (19.0, 19.0)."""
    found = re.fullmatch(r"\s*([\d.]+)\s*/\s*([\d.]+)\s*", text)
    assert found, f"not a score: {text!r}"
    return float(found.group(1)), float(found.group(2))


def points_of(text: str) -> float:
    """A graded cell's points from the Formgrader's '/ 2.0' beside its score."""
    found = re.search(r"/\s*([\d.]+)", text)
    assert found, f"no points in {text!r}"
    return float(found.group(1))


def total_points() -> float:
    source = release.read(COURSE_DIR / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    return float(sum(cell.metadata.nbgrader.get("points", 0) for cell in source.cells
                     if cell.metadata.get("nbgrader", {}).get("grade")))


def test_instructor_autogrades_a_submission_in_the_formgrader(lab, page):
    formgrader = open_formgrader(page, lab)

    assignment = formgrader.locator("#main-table tr", has=formgrader.locator("td.name", has_text=ASSIGNMENT))
    assignment.wait_for(timeout=PAGE_TIMEOUT)
    assignment.locator("td.num-submissions a", has_text=str(len(STUDENTS))).click()

    rows = formgrader.locator("#main-table tr", has=formgrader.locator("td.student-id"))
    rows.first.wait_for(timeout=PAGE_TIMEOUT)
    assert sorted(rows.locator("td.student-id").all_inner_texts()) == sorted(STUDENTS)

    alice = rows.filter(has=formgrader.locator("td.student-id", has_text=re.compile(f"^{SOLVED_STUDENT}$")))
    started = time.monotonic()
    alice.locator("td.autograde a").click()
    outcome = formgrader.locator("#success-modal, #error-modal")
    outcome.wait_for(timeout=AUTOGRADE_TIMEOUT)
    print(f"Autograde: {time.monotonic() - started:.0f} s")
    assert outcome.get_attribute("id") == "success-modal", \
        f"Autograde of {SOLVED_STUDENT} failed:\n{outcome.inner_text()[-4000:]}"
    outcome.locator(".modal-footer button").click()
    outcome.wait_for(state="hidden", timeout=PAGE_TIMEOUT)

    full_marks = total_points()
    alice.locator("td.status", has_text="graded").wait_for(timeout=PAGE_TIMEOUT)
    assert score_of(alice.locator("td.score").inner_text()) == (full_marks, full_marks)

    alice.locator("td.student-name a").click()  # her submission: one row per notebook
    notebook = formgrader.locator("#main-table tr", has=formgrader.locator("td.name a", has_text=ASSIGNMENT))
    notebook.wait_for(timeout=PAGE_TIMEOUT)
    assert score_of(notebook.locator("td.score").inner_text()) == (full_marks, full_marks)

    notebook.locator("td.name a").click()  # her graded notebook, as the Formgrader shows it
    scores = formgrader.locator("input.score")
    scores.first.wait_for(timeout=PAGE_TIMEOUT)
    formgrader.locator("input.score[placeholder]").first.wait_for(timeout=PAGE_TIMEOUT)
    cells = scores.evaluate_all("""inputs => inputs.map(input => ({
        id: input.id, score: input.placeholder, points: input.parentElement.textContent}))""")
    assert cells, "the graded notebook shows no graded cell"
    below_full = [cell for cell in cells if float(cell["score"] or 0) != points_of(cell["points"])]
    assert not below_full, f"graded cells below full marks: {below_full}"
    assert sum(float(cell["score"]) for cell in cells) == full_marks
