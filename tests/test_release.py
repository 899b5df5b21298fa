"""Generated notebooks are up to date, and say what they should."""
import nbformat
import pytest

from deepngrams.course import release
from deepngrams.grading.report import exercise_of

pytestmark = pytest.mark.slow
MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")


@pytest.fixture(scope="module")
def source():
    return release.read(release.SOURCE_NB)


def test_committed_generated_files_are_up_to_date():
    assert release.stale() == []


def test_stale_copies_are_noticed(tmp_path, monkeypatch):
    nb = release.read(release.RELEASE_NB)
    nb.cells[0].source += "\nan edit"
    edited = tmp_path / "release.ipynb"
    nbformat.write(nb, str(edited))
    monkeypatch.setattr(release, "RELEASE_NB", edited)
    assert any("assignment/" in p or "release" in p for p in release.stale())


def test_solution_cells_come_from_solution_py(source):
    cells = release.cells_by_id(source)
    for name, code in release.solution_blocks().items():
        assert cells[name].source == code
    assert set(release.exercise_names()) == {
        "line_to_tensor", "create_batch_dataset", "GRULM", "compile_model", "log_perplexity",
        "temperature_random_sampling", "GenerativeModel"}


def test_release_hides_solutions_and_hidden_tests():
    text = release.RELEASE_NB.read_text()
    for secret in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "StringLookup(vocabulary=vocab, mask_token=None)(chars)",
                   "_rng = np.random.default_rng"):
        assert secret not in text
    nb = release.read(release.RELEASE_NB)
    stubs = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert len(stubs) == len(release.exercise_names())
    assert all("raise NotImplementedError()" in c.source for c in stubs)


def test_every_exercise_has_graded_tests_and_a_hidden_test(source):
    graded = [release.grade_id(c) for c in source.cells if c.metadata.get("nbgrader", {}).get("grade")]
    by_exercise = {}
    for g in graded:
        by_exercise.setdefault(exercise_of(g, release.exercise_names()), []).append(g)
    assert set(by_exercise) == set(release.exercise_names())
    hidden = {exercise_of(g, release.exercise_names()) for g in graded if g.endswith("_hidden")}
    assert hidden >= {"line_to_tensor", "create_batch_dataset", "GRULM", "log_perplexity", "GenerativeModel"}


def test_solutions_notebook_ran_cleanly():
    nb = release.read(release.SOLUTION_NB)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "solutions/ was written without running it"
    for c in code:
        for out in c.outputs:
            assert out.output_type != "error", c.source[:80]
            if c.metadata.get("nbgrader", {}).get("grade"):
                assert not (out.output_type == "stream" and out.name == "stderr"), c.source[:80]
    assert not any(marker in c.source for c in code for marker in MARKERS)


def test_the_source_as_graded_keeps_solutions_and_hidden_tests_without_their_markers(source):
    """What `make bench` runs as a graded notebook: the code of every solution and hidden test in place."""
    cells = release.cells_by_id(source)
    for name, cell in cells.items():
        stripped = release.strip_markers(cell.source)
        assert not any(marker in stripped for marker in MARKERS), name
        kept = [line for line in cell.source.splitlines() if not line.strip().startswith(("### BEGIN", "### END"))]
        assert stripped.rstrip("\n").splitlines() == kept, name
    hidden = [cell for name, cell in cells.items() if name.endswith("_hidden")]
    assert hidden and all("check_cell(" in release.strip_markers(cell.source) for cell in hidden)
    assert release.strip_markers("a\n  ### BEGIN SOLUTION\nb\n### END SOLUTION\n") == "a\nb\n"


def test_no_marker_is_left_in_a_sample_submission():
    """A marker on a cell's last line (no newline after it) goes as well as any other (the solutions
    notebook is checked in test_solutions_notebook_ran_cleanly)."""
    assert release.strip_markers("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION") == \
        "def f():\n    return 1\n"
    samples = sorted(release.SUBMITTED.glob(f"*/{release.ASSIGNMENT}/{release.ASSIGNMENT}.ipynb"))
    assert samples
    for path in samples:
        assert not any(marker in cell.source for cell in release.read(path).cells for marker in MARKERS), path
