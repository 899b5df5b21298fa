"""Steps added to nbgrader's autograde pipeline (registered in grader/nbgrader_config.py).

Each is a small preprocessor with one concern, like nbgrader's own (and, like theirs,
enabled by default: a plain nbconvert Preprocessor would silently do nothing).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from nbgrader.preprocessors import DeduplicateIds, NbGraderPreprocessor, OverwriteCells

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


class OverwriteCellsKeepingOrder(OverwriteCells):
    """nbgrader's OverwriteCells, with deleted graded cells put back robustly.

    nbgrader 0.9's own `add_missing_cells` assumes the cell before a deleted test cell is a
    graded or solution cell (a locked markdown cell there raises KeyError), and crashes on
    a cell whose nbgrader metadata DeduplicateIds emptied. Here a deleted cell goes back
    right after the nearest earlier source cell the submission still has.
    """

    def add_missing_grade_cells(self, nb, resources):
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        order = [c.name for c in source_nb.source_cells]
        sources = {c.name: c for c in source_nb.source_cells}
        solutions = {c.name for c in source_nb.solution_cells}
        for grade_cell in sorted(source_nb.grade_cells, key=lambda c: order.index(c.name)):
            present = [_nbgrader(c).get("grade_id") for c in nb.cells]
            if grade_cell.name in present:
                continue
            self.log.warning("Graded cell %s was deleted: putting it back", grade_cell.name)
            cell = self.missing_cell_transform(sources[grade_cell.name], grade_cell.max_score,
                                               is_solution=grade_cell.name in solutions)
            earlier = order[: order.index(grade_cell.name)]
            # After the nearest earlier cell still there; with none (a notebook rebuilt without
            # nbgrader's metadata), at the end, after the student's code.
            at = next((present.index(name) + 1 for name in reversed(earlier) if name in present), len(nb.cells))
            nb.cells.insert(at, cell)
        return nb, resources

    def add_missing_task_cells(self, nb, resources):
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        sources = {c.name: c for c in source_nb.source_cells}
        present = {_nbgrader(c).get("grade_id") for c in nb.cells}
        for task_cell in source_nb.task_cells:
            if task_cell.name not in present:
                nb.cells.append(self.missing_cell_transform(sources[task_cell.name], task_cell.max_score, is_task=True))
        return nb, resources


class IgnoreUnknownGradedCells(NbGraderPreprocessor):
    """A cell whose nbgrader id the source notebook does not have (made up by a student) loses its
    nbgrader metadata: it counts for nothing, and nbgrader 0.9 no longer aborts the submission."""

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook
        with Gradebook(resources["nbgrader"]["db_url"]) as gb:
            source = gb.find_notebook(resources["nbgrader"]["notebook"], resources["nbgrader"]["assignment"])
            known = {c.name for c in source.source_cells} | {c.name for c in source.grade_cells}
        for cell in nb.cells:
            grade_id = _nbgrader(cell).get("grade_id")
            if "nbgrader" in cell.get("metadata", {}) and grade_id not in known:
                self.log.warning("Cell %r is not in the assignment: ignoring its nbgrader metadata", grade_id)
                del cell.metadata["nbgrader"]
        return nb, resources


class DeduplicateIdsCleanly(DeduplicateIds):
    """nbgrader's DeduplicateIds, but a copied graded cell loses its nbgrader metadata entirely.

    nbgrader 0.9 leaves `"nbgrader": {}` on the copies, which CheckCellMetadata then rejects
    as an old metadata format, and the whole submission fails.
    """

    def preprocess_cell(self, cell, resources, cell_index):
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if cell.get("metadata", {}).get("nbgrader") == {}:
            del cell.metadata["nbgrader"]
        return cell, resources


class SandboxedExecute(NbGraderPreprocessor):
    """nbgrader's Execute, replaced: the notebook runs in a sandbox, the grader judges the tests.

    Used by `python -m deepngrams grade`, which describes the job in $DEEPNGRAMS_GRADE_JOB.
    Every graded test cell gets its output from the grader's verdict (a pass, or an error
    that says what was wrong), so nbgrader's SaveAutoGrades scores it as usual.
    """

    def preprocess(self, nb, resources):
        import nbformat
        from . import checks, sandbox
        from .grade import apply_verdicts, build_job, reason_of
        job = json.loads(os.environ["DEEPNGRAMS_GRADE_JOB"])
        batch = json.loads(Path(job["checks"]).read_text())
        student = str(resources.get("nbgrader", {}).get("student", ""))
        secret = checks.secret_for(bytes.fromhex(batch["key"]), student, nbformat.writes(nb).encode())
        prepared = checks.prepare(secret)
        limits = sandbox.Limits(**job["limits"])
        result = sandbox.run(build_job(nb, prepared, limits.cell_timeout), Path(job["scratch"]), job["slot"], limits,
                             sandboxed=job["sandboxed"], threads=job["threads"])
        failed = apply_verdicts(nb, prepared, result)
        reason = reason_of(result, limits)
        Path(job["report"]).write_text(json.dumps({"reason": reason, "failed": failed,
                                                   "seconds": round(result.seconds, 1)}))
        self.log.info("Ran in the sandbox in %.1f s; failed: %s; %s", result.seconds, failed, reason or "no problem")
        return nb, resources


class HideHiddenTests(NbGraderPreprocessor):
    """Feedback shows a test cell without its hidden part (nbgrader's feedback keeps it whole).

    Only the course's graded test cells are touched, leniently: a student's markdown that happens to
    mention the markers is left alone, and an unterminated region is hidden to the end of the cell.
    """

    begin, end = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type != "code" or not _nbgrader(cell).get("grade") or _nbgrader(cell).get("solution"):
            return cell, resources
        kept, hiding = [], False
        for line in cell.source.split("\n"):
            if self.begin in line:
                hiding = True
            elif self.end in line:
                hiding = False
            elif not hiding:
                kept.append(line)
        cell.source = "\n".join(kept)
        return cell, resources
