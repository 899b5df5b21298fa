"""Regenerate everything that is derived from the source notebook and solution.py.

    python -m deepngrams release          # sync, then write assignment/, solutions/, sample submissions
    python -m deepngrams release --check  # exit 1 if any committed copy is stale

1. `sync`: the solution cells (and the given helpers) of the source notebook are copied from
   the blocks of deepngrams/lm/solution.py, so there is one copy of the solution code;
2. `release`: nbgrader's generate_assignment makes the student version (in a scratch copy of
   the course, so grader/'s gradebook is not touched); it is copied to assignment/;
3. `solutions`: the source notebook without hidden tests and solution markers, executed, with outputs;
4. `samples`: three submissions under grader/submitted/ for `make demo`.
"""
from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from deepngrams.atomic import atomic_path
from deepngrams.config import (ASSIGNMENT, COURSE_DIR, REFERENCE_PATH, RELEASE_NB, ROOT, SOLUTION_NB, SOLUTION_PY,
                               SOURCE_NB)

SUBMITTED = COURSE_DIR / "submitted"

_BLOCK = re.compile(r"^# --- (exercise|helper) (\w+)\n(.*?)^# --- end\n", re.S | re.M)
_HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS\n.*?^[ \t]*### END HIDDEN TESTS\n?", re.S | re.M)


def _marker_line(what: str) -> re.Pattern:
    """A `### BEGIN/END <what>` line, also the last line of a cell (no newline after it)."""
    return re.compile(rf"^[ \t]*### (?:BEGIN|END) {what}[ \t]*(?:\n|\Z)", re.M)


_MARKER = _marker_line("SOLUTION")
_ANY_MARKER = _marker_line("(?:SOLUTION|HIDDEN TESTS)")


# -----------------------------------------------------------------------------
# reading and writing notebooks

def read(path: Path):
    return nbformat.read(str(path), as_version=4)


def write(nb, path: Path) -> None:
    """Validate, then write atomically."""
    nbformat.validate(nb)
    with atomic_path(path) as tmp:
        nbformat.write(nb, tmp)


def grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def cells_by_id(nb) -> dict:
    return {grade_id(c): c for c in nb.cells if grade_id(c)}


# -----------------------------------------------------------------------------
# 1. sync the source notebook with solution.py

def solution_blocks() -> dict[str, str]:
    """{name: code} for every `# --- exercise NAME` and `# --- helper NAME` block of solution.py."""
    return {name: code.strip("\n") for _, name, code in _BLOCK.findall(SOLUTION_PY.read_text())}


def exercise_names() -> list[str]:
    return [name for kind, name, _ in _BLOCK.findall(SOLUTION_PY.read_text()) if kind == "exercise"]


def expected_evaluation_text() -> str | None:
    if not REFERENCE_PATH.exists():
        return None
    ref = json.loads(REFERENCE_PATH.read_text(encoding="utf-8"))
    lp = ref["eval"]["log_perplexity"]
    return (f"Expected output: a log perplexity of about {lp:.2f}, a perplexity of about {math.exp(lp):.2f}.\n"
            "The model hesitates, on average, between three or four characters.")


HIDDEN_CELL = """\
# More cases are checked when your notebook is graded.
### BEGIN HIDDEN TESTS
import sys
sys.path.insert(0, str(BUNDLE))
from deepngrams.grading.hidden_cells import check_cell  # the grader's own cases, probe and judge
with w1_unittest.quiet():  # warnings and stderr of correct code cost nothing
    check_cell({grade_id!r}, globals())
### END HIDDEN TESTS"""


def hidden_test(grade_id: str) -> str:
    """The source of a hidden test cell: one call of the grader's checks (written by `make release`)."""
    return HIDDEN_CELL.format(grade_id=grade_id)


def synced(nb):
    """A copy of the source notebook whose solution, helper, hidden test and expected-value cells are
    up to date."""
    nb = copy.deepcopy(nb)
    blocks = solution_blocks()
    cells = cells_by_id(nb)
    for name, code in blocks.items():
        if name not in cells:
            raise ValueError(f"{SOURCE_NB} has no cell with grade_id {name!r} for the block in {SOLUTION_PY}")
        cells[name].source = code
    for name, cell in cells.items():
        if name.endswith("_hidden") and cell.cell_type == "code":
            cell.source = hidden_test(name)
    text = expected_evaluation_text()
    if text and "evaluate_expected" in cells:
        cells["evaluate_expected"].source = text
    return nb


# -----------------------------------------------------------------------------
# 2. the student release, made by nbgrader

# `python -m nbgrader` with two of its costs removed (see that script), for `python -c` with nbgrader's arguments.
NBGRADER = f"import runpy; runpy.run_path({str(Path(__file__).with_name('nbgrader_command.py'))!r}, run_name='__main__')"


def nbgrader(*args: str, cwd: Path, env: dict[str, str] | None = None,
             timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run nbgrader (NBGRADER) from this Python's environment, its bin/ first on PATH; `env`: more variables."""
    env = dict(os.environ, **(env or {}))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([sys.executable, "-c", NBGRADER, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def generate_release(course_dir: Path) -> Path:
    """nbgrader generate_assignment in `course_dir`; returns the released notebook's path."""
    done = nbgrader("generate_assignment", ASSIGNMENT, "--force", cwd=course_dir)
    if done.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{done.stdout}\n{done.stderr}")
    return course_dir / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"


def scratch_course(parent: Path) -> Path:
    """A copy of the course (its config and source notebook, no gradebook, no roster) at `parent`/grader.

    `parent` must lie inside the bundle, as grader/ does: the notebooks find w1_unittest.py,
    the data and the model above the course directory.
    """
    course = parent / "grader"
    (course / "source").mkdir(parents=True)
    shutil.copy(COURSE_DIR / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copytree(SOURCE_NB.parent, course / "source" / ASSIGNMENT)
    return course


def fresh_release() -> "nbformat.NotebookNode":
    """The release notebook generated in a scratch copy of the course (leaves grader/ alone)."""
    (ROOT / ".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:
        return read(generate_release(scratch_course(Path(tmp))))


# -----------------------------------------------------------------------------
# 3. the solved notebook

def solutions_source(source_nb):
    """The source notebook as a solved notebook: no hidden tests, no solution markers, no outputs."""
    nb = copy.deepcopy(source_nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = _MARKER.sub("", _HIDDEN.sub("", cell.source)).rstrip("\n")
            cell.outputs, cell.execution_count = [], None
    nb.cells = [c for c in nb.cells if not (c.cell_type == "code" and grade_id(c) and grade_id(c).endswith("_hidden"))]
    return nb


def strip_markers(source: str) -> str:
    """A source cell as nbgrader's autograde runs it: the solution and the hidden tests in place,
    without their marker lines."""
    return _ANY_MARKER.sub("", source)


def execute(nb, cwd: Path, timeout: int = 600, as_graded: bool = False):
    """Run `nb` in place in a plain kernel (each cell's timing recorded in its metadata): as a student
    runs it, or with `as_graded` as nbgrader's autograde does (NBGRADER_EXECUTION set: the
    demonstrations' short versions)."""
    from nbclient import NotebookClient
    before = os.environ.pop("NBGRADER_EXECUTION", None)
    if as_graded:
        os.environ["NBGRADER_EXECUTION"] = "autograde"  # the kernel inherits it
    try:
        # As when grading: TensorFlow's C++ notices stay out of the cells.
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}},
                       record_timing=True, extra_arguments=["--IPKernelApp.capture_fd_output=False"]).execute()
    finally:
        os.environ.pop("NBGRADER_EXECUTION", None)
        if before is not None:
            os.environ["NBGRADER_EXECUTION"] = before
    return nb


# -----------------------------------------------------------------------------
# 4. sample submissions

def with_solutions(release_nb, names: list[str], edit=lambda name, code: code):
    """The release notebook with the solution cells `names` filled in (through `edit`)."""
    nb = copy.deepcopy(release_nb)
    blocks = solution_blocks()
    for name, cell in cells_by_id(nb).items():
        if name in names:
            cell.source = _MARKER.sub("", edit(name, blocks[name]))
    return nb


def partly_correct_edit(name: str, code: str) -> str:
    """Carol's mistakes: logits instead of log probabilities, and a loss without from_logits."""
    if name == "GRULM":
        return code.replace("tf.keras.layers.Dense(vocab_size, activation=tf.nn.log_softmax)",
                            "tf.keras.layers.Dense(vocab_size)")
    if name == "compile_model":
        return code.replace("from_logits=True", "from_logits=False")
    return code


def sample_submissions(release_nb) -> dict[str, "nbformat.NotebookNode"]:
    names = exercise_names()
    return {
        "alice_solved": with_solutions(release_nb, names),
        "bob_untouched": copy.deepcopy(release_nb),
        "carol_partial": with_solutions(release_nb, ["line_to_tensor", "create_batch_dataset", "GRULM",
                                                     "compile_model", "log_perplexity"], partly_correct_edit),
    }


# -----------------------------------------------------------------------------

def stale() -> list[str]:
    """Which committed generated files differ from what their sources give (no execution)."""
    problems = []
    source = read(SOURCE_NB)
    if _sources(synced(source)) != _sources(source):
        problems.append(f"{_shown(SOURCE_NB)} is out of sync with {_shown(SOLUTION_PY)} or its hidden tests")
    release = fresh_release()
    if not RELEASE_NB.exists() or _sources(read(RELEASE_NB)) != _sources(release):
        problems.append(f"{_shown(RELEASE_NB)} differs from nbgrader's release of the source notebook")
    if not SOLUTION_NB.exists() or _sources(read(SOLUTION_NB)) != _sources(solutions_source(source)):
        problems.append(f"{_shown(SOLUTION_NB)} differs from the source notebook")
    for student, nb in sample_submissions(release).items():
        path = SUBMITTED / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        if not path.exists() or _sources(read(path)) != _sources(nb):
            problems.append(f"{_shown(path)} is stale")
    return problems


def _shown(path: Path) -> str:
    """A path as the user knows it: relative to the bundle when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _sources(nb) -> list:
    """What must match: each cell's type, source and nbgrader metadata."""
    return [(c.cell_type, c.source, c.get("metadata", {}).get("nbgrader")) for c in nb.cells]


def main(argv: list[str] | None = None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="python -m deepngrams release", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only report stale generated files")
    p.add_argument("--no-execute", action="store_true", help="write solutions/ without running it")
    args = p.parse_args(argv)
    if args.check:
        problems = stale()
        for line in problems:
            print(f"stale: {line}", file=sys.stderr)
        if problems:
            print("Run `make release` to regenerate them.", file=sys.stderr)
            return 1
        print("assignment/, solutions/ and the sample submissions are up to date.")
        return 0

    source = read(SOURCE_NB)
    source_synced = synced(source)
    if _sources(source_synced) != _sources(source):
        write(source_synced, SOURCE_NB)
        print(f"synced {_shown(SOURCE_NB)} with {_shown(SOLUTION_PY)}")
    release = fresh_release()  # in a scratch course: the course's gradebook is left alone
    write(release, RELEASE_NB)
    print(f"wrote {_shown(RELEASE_NB)}")
    for student, nb in sample_submissions(release).items():
        path = SUBMITTED / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        write(nb, path)
        print(f"wrote {_shown(path)}")
    solved = solutions_source(source_synced)
    if not args.no_execute:
        print("running the solved notebook (a few minutes) ...", flush=True)
        solved = execute(solved, SOLUTION_NB.parent)
    write(solved, SOLUTION_NB)
    print(f"wrote {_shown(SOLUTION_NB)}")
    return 0
