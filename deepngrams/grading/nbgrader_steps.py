"""Steps added to nbgrader's autograde pipeline (registered in grader/nbgrader_config.py).

Each is a small preprocessor with one concern, like nbgrader's own (and, like theirs,
enabled by default: a plain nbconvert Preprocessor would silently do nothing).
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import traceback
from pathlib import Path

import jinja2
import jsonschema
from nbconvert.exporters import HTMLExporter
from nbgrader.nbgraderformat import MetadataValidator, SchemaTooNewError, SchemaTooOldError
from nbgrader.nbgraderformat.common import BaseMetadataValidator
from nbgrader.preprocessors import CheckCellMetadata, DeduplicateIds, NbGraderPreprocessor, OverwriteCells

from deepngrams.config import GRADE_JOB_ENV
from deepngrams.grading.cells import HIDDEN_TESTS, MARKER, NOT_RUN, SOURCE_NOTEBOOK, holds_hidden_tests, nbgrader_meta
from deepngrams.grading.course_privacy import open_to_others_note
from deepngrams.grading.harmless import (SCHEMA_VERSION, MarkdownBudget, harmless_attachments, harmless_cell_metadata,
                                         harmless_markdown, harmless_notebook_metadata)


def source_metadata(db_url: str, notebook: str, assignment: str) -> dict[str, dict]:
    """The nbgrader metadata of each cell of the source notebook, by grade_id (from the gradebook)."""
    from nbgrader.api import Gradebook
    with Gradebook(db_url) as gb:
        source = gb.find_notebook(notebook, assignment)
        points = {c.name: c.max_score for c in source.grade_cells}
        tasks = {c.name: c.max_score for c in source.task_cells}
        solutions = {c.name for c in source.solution_cells}
        found = {}
        for c in source.source_cells:
            meta = {"grade": c.name in points, "grade_id": c.name, "locked": bool(c.locked),
                    "schema_version": SCHEMA_VERSION, "solution": c.name in solutions, "cell_type": c.cell_type}
            if c.checksum:
                meta["checksum"] = c.checksum
            if c.name in points or c.name in tasks:
                meta["points"] = points.get(c.name, tasks.get(c.name))
            if c.name in tasks:
                meta["task"] = True
            found[c.name] = meta
    return found


def normalise_metadata(nb, source: dict[str, dict]) -> list[str]:
    """Rebuild every cell's nbgrader metadata from the source notebook's (`source`, by grade_id).

    The graded structure (test cells, their points and ids, solution cells) is the course's: a cell
    whose grade_id the source has gets exactly the source's metadata for that id, any other loses
    its nbgrader metadata (counts for nothing). The rest of the metadata is made harmless. Returns
    what was changed, in words.
    """
    import nbformat
    changed = []
    nb.metadata = nbformat.from_dict(harmless_notebook_metadata(nb.get("metadata")))
    for i, cell in enumerate(nb.cells):
        student = nbgrader_meta(cell)
        grade_id = student.get("grade_id")
        had = isinstance(cell.get("metadata"), dict) and "nbgrader" in cell.metadata
        cell.metadata = nbformat.from_dict(harmless_cell_metadata(cell.get("metadata")))
        if cell.get("cell_type") in ("markdown", "raw") or "attachments" in cell:
            harmless_attachments(cell)
        if isinstance(grade_id, str) and grade_id in source:
            wanted = source[grade_id]
            if any(student.get(k) != v for k, v in wanted.items() if k not in ("checksum", "cell_type")):
                changed.append(f"cell {grade_id}: nbgrader metadata restored from the assignment")
            cell.metadata["nbgrader"] = nbformat.from_dict(copy.deepcopy(wanted))
        else:
            cell.metadata.pop("nbgrader", None)
            if had:
                changed.append(f"cell {i}: nbgrader metadata not from the assignment, ignored")
    return changed


def markdown_shown_as_text(nb) -> list[str]:
    """Each markdown cell that could link to a script, load an image from elsewhere or hide either in an
    HTML comment, or that is too long to check (`MarkdownBudget`), shown as text (`harmless_markdown`):
    the Formgrader renders the autograded notebook on the Jupyter server's origin. A cell whose nbgrader
    metadata (the source's, by then) is a code cell's is left as it is: OverwriteCells turns an answer
    saved as markdown back into code, and runs it. Returns what changed."""
    budget = MarkdownBudget()
    return [f"cell {i}: links to a script or a data address, shows an image from elsewhere, holds an HTML "
            f"comment or is too long to check: shown as text" for i, cell in enumerate(nb.cells)
            if cell.get("cell_type") == "markdown" and nbgrader_meta(cell).get("cell_type") != "code"
            and harmless_markdown(cell, budget)]


def only_handed_in_files(handed_in: Path, graded: Path) -> list[str]:
    """Of what nbgrader copied from `handed_in` beside the notebooks into `graded` (all that the course's
    CourseDirectory.ignore lets through, following links), keep only the files of nbgrader's own submit
    (SUBMISSION_FILES) that were plain files: the Formgrader serves the graded folder on the Jupyter
    server's origin, where an HTML or SVG file runs its script, and a link could copy any file the
    grader may read. Returns what was removed."""
    from deepngrams.course.exchange import SUBMISSION_FILES
    removed = []
    for path in sorted(graded.rglob("*"), key=lambda p: len(p.parts), reverse=True):  # files before folders
        name = path.relative_to(graded)
        kept = len(name.parts) == 1 and (name.suffix == ".ipynb" or name.name in SUBMISSION_FILES
                                          and (handed_in / name).is_file() and not (handed_in / name).is_symlink())
        if kept:
            continue
        if path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.rmdir()  # a folder is gone once its files are
            continue
        path.unlink(missing_ok=True)
        removed.append(str(name))
    return removed


def write_submit_files(handed_in: Path, graded: Path) -> str:
    """The graded folder's timestamp.txt and submission_secret.txt as the batch writes them (preflight.submitted_with,
    from those handed in): nbgrader copied them as they were, and its release_feedback prints the timestamp to
    the instructor's terminal and stops for the whole class where either is missing or unreadable. Returns
    the note on a secret that had to be replaced ("" if none)."""
    from deepngrams.grading.preflight import read_submit_files, submitted_with
    files, note = submitted_with(read_submit_files(handed_in))
    for name, data in files.items():
        fresh = graded / f".{name}.new"
        fresh.write_bytes(data)
        os.replace(fresh, graded / name)  # never a moment without one
    return note


class OnlyTheStudentsNotebook(NbGraderPreprocessor):
    """First of the sanitizing steps: a notebook that holds the course's hidden tests is refused
    (`holds_hidden_tests`), only the notebooks and nbgrader's submission files stay in the graded
    folder (`only_handed_in_files`), with nbgrader's timestamp and secret as release_feedback needs them
    (`write_submit_files`)."""

    def preprocess(self, nb, resources):
        from nbgrader.coursedir import CourseDirectory
        info = resources["nbgrader"]
        if holds_hidden_tests(nb.cells):
            raise ValueError(f"{info['student']}: {SOURCE_NOTEBOOK}")
        folders = CourseDirectory(parent=self)
        handed_in, graded = (Path(folders.format_path(kind, info["student"], info["assignment"]))
                             for kind in (folders.submitted_directory, folders.autograded_directory))
        if graded.is_dir():
            for name in only_handed_in_files(handed_in, graded):
                self.log.warning("%r handed in beside the notebook: not copied for grading", name)
            if note := write_submit_files(handed_in, graded):
                self.log.warning(note)
        return nb, resources


class NormaliseMetadata(NbGraderPreprocessor):
    """Second of the sanitizing steps: the submission's metadata rebuilt against the source notebook
    (`normalise_metadata`), so that nothing a student's editor or hand put there changes the score
    or stops nbgrader."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        for change in normalise_metadata(nb, source_metadata(info["db_url"], info["notebook"], info["assignment"])):
            self.log.warning(change)
        return nb, resources


class GradeUpToHere(NbGraderPreprocessor):
    """A student's `# grade-up-to-here` in a solution cell: run nothing after that cell.

    Later test cells are replaced by one that fails with the reason (so they score 0 with an
    explanation rather than full points for not running); other later code is not run.
    """

    def preprocess(self, nb, resources):
        cut = next((i for i, c in enumerate(nb.cells)
                    if c.cell_type == "code" and nbgrader_meta(c).get("solution") and MARKER in c.source), None)
        if cut is None:
            return nb, resources
        for cell in nb.cells[cut + 1:]:
            if cell.cell_type != "code":
                continue
            if nbgrader_meta(cell).get("grade"):
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
    right before the nearest later source cell the submission still has: after the student's
    own code for that exercise, even when the solution cell lost its metadata too.
    """

    def preprocess(self, nb, resources):
        """nbgrader's, then every cell still markdown made harmless to render (`markdown_shown_as_text`):
        here, once an answer saved as markdown is code again, and in every course's configuration (this
        step is required), so on every door."""
        nb, resources = super().preprocess(nb, resources)
        for change in markdown_shown_as_text(nb):
            self.log.warning(change)
        return nb, resources

    def add_missing_grade_cells(self, nb, resources):
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        order = [c.name for c in source_nb.source_cells]
        sources = {c.name: c for c in source_nb.source_cells}
        solutions = {c.name for c in source_nb.solution_cells}
        for grade_cell in sorted(source_nb.grade_cells, key=lambda c: order.index(c.name)):
            present = [nbgrader_meta(c).get("grade_id") for c in nb.cells]
            if grade_cell.name in present:
                continue
            self.log.warning("Graded cell %s was deleted: putting it back", grade_cell.name)
            cell = self.missing_cell_transform(sources[grade_cell.name], grade_cell.max_score,
                                               is_solution=grade_cell.name in solutions)
            later = order[order.index(grade_cell.name) + 1:]
            # Before the nearest later cell still there; with none (a notebook rebuilt without
            # nbgrader's metadata), at the end, after the student's code.
            at = next((present.index(name) for name in later if name in present), len(nb.cells))
            nb.cells.insert(at, cell)
        return nb, resources

    def add_missing_task_cells(self, nb, resources):
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        sources = {c.name: c for c in source_nb.source_cells}
        present = {nbgrader_meta(c).get("grade_id") for c in nb.cells}
        for task_cell in source_nb.task_cells:
            if task_cell.name not in present:
                nb.cells.append(self.missing_cell_transform(sources[task_cell.name], task_cell.max_score, is_task=True))
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


class _SchemaBuiltOnce(BaseMetadataValidator):
    """nbgrader's per-cell check of the schema version and the metadata schema, with the schema's
    validator built once: nbgrader's `jsonschema.validate` checks the schema itself before every
    cell, most of the step's time. Mirrors `BaseMetadataValidator.validate_cell` of nbgrader 0.9
    (tests/test_nbgrader_steps.py compares the two on every kind of cell)."""

    def validate_cell(self, cell) -> None:
        if "nbgrader" not in cell.metadata:
            return
        meta = cell.metadata["nbgrader"]
        version = meta.get("schema_version", 0)
        if version < self.schema_version:
            raise SchemaTooOldError(f"Outdated schema version: {version} (expected {self.schema_version})",
                                    version, self.schema_version)
        if version > self.schema_version:
            raise SchemaTooNewError(f"Schema version is too new: {version} (expected {self.schema_version})",
                                    version, self.schema_version)
        error = jsonschema.exceptions.best_match(_schema_validator(self.schema).iter_errors(meta))
        if error is not None:
            raise error


class _MetadataValidator(MetadataValidator, _SchemaBuiltOnce):
    """nbgrader's metadata validator (its own checks of each cell's flags), on `_SchemaBuiltOnce`."""


def _schema_validator(schema: dict):
    key = json.dumps(schema, sort_keys=True)
    if key not in _VALIDATORS:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        _VALIDATORS[key] = cls(schema)
    return _VALIDATORS[key]


_VALIDATORS: dict[str, object] = {}


class CheckCellMetadataCompiled(CheckCellMetadata):
    """nbgrader's CheckCellMetadata: the same checks and the same error, with the metadata schema's
    validator built once per process rather than once per cell."""

    def preprocess(self, nb, resources):
        from nbgrader.nbgraderformat import ValidationError
        try:
            _MetadataValidator().validate_nb(nb)
        except ValidationError:
            self.log.error(traceback.format_exc())
            msg = "Notebook failed to validate; the nbgrader metadata may be corrupted."
            self.log.error(msg)
            raise ValidationError(msg)
        return nb, resources


class _TemplateBytecode(jinja2.BytecodeCache):
    """Compiled templates kept in memory, by template file and by what of the environment the
    compiled code depends on (`_compiled_for`); jinja checks each one against its source."""

    def __init__(self) -> None:
        self.stored: dict[tuple, bytes] = {}

    def load_bytecode(self, bucket) -> None:
        if (code := self.stored.get((bucket.key, _compiled_for(bucket.environment)))) is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket) -> None:
        self.stored[bucket.key, _compiled_for(bucket.environment)] = bucket.bytecode_to_string()


def _compiled_for(environment: jinja2.Environment) -> tuple:
    """What of an environment jinja writes into the code it compiles: async or not, autoescape and
    finalize, the extensions, and which filters and tests exist and what each is passed (a filter
    marked pass_context is called with the context)."""
    def named(functions: dict) -> tuple:
        return tuple(sorted((name, str(getattr(f, "jinja_pass_arg", ""))) for name, f in functions.items()))
    return (environment.is_async, repr(environment.autoescape), repr(environment.finalize),
            tuple(sorted(environment.extensions)), named(environment.filters), named(environment.tests))


TEMPLATE_BYTECODE = _TemplateBytecode()


class FeedbackExporter(HTMLExporter):
    """nbconvert's HTML exporter, for nbgrader's feedback, whose templates are compiled once per
    process: nbgrader's host compiles them before it forks a child per submission
    (grading.nbgrader_host), instead of each submission compiling the same templates again."""

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = TEMPLATE_BYTECODE
        return environment


def compile_feedback_templates() -> int:
    """Compile the templates of nbgrader's feedback page, as nbgrader configures them by default: the
    page's template and every template it extends, imports or includes. Returns how many compiled
    templates the cache holds. Only speed depends on it: whatever fails here is left for each
    submission to compile, as nbconvert would."""
    from jinja2 import meta
    from nbgrader.converters import GenerateFeedback

    def _only_at_render_time(*args, **kwargs):
        raise RuntimeError("a stand-in filter: HTMLExporter registers the real one for each notebook")

    try:
        exporter = FeedbackExporter(config=GenerateFeedback().config)
        for name in ("highlight_code", "filter_data_type"):  # registered by HTMLExporter for each notebook
            exporter.register_filter(name, _only_at_render_time)
        environment = exporter.environment
        todo, seen = [exporter.template_file], set()
        while todo:
            name = todo.pop()
            if name is None or name in seen:
                continue
            seen.add(name)
            try:
                environment.get_template(name)
                source = environment.loader.get_source(environment, name)[0]
            except jinja2.TemplateError:
                continue
            todo += meta.find_referenced_templates(environment.parse(source))
    except Exception:  # noqa: BLE001 - a template missing or unreadable here breaks no grading
        pass
    return len(TEMPLATE_BYTECODE.stored)


NO_SANDBOX_ENV = "DEEPNGRAMS_NO_SANDBOX"  # "1": run notebooks without a sandbox (trusted submissions only)


class SandboxedExecute(NbGraderPreprocessor):
    """nbgrader's Execute, replaced: the notebook runs in a sandbox, the grader judges the tests.

    Every graded test cell gets its output from the grader's verdict (a pass, or an error that
    says what was wrong), so nbgrader's SaveAutoGrades scores it as usual. The course's
    configuration puts it in place of Execute, so every door grades alike: `python -m deepngrams
    grade` (which describes each submission's job in $DEEPNGRAMS_GRADE_JOB), plain `nbgrader
    autograde` and the Formgrader's Autograde button (which grade one notebook at a time here).
    """

    def preprocess(self, nb, resources):
        from deepngrams.grading import exercises, sandbox
        from deepngrams.grading.verdicts import apply_verdicts, build_job, reason_of
        student = str(resources.get("nbgrader", {}).get("student", ""))
        with _job(self, resources) as job:
            secret = exercises.secret_from(job["student_key"], exercises.graded_code(nb))
            prepared = exercises.draw_cases(secret)
            limits = sandbox.Limits(**job["limits"])
            result = sandbox.run(build_job(nb, prepared, limits), Path(job["scratch"]), job["slot"], limits,
                                 sandboxed=job["sandboxed"], threads=job["threads"])
        failed = apply_verdicts(nb, prepared, result)
        reason = reason_of(result, limits)
        if job.get("report"):
            Path(job["report"]).write_text(json.dumps({"reason": reason, "failed": failed,
                                                       "seconds": round(result.seconds, 1)}))
        if job.get("course"):  # nbgrader by hand or the Formgrader: the student it just added gets a name
            _name_students(Path(job["course"]), self.log)
        where = "in the sandbox" if job["sandboxed"] else "WITHOUT a sandbox"
        self.log.info("Ran %s in %.1f s; failed: %s; %s", where, result.seconds, failed, reason or "no problem")
        if reason and not job.get("report"):
            self.log.warning("%s: %s", student, reason)
        return nb, resources


_noted_open: set[Path] = set()  # courses whose open permissions this process has told of


@contextlib.contextmanager
def _job(step: NbGraderPreprocessor, resources: dict):
    """What one notebook's run needs: the student's key (exercises.student_key), limits, sandbox slot
    and scratch folder.

    From $DEEPNGRAMS_GRADE_JOB under the batch grader, which names a file with the student's key
    (the course's key stays with the batch's client); otherwise from the course itself (its key,
    the default limits, a scratch folder in its .grading/), for nbgrader run by hand or by the
    Formgrader. Without a usable sandbox this refuses to run the notebook, unless the grader
    chose to (DEEPNGRAMS_NO_SANDBOX=1, trusted submissions only).
    """
    import tempfile
    from dataclasses import asdict
    from deepngrams.grading import sandbox
    from deepngrams.grading.exercises import grading_key, student_key
    if GRADE_JOB_ENV in os.environ:
        job = json.loads(os.environ[GRADE_JOB_ENV])
        job["student_key"] = bytes.fromhex(Path(job["student_key_file"]).read_text())
        yield job
        return
    from nbgrader.coursedir import CourseDirectory
    course = Path(CourseDirectory(parent=step).root).resolve()
    if course not in _noted_open and (note := open_to_others_note(course)):
        _noted_open.add(course)  # once a process: the Formgrader's server grades one notebook after another
        step.log.warning(note)
    sandboxed = os.environ.get(NO_SANDBOX_ENV) != "1"
    if sandboxed and (problem := sandbox.available()):
        raise RuntimeError(f"cannot grade {resources.get('nbgrader', {}).get('student')!r}: {problem}")
    if not sandboxed:
        step.log.warning("%s=1: the notebook runs as you, with nothing isolated (trusted submissions only)",
                         NO_SANDBOX_ENV)
    key = student_key(grading_key(course), str(resources.get("nbgrader", {}).get("student", "")))
    threads = os.cpu_count() or 1
    if sandboxed:
        # This process grades one notebook after another (nbgrader's loop, the Formgrader's server):
        # the kernels after the first are forked from the factory, TensorFlow already imported.
        sandbox.start_kernel_factory(threads)
    with tempfile.TemporaryDirectory(prefix="run-", dir=course / ".grading") as scratch:
        yield {"student_key": key, "limits": asdict(sandbox.Limits()), "scratch": scratch, "slot": 0,
               "sandboxed": sandboxed, "threads": threads, "course": str(course)}


def _name_students(course: Path, log) -> None:
    from deepngrams.course.course_setup import name_students
    try:
        name_students(course)
    except Exception as e:  # noqa: BLE001 - a name is never worth a grade
        log.warning("could not name the students: %s", e)


AFTER_HIDDEN_TESTS = ("(Not shown in the feedback: this cell ran after a hidden test, whose inputs your code could "
                      "have printed. Run the notebook yourself to see its output.)")


class HideHiddenTests(NbGraderPreprocessor):
    """Feedback shows a test cell without its hidden part (nbgrader's feedback keeps it whole), and
    none of the outputs of the student's own cells that ran after the first hidden test: its inputs
    reached the student's code, which could print them (the graded notebook keeps them all).

    Only the course's graded test cells are touched, leniently: a student's markdown that happens to
    mention the markers is left alone, and an unterminated region is hidden to the end of the cell.
    """

    begin, end = HIDDEN_TESTS

    def preprocess(self, nb, resources):
        import nbformat
        after_hidden = False
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            graded_test = nbgrader_meta(cell).get("grade") and not nbgrader_meta(cell).get("solution")
            if graded_test:
                after_hidden = after_hidden or self.begin in cell.source
            elif after_hidden and cell.get("outputs"):
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=AFTER_HIDDEN_TESTS)]
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type != "code" or not nbgrader_meta(cell).get("grade") or nbgrader_meta(cell).get("solution"):
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
