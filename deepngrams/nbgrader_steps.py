"""Steps added to nbgrader's autograde pipeline (registered in grader/nbgrader_config.py).

Each is a small preprocessor with one concern, like nbgrader's own (and, like theirs,
enabled by default: a plain nbconvert Preprocessor would silently do nothing).
"""
from __future__ import annotations

from nbgrader.preprocessors import NbGraderPreprocessor

MARKER = "# grade-up-to-here"
NOT_RUN = ('raise RuntimeError("Not graded: this test comes after the cell marked '
           '`# grade-up-to-here`.")')


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


class GradeUpToHere(NbGraderPreprocessor):
    """A student's `# grade-up-to-here` in a solution cell: run nothing after that cell.

    Later test cells are replaced by one that fails with the reason (so they score 0 with an
    explanation rather than full points for not running); other later code is not run.
    """

    def preprocess(self, nb, resources):
        cut = next((i for i, c in enumerate(nb.cells)
                    if c.cell_type == "code" and _nbgrader(c).get("solution") and MARKER in c.source), None)
        if cut is None:
            return nb, resources
        for cell in nb.cells[cut + 1:]:
            if cell.cell_type != "code":
                continue
            if _nbgrader(cell).get("grade"):
                cell.source = NOT_RUN
            else:
                cell.source = "# not run: this cell comes after `# grade-up-to-here`"
        self.log.info("Stopping after cell %d: it is marked %r", cut, MARKER)
        return nb, resources
