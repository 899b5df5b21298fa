"""Our nbgrader steps and the demo's table, on small notebooks (no kernel needed)."""
import copy
import logging
import re

import jsonschema
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from nbgrader.nbgraderformat import MetadataValidator
from nbgrader.preprocessors import CheckCellMetadata

from deepngrams.grading import nbgrader_steps
from deepngrams.grading.nbgrader_steps import (NOT_RUN, CheckCellMetadataCompiled, DeduplicateIdsCleanly, FeedbackExporter,
                                               GradeUpToHere)
from deepngrams.grading import report


def cell(kind, grade_id, source, **flags):
    c = new_code_cell(source) if kind == "code" else new_markdown_cell(source)
    c.metadata["nbgrader"] = {"grade": False, "solution": False, "locked": False, "grade_id": grade_id,
                              "schema_version": 3, **flags}
    return c


def notebook(*cells):
    return new_notebook(cells=list(cells))


def run(step, nb):
    step.log = logging.getLogger("test")
    return step.preprocess(nb, {})[0]


def test_grade_up_to_here_fails_later_tests_and_skips_later_code():
    nb = notebook(
        cell("code", "ex1", "def f():\n    return 1", solution=True),
        cell("code", "test_ex1", "assert f() == 1", grade=True, locked=True, points=1),
        cell("code", "ex2", "# grade-up-to-here\ndef g():\n    return 2", solution=True),
        cell("code", "test_ex2", "assert g() == 2", grade=True, locked=True, points=1),
        cell("markdown", "text", "Some words"),
        new_code_cell("print('demo')"),
        cell("code", "ex3", "def h():\n    return 3", solution=True),
        cell("code", "test_ex3", "assert h() == 3", grade=True, locked=True, points=1),
    )
    out = run(GradeUpToHere(), nb)
    sources = [c.source for c in out.cells]
    assert sources[:3] == ["def f():\n    return 1", "assert f() == 1", "# grade-up-to-here\ndef g():\n    return 2"]
    assert sources[3] == NOT_RUN and sources[7] == NOT_RUN
    assert sources[4] == "Some words"
    assert all("not run" in s for s in (sources[5], sources[6]))


def test_grade_up_to_here_only_counts_in_solution_cells():
    nb = notebook(cell("code", "test_ex1", "# grade-up-to-here\nassert True", grade=True, locked=True, points=1),
                  cell("code", "test_ex2", "assert True", grade=True, locked=True, points=1))
    assert [c.source for c in run(GradeUpToHere(), nb).cells] == ["# grade-up-to-here\nassert True", "assert True"]


def test_a_copied_graded_cell_loses_its_metadata_entirely():
    nb = notebook(cell("code", "test_a", "assert True", grade=True, locked=True, points=1),
                  cell("code", "test_a", "assert True", grade=True, locked=True, points=1))
    out = DeduplicateIdsCleanly().preprocess(nb, {})[0]
    assert "nbgrader" not in out.cells[0].metadata  # nbgrader keeps the last copy
    assert out.cells[1].metadata["nbgrader"]["grade_id"] == "test_a"


def test_test_cells_map_to_their_exercise():
    names = ["line_to_tensor", "GRULM", "temperature_random_sampling", "GenerativeModel"]
    assert report.exercise_of("test_line_to_tensor", names) == "line_to_tensor"
    assert report.exercise_of("test_GRULM_outputs", names) == "GRULM"
    assert report.exercise_of("test_GenerativeModel_hidden", names) == "GenerativeModel"
    assert report.exercise_of("test_something_else", names) == "other"


def test_table_shows_scores_totals_and_reasons():
    table = report.format_table(["a", "b"], [("ann", {"a": (1.0, 2.0), "b": (3.0, 3.0)}, ""),
                                           ("bo", {}, "x.ipynb: not a valid notebook")])
    lines = table.splitlines()
    assert lines[0].split() == ["student", "a", "b", "total", "note"]
    assert lines[2].split() == ["ann", "1/2", "3/3", "4/5"]
    assert lines[3].split()[:4] == ["bo", "-", "-", "-"] and "not a valid notebook" in lines[3]


def test_feedback_hides_the_hidden_part_of_test_cells_only():
    from deepngrams.grading.nbgrader_steps import HideHiddenTests
    hidden = "# More cases are checked when graded.\n### BEGIN HIDDEN TESTS\nsecret_case()\n### END HIDDEN TESTS\nafter()"
    nb = notebook(
        cell("code", "test_ex1", hidden, grade=True, locked=True, points=1),
        cell("code", "test_ex2", "visible()\n### BEGIN HIDDEN TESTS\nsecret_case()", grade=True, locked=True, points=1),
        cell("markdown", "text", "I wrote ### BEGIN HIDDEN TESTS in my notes"),
        cell("code", "ex1", "x = '### BEGIN HIDDEN TESTS'", solution=True),
    )
    out = run(HideHiddenTests(), nb)
    assert [c.source for c in out.cells] == [
        "# More cases are checked when graded.\nafter()",
        "visible()",  # an unterminated region is hidden to the end of the cell
        "I wrote ### BEGIN HIDDEN TESTS in my notes",  # not a test cell: left alone, and no error
        "x = '### BEGIN HIDDEN TESTS'",
    ]


def test_feedback_shows_no_output_of_the_students_cells_after_the_first_hidden_test():
    """The hidden test's inputs reached the student's code, which could print them in any later cell
    (a solution cell or one of its own): those outputs are not in the feedback; the outputs before it,
    and every test cell's verdict, are."""
    from nbformat.v4 import new_output
    from deepngrams.grading.nbgrader_steps import AFTER_HIDDEN_TESTS, HideHiddenTests

    def ran(c, text):
        c.outputs = [new_output("stream", name="stdout", text=text)]
        return c

    nb = notebook(
        ran(cell("code", "ex1", "def f(x):\n    seen.append(x)", solution=True), "defined f"),
        ran(new_code_cell("print('before')"), "before"),
        ran(cell("code", "test_ex1", "check(f)", grade=True, locked=True, points=1), "verdict 1"),
        ran(cell("code", "test_ex1_hidden", "### BEGIN HIDDEN TESTS\ncheck(f)\n### END HIDDEN TESTS", grade=True,
                 locked=True, points=1), "verdict 2"),
        ran(new_code_cell("print(seen)"), "['hidden input']"),
        ran(cell("code", "ex2", "print(seen); def g(): pass", solution=True), "['hidden input']"),
        new_code_cell("pass"),
        ran(cell("code", "test_ex2", "check(g)", grade=True, locked=True, points=1), "verdict 3"),
    )
    texts = [[o.text for o in c.outputs] for c in run(HideHiddenTests(), nb).cells]
    assert texts == [["defined f"], ["before"], ["verdict 1"], ["verdict 2"], [AFTER_HIDDEN_TESTS], [AFTER_HIDDEN_TESTS],
                     [], ["verdict 3"]]
    assert not any("hidden input" in t for c in texts for t in c)


# ----------------------------------------------------------------------------------------
# nbgrader's own steps, made cheaper per submission: the same results
# ----------------------------------------------------------------------------------------
METADATA_VARIANTS = {
    "solution": dict(solution=True),
    "test": dict(grade=True, locked=True, points=2),
    "locked markdown": dict(locked=True),
    "task": dict(kind="markdown", task=True, points=1, locked=True),
    "markdown graded, no solution": dict(kind="markdown", grade=True, points=1),
    "markdown solution, not graded": dict(kind="markdown", solution=True),
    "task in a code cell": dict(task=True, points=1, locked=True),
    "empty grade id": dict(grade_id="", solution=True),
    "no nbgrader metadata": None,
    "schema too old": dict(schema_version=2, solution=True),
    "schema too new": dict(schema_version=4, solution=True),
    "no schema version": dict(schema_version=None, solution=True),
    "grade without points": dict(grade=True, locked=True),
    "points not a number": dict(grade=True, locked=True, points="many"),
    "grade not a flag": dict(grade="yes", points=1),
    "grade id not text": dict(grade_id=7, solution=True),
    "no lock flag": dict(locked=None, solution=True),
    "unknown key": dict(solution=True, extra="x"),
    "no grade id": dict(grade_id=None, solution=True),
    "cell type changed": dict(solution=True, cell_type="markdown"),
}


def _variant(flags):
    flags = None if flags is None else dict(flags)
    c = cell(flags.pop("kind", "code") if flags else "code", "ex", "x = 1")
    if flags is None:
        del c.metadata["nbgrader"]
        return c
    for key, value in flags.items():
        if value is None:
            c.metadata["nbgrader"].pop(key, None)
        else:
            c.metadata["nbgrader"][key] = value
    return c


def _outcome(step, nb, caplog):
    """The exception (type and text) and what the step logged: for an error, the last line of each
    traceback it logged (which says which check failed and how)."""
    caplog.clear()
    try:
        run(step, nb)
        raised = None
    except Exception as e:  # noqa: BLE001 - the outcome compared is the exception's type and text
        raised = (type(e), str(e))
    logged = [(r.levelname, r.getMessage().strip().splitlines()[-1]) for r in caplog.records]
    return raised, logged


@pytest.mark.parametrize("variant", sorted(METADATA_VARIANTS))
def test_checking_metadata_once_agrees_with_nbgrader(variant, caplog):
    """Passes and fails exactly where nbgrader's CheckCellMetadata does, with the same error and the
    same lines logged."""
    caplog.set_level(logging.WARNING)
    nb = notebook(cell("markdown", "intro", "Hello", locked=True), _variant(METADATA_VARIANTS[variant]))
    ours = _outcome(CheckCellMetadataCompiled(), copy.deepcopy(nb), caplog)
    theirs = _outcome(CheckCellMetadata(), nb, caplog)
    assert ours == theirs
    if variant in ("solution", "test", "locked markdown", "task", "no nbgrader metadata", "cell type changed"):
        assert theirs[0] is None
    else:
        assert theirs[0] is not None, "a variant nbgrader accepts tells nothing here"
    if variant == "cell type changed":
        assert any("Cell type has changed" in line for _, line in theirs[1])


def test_checking_metadata_once_builds_the_schemas_validator_once(monkeypatch):
    """nbgrader's jsonschema.validate checks the schema itself for every cell; this step does not."""
    checked = []
    real = jsonschema.Draft4Validator.check_schema.__func__

    def counting(cls, schema, *args, **kwargs):
        checked.append(cls)
        return real(cls, schema, *args, **kwargs)

    cells = [cell("code", f"ex{i}", "x = 1", solution=True) for i in range(20)]
    nbgrader_steps._VALIDATORS.clear()
    for validator in {jsonschema.validators.validator_for(MetadataValidator().schema), jsonschema.Draft4Validator}:
        monkeypatch.setattr(validator, "check_schema", classmethod(counting))
    run(CheckCellMetadataCompiled(), notebook(*copy.deepcopy(cells)))
    run(CheckCellMetadataCompiled(), notebook(*copy.deepcopy(cells)))
    assert len(checked) == 1
    run(CheckCellMetadata(), notebook(*cells))
    assert len(checked) == 21  # nbgrader's own step: once per cell


GRADED = {"score": 1.0}  # what nbgrader's GetGrades adds to a graded cell's metadata


def _make_feedback_notebook():
    nb = notebook(cell("markdown", "intro", "# Title\n\nSome *words*", locked=True),
                  cell("code", "ex", "def f():\n    return 1", solution=True),
                  cell("code", "test_ex", "assert f() == 1", grade=True, locked=True, points=1))
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="ok\n"),
                           nbformat.v4.new_output("display_data", data={"text/html": "<b>bold</b>",
                                                                        "text/plain": "bold"})]
    nb.cells[2].metadata["nbgrader"].update(GRADED)
    return nb


FEEDBACK_NOTEBOOK = _make_feedback_notebook()


FEEDBACK_RESOURCES = {"nbgrader": {"notebook": "nb", "score": 1.0, "max_score": 1.0, "late_penalty": 0}}


def _feedback_html(exporter_class) -> str:
    from nbgrader.converters import GenerateFeedback
    exporter = exporter_class(config=GenerateFeedback().config)
    html, _ = exporter.from_notebook_node(copy.deepcopy(FEEDBACK_NOTEBOOK), copy.deepcopy(FEEDBACK_RESOURCES))
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", html)


def test_the_feedback_exporter_compiles_nothing_once_its_templates_are_compiled(monkeypatch):
    """nbgrader's host compiles the feedback templates once; a submission's feedback then compiles
    none, and its page is the one nbconvert's own exporter makes."""
    import jinja2
    from nbconvert.exporters import HTMLExporter
    monkeypatch.setattr(nbgrader_steps, "TEMPLATE_BYTECODE", nbgrader_steps._TemplateBytecode())
    assert nbgrader_steps.compile_feedback_templates() >= 5  # the page's template and those below it
    compiled = []
    real = jinja2.Environment.compile

    def counting(self, source, name=None, *args, **kwargs):
        compiled.append(name)
        return real(self, source, name, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    ours = _feedback_html(FeedbackExporter)
    assert compiled == []
    theirs = _feedback_html(HTMLExporter)
    assert len(compiled) >= 5
    assert ours == theirs and "Title" in ours and "<b>bold</b>" in ours and "Score: 1.0 / 1.0" in ours


def test_a_changed_template_is_compiled_again(monkeypatch, tmp_path):
    """The compiled code is kept by the template's name and checked against its source."""
    import jinja2
    monkeypatch.setattr(nbgrader_steps, "TEMPLATE_BYTECODE", nbgrader_steps._TemplateBytecode())
    (tmp_path / "page.j2").write_text("one {{ x }}")
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(tmp_path),
                                     bytecode_cache=nbgrader_steps.TEMPLATE_BYTECODE)
    assert environment.get_template("page.j2").render(x=1) == "one 1"
    (tmp_path / "page.j2").write_text("two {{ x }}")
    fresh = jinja2.Environment(loader=jinja2.FileSystemLoader(tmp_path), bytecode_cache=nbgrader_steps.TEMPLATE_BYTECODE)
    assert fresh.get_template("page.j2").render(x=1) == "two 1"


def test_compiled_code_is_not_shared_with_an_environment_that_would_compile_it_otherwise(monkeypatch, tmp_path):
    """A filter called with the context in one environment and without it in another: each gets
    its own compiled code (a course may configure its own filters)."""
    import jinja2
    monkeypatch.setattr(nbgrader_steps, "TEMPLATE_BYTECODE", nbgrader_steps._TemplateBytecode())
    (tmp_path / "page.j2").write_text("{{ x | shout }}")

    @jinja2.pass_context
    def shout_with_context(context, value):
        return f"{value}! (in {context.name})"

    def environment(shout):
        made = jinja2.Environment(loader=jinja2.FileSystemLoader(tmp_path), bytecode_cache=nbgrader_steps.TEMPLATE_BYTECODE)
        made.filters["shout"] = shout
        return made

    assert environment(shout_with_context).get_template("page.j2").render(x="hi") == "hi! (in page.j2)"
    assert environment(lambda value: f"{value}!").get_template("page.j2").render(x="hi") == "hi!"
    assert len(nbgrader_steps.TEMPLATE_BYTECODE.stored) == 2


def test_templates_that_cannot_be_compiled_ahead_leave_the_host_able_to_start(monkeypatch):
    """Compiling ahead only saves time: any failure there is left for each submission's feedback."""
    from nbconvert.exporters import HTMLExporter

    def broken(self):
        raise ValueError("No template sub-directory with name 'feedback' found")

    monkeypatch.setattr(nbgrader_steps, "TEMPLATE_BYTECODE", nbgrader_steps._TemplateBytecode())
    monkeypatch.setattr(HTMLExporter, "_create_environment", broken)
    assert nbgrader_steps.compile_feedback_templates() == 0


def test_the_course_uses_the_cheaper_steps():
    """The course's configuration puts them where nbgrader's own would be."""
    from traitlets.config.loader import PyFileConfigLoader
    from deepngrams.course import release
    config = PyFileConfigLoader("nbgrader_config.py", path=str(release.COURSE_DIR)).load_config()
    for pipeline in (config.Autograde.sanitize_preprocessors, config.Autograde.autograde_preprocessors):
        assert CheckCellMetadataCompiled in pipeline and CheckCellMetadata not in pipeline
    assert config.Autograde.sanitize_preprocessors[0] is nbgrader_steps.OnlyTheStudentsNotebook
    assert config.GenerateFeedback.exporter_class is FeedbackExporter


def test_only_the_notebooks_and_plain_submission_files_stay_in_the_graded_folder(tmp_path):
    """nbgrader copies what a student hands in beside the notebook, following links, into autograded/,
    which the Formgrader serves on the Jupyter server's origin: a page, a picture with script, a link
    to a secret and a link named like a submission file are removed; the notebooks and a plain
    timestamp.txt stay."""
    import shutil
    handed_in, graded = tmp_path / "submitted", tmp_path / "autograded"
    (handed_in / "sub").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("the course's answers")
    for name, text in {"deep_ngrams.ipynb": "{}", "timestamp.txt": "2026-12-05 10:00:00", "evil.html": "<script>",
                       "sub/evil.svg": "<svg onload=alert(1)>", "notes.md": "[x](evil.html)"}.items():
        (handed_in / name).write_text(text)
    (handed_in / "leak.json").symlink_to(secret)
    (handed_in / "submission_secret.txt").symlink_to(secret)
    for path in handed_in.rglob("*"):  # as nbgrader's init_assignment copies: shutil.copy follows links
        target = graded / path.relative_to(handed_in)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    removed = nbgrader_steps.only_handed_in_files(handed_in, graded)
    assert sorted(str(p.relative_to(graded)) for p in graded.rglob("*")) == ["deep_ngrams.ipynb", "timestamp.txt"]
    assert sorted(removed) == ["evil.html", "leak.json", "notes.md", "sub/evil.svg", "submission_secret.txt"]


def _door_copy(tmp_path, secret: bytes | None, timestamp: bytes | None = b"2026-12-01 10:00:00.000000 UTC",
               secret_as_folder: bool = False):
    """A submitted folder, and the graded folder nbgrader's copy and `only_handed_in_files` leave of it."""
    import shutil
    handed_in, graded = tmp_path / "submitted", tmp_path / "autograded"
    handed_in.mkdir()
    (handed_in / "deep_ngrams.ipynb").write_text("{}")
    if timestamp is not None:
        (handed_in / "timestamp.txt").write_bytes(timestamp)
    if secret_as_folder:
        (handed_in / "submission_secret.txt").mkdir()
        (handed_in / "submission_secret.txt" / "x").write_bytes(b"0123")
    elif secret is not None:
        (handed_in / "submission_secret.txt").write_bytes(secret)
    shutil.copytree(handed_in, graded)
    nbgrader_steps.only_handed_in_files(handed_in, graded)
    return handed_in, graded


def _graded_files(graded) -> dict:
    return {p.name: p.read_bytes() for p in graded.iterdir()}


@pytest.mark.parametrize("secret", [b"", b"\xff\xfe", "clé".encode(), b"x" * 1025, None, "folder"])
@pytest.mark.parametrize("timestamp", [b"2026-12-01 10:00:00.000000 UTC", None], ids=["timestamp", "no timestamp"])
def test_plain_nbgrader_gives_every_graded_folder_a_secret_release_feedback_can_use(tmp_path, secret, timestamp):
    """The door's first step writes submit's two files as the batch does (preflight.submitted_with):
    release_feedback stops for the whole class at a page without them, or with a secret it cannot read. A
    secret handed in and replaced is said; one made where none was handed in (zip_collect, by hand) is not."""
    handed_in, graded = _door_copy(tmp_path, None if secret == "folder" else secret, timestamp,
                                   secret_as_folder=secret == "folder")
    note = nbgrader_steps.write_submit_files(handed_in, graded)
    assert ("replaced" in note) == (secret is not None)
    files = _graded_files(graded)
    assert sorted(files) == ["deep_ngrams.ipynb", "submission_secret.txt", "timestamp.txt"]
    assert files["submission_secret.txt"] != secret and re.fullmatch(rb"[0-9a-f]{128}", files["submission_secret.txt"])
    assert files["timestamp.txt"] == (timestamp or b"")  # empty: not late, as nbgrader reads it


@pytest.mark.parametrize("secret", [b"0123456789abcdef", b"by hand\r\n", b" \n", b"x" * 1024])
def test_plain_nbgrader_keeps_a_secret_release_feedback_can_use(tmp_path, secret):
    handed_in, graded = _door_copy(tmp_path, secret)
    assert nbgrader_steps.write_submit_files(handed_in, graded) == ""
    assert _graded_files(graded)["submission_secret.txt"] == secret


@pytest.mark.parametrize("timestamp, kept", [
    (b"2026-12-01 10:00:00 \x1b]0;owned\x07\x1b[2J", b""),  # a zone that is not a name: not a time
    (b"\x1c2026-12-01 10:00:00.000000 UTC\x1d\n", b"2026-12-01 10:00:00.000000 UTC"),  # white space to nbgrader
    (b"2026-12-01T11:00:00+01:00", b"2026-12-01 10:00:00.000000 UTC"),
])
def test_plain_nbgrader_writes_the_time_again_in_its_own_format(tmp_path, timestamp, kept):
    """release_feedback prints the feedback folder's timestamp.txt to the instructor's terminal as it is:
    the graded folder holds the time in nbgrader's format and nothing else."""
    handed_in, graded = _door_copy(tmp_path, b"0123456789abcdef", timestamp)
    nbgrader_steps.write_submit_files(handed_in, graded)
    assert _graded_files(graded)["timestamp.txt"] == kept


def test_a_notebook_that_holds_the_hidden_tests_is_the_sources_and_is_refused():
    """The source notebook (through a link that nbgrader followed) carries nbgrader's hidden-test markers
    in code; the release and a student's notebook never do, though a student may write of them in markdown."""
    from deepngrams.course import release
    from deepngrams.grading import cells, preflight
    source = nbformat.read(str(release.SOURCE_NB), 4)
    assert cells.holds_hidden_tests(source.cells)
    solved = release.sample_submissions(release.read(release.RELEASE_NB))["alice_solved"]
    assert not cells.holds_hidden_tests(solved.cells)
    solved.cells.append(new_markdown_cell("Where are the BEGIN HIDDEN TESTS markers?"))
    solved.cells.append(new_code_cell("# BEGIN HIDDEN TESTS: my own notes\nprint('BEGIN HIDDEN TESTS')"))
    assert not cells.holds_hidden_tests(solved.cells)
    assert preflight.check_notebook(nbformat.writes(source).encode(), [])[0] == cells.SOURCE_NOTEBOOK
    assert preflight.check_notebook(nbformat.writes(solved).encode(), [])[0] == ""
    step = nbgrader_steps.OnlyTheStudentsNotebook()
    with pytest.raises(ValueError, match="hidden tests"):
        step.preprocess(source, {"nbgrader": {"student": "trudy", "assignment": release.ASSIGNMENT}})


def test_an_answer_saved_as_markdown_is_left_for_nbgrader_to_turn_back_into_code():
    """A solution cell saved as markdown by mistake keeps its code (`data:` in it looks like a link):
    the batch's preflight leaves a markdown cell with a grade_id to nbgrader's steps, `markdown_shown_as_text`
    leaves one whose metadata is the source's code cell, and what is still markdown after OverwriteCells
    (a copy that lost its metadata, a cell of an unknown id) is shown as text."""
    import json
    from deepngrams.grading.harmless import harmless_file
    code = "def f(data: str):\n    return print('data:', data)"
    answer = cell("markdown", "line_to_tensor", code, solution=True)
    stray = new_markdown_cell("[x](javascript:alert(1))")
    kept = json.loads(harmless_file(nbformat.writes(notebook(answer, stray)).encode()))["cells"]
    assert kept[0]["source"] == code and kept[1]["source"] != stray.source
    answer.metadata["nbgrader"]["cell_type"] = "code"  # as NormaliseMetadata leaves it: the source's metadata
    copied = new_markdown_cell(code)  # a copy whose metadata DeduplicateIds removed
    nb = notebook(answer, copied)
    assert nbgrader_steps.markdown_shown_as_text(nb) == ["cell 1: links to a script or a data address, shows an image from "
                                                               "elsewhere, holds an HTML comment or is too long to check: "
                                                               "shown as text"]
    assert nb.cells[0].source == code and nb.cells[1].source.startswith("(This cell links to a script")
