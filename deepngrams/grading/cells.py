"""What the grader reads of a notebook's cells. The metadata comes from a student's file, so every
accessor accepts anything and never raises."""
from __future__ import annotations

MARKER = "# grade-up-to-here"
HIDDEN_TESTS = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")  # nbgrader's markers, only ever in the source notebook
NOT_RUN = ('raise RuntimeError("Not graded: this test comes after the cell marked '
           '`# grade-up-to-here`.")')


def nbgrader_meta(cell) -> dict:
    """A cell's nbgrader metadata; {} where a student's file has none, or something else than a mapping."""
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    found = meta.get("nbgrader") if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else {}


def source_text(cell) -> str:
    """A cell's code as one string ("" where it has none): nbformat allows a list of lines."""
    source = cell.get("source") if isinstance(cell, dict) else None
    return "".join(s for s in source if isinstance(s, str)) if isinstance(source, list) \
        else source if isinstance(source, str) else ""


def is_test_cell(cell) -> bool:
    """A graded test cell (graded, and not a solution cell)."""
    return cell.get("cell_type") == "code" and bool(nbgrader_meta(cell).get("grade")) \
        and not nbgrader_meta(cell).get("solution")


def holds_hidden_tests(cells) -> bool:
    """Whether a graded code cell carries nbgrader's hidden-test markers: the release strips them, so a
    notebook handed in with them is the course's source notebook (through a link that collect or
    autograde followed, say), not a student's work. A student's own cell that mentions them is not."""
    return isinstance(cells, list) and any(
        isinstance(c, dict) and c.get("cell_type") == "code" and nbgrader_meta(c).get("grade") is True
        and HIDDEN_TESTS[0] in source_text(c) for c in cells)


SOURCE_NOTEBOOK = ("not graded: it holds the course's hidden tests, so it is the course's own notebook (the "
                   "assignment's source), not the student's work")
