"""A submission's metadata is normalised against the source notebook before nbgrader reads it
(no kernel, no grading: tests/test_grade_student_data.py grades a few of these end to end)."""
import copy
import json
import logging
import random
import warnings

import nbformat
import pytest

from deepngrams.course import release
from deepngrams.grading.harmless import harmless_file
from deepngrams.grading.nbgrader_steps import HideHiddenTests, NormaliseMetadata, normalise_metadata

from metadata_cases import (BREAKOUTS, DEEP, FORMATS, KINDS, LIVE_LINKS, OTHER_SPELLINGS, REMOTE_IMAGES,
                            SPLIT_BY_MARKUP, fuzz, live_links)
from deepngrams.grading import cells
from deepngrams.grading import preflight



@pytest.fixture(scope="module")
def solved() -> dict:
    """The correct solved submission, as JSON data (each source one string)."""
    return json.loads(json.dumps(release.sample_submissions(release.read(release.RELEASE_NB))["alice_solved"]))


@pytest.fixture(scope="module")
def source(solved) -> dict:
    """What `source_metadata` reads from the gradebook: each source cell's nbgrader metadata by id."""
    return {m["grade_id"]: m for m in (c["metadata"].get("nbgrader") for c in solved["cells"]) if m}


def graded_ids(nb) -> list[str]:
    return [gid for gid, _, grade_, solution, _, _ in structure(nb) if grade_ and not solution]


def structure(nb) -> list[tuple]:
    """The graded structure of a notebook: per cell with nbgrader metadata, its id, flags and points."""
    found = []
    for cell in nb["cells"]:
        m = cells.nbgrader_meta(cell)
        if m:
            found.append((m.get("grade_id"), cell["cell_type"], bool(m.get("grade")), bool(m.get("solution")),
                          bool(m.get("locked")), float(m["points"]) if m.get("grade") else None))
    return found


def normalised(text: str, source: dict):
    """A handed-in file as nbgrader gets it: made harmless, read, and normalised (as NormaliseMetadata does)."""
    raw = harmless_file(text.encode())
    nb = nbformat.reads(raw.decode(), as_version=4)
    nbformat.validate(nb)
    normalise_metadata(nb, source)
    return nb


def kept_ids(nb) -> list:
    return [cells.nbgrader_meta(c).get("grade_id") for c in nb.cells if cells.nbgrader_meta(c)]


def test_a_correct_submission_is_left_as_it_was(solved, source):
    nb = normalised(json.dumps(solved), source)
    assert structure(nb) == structure(solved)
    assert [c.source for c in nb.cells] == [c.source for c in nbformat.from_dict(solved).cells]
    assert normalise_metadata(nb, source) == []


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_passes_the_preflight(kind, solved, tmp_path):
    path = tmp_path / "deep_ngrams.ipynb"
    path.write_text(KINDS[kind](solved))
    reason, _ = preflight.preflight(path, graded_ids(solved))
    assert reason == ""


def test_nbgrader_metadata_not_a_mapping_is_dropped(solved, source):
    nb = normalised(KINDS["not_a_mapping"](solved), source)
    lost = {gid for gid, _, g, s, _, _ in structure(solved) if g or s}
    assert set(kept_ids(nb)) == set(source) - lost  # the test cells are put back later, by OverwriteCells
    assert structure(nb) == [s for s in structure(solved) if s[0] not in lost]


def test_metadata_nested_1000_deep_is_dropped(solved, source):
    text = KINDS["nested_deep"](solved)
    with pytest.raises(RecursionError):
        json.loads(text)
    nb = normalised(text, source)
    first_solution = next(s[0] for s in structure(solved) if s[3])
    first_test = next(s[0] for s in structure(solved) if s[2] and not s[3])
    assert set(kept_ids(nb)) == set(source) - {first_solution, first_test}
    assert "widgets" not in nb.metadata and all("editor" not in c.metadata for c in nb.cells)
    assert len(harmless_file(text.encode())) < len(text) - DEEP


def test_a_grade_id_that_is_a_list_is_dropped(solved, source):
    nb = normalised(KINDS["grade_id_a_list"](solved), source)
    tests = {s[0] for s in structure(solved) if s[2] and not s[3]}
    assert set(kept_ids(nb)) == set(source) - tests


def test_a_solution_cell_claiming_100_points_gets_the_source_metadata(solved, source):
    nb = normalised(KINDS["solution_claims_grade"](solved), source)
    assert structure(nb) == structure(solved)
    assert not any(cells.nbgrader_meta(c).get("points") == 100 for c in nb.cells)


def test_a_test_cell_with_grade_off_is_graded_again(solved, source):
    nb = normalised(KINDS["test_not_graded"](solved), source)
    assert structure(nb) == structure(solved)


def test_made_up_ids_count_for_nothing(solved, source):
    nb = normalised(KINDS["unknown_ids"](solved), source)
    assert structure(nb) == structure(solved)
    assert nb.cells[-1].source == 'print("All tests passed")' and "nbgrader" not in nb.cells[-1].metadata


def test_an_integer_of_5000_digits_in_metadata_is_dropped(solved, source):
    text = KINDS["huge_number"](solved)
    with pytest.raises(ValueError, match="digits"):
        json.loads(text)
    nb = normalised(text, source)
    assert structure(nb) == structure(solved) and "big" not in nb.metadata


def test_a_missing_attachment_no_longer_breaks_the_feedback(solved, source):
    from nbconvert import HTMLExporter
    text = KINDS["missing_attachment"](solved)
    with pytest.raises(Exception, match="missing attachment|StopIteration"):
        HTMLExporter().from_notebook_node(nbformat.reads(text, as_version=4))
    nb = normalised(text, source)
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert "My notes" in html
    assert "attachments" not in nb.cells[2]  # the malformed (empty) one is gone
    good = copy.deepcopy(nb.cells[2])
    good.attachments = {"plot.png": {"image/png": "iVBORw0KGgo="}}
    good.source = "![plot](attachment:plot.png)"
    fine = nbformat.v4.new_notebook(cells=[good])
    normalise_metadata(fine, source)
    assert "data:image/png;base64,iVBORw0KGgo=" in HTMLExporter().from_notebook_node(fine)[0]


def test_the_step_reads_the_source_from_the_gradebook(solved, source, monkeypatch):
    from deepngrams.grading import nbgrader_steps
    monkeypatch.setattr(nbgrader_steps, "source_metadata", lambda db, notebook, assignment: source)
    nb = nbformat.reads(KINDS["test_not_graded"](solved), as_version=4)
    step = NormaliseMetadata()
    step.log = logging.getLogger("test")
    out, _ = step.preprocess(nb, {"nbgrader": {"db_url": "sqlite://", "notebook": "n", "assignment": "a"}})
    assert structure(out) == structure(solved)


def test_later_steps_take_metadata_that_is_not_a_mapping():
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.metadata["nbgrader"] = ["grade", True]
    assert cells.nbgrader_meta(cell) == {} and cells.nbgrader_meta({"metadata": 5}) == {} and not cells.is_test_cell(cell)
    nb = nbformat.v4.new_notebook(cells=[cell])
    step = HideHiddenTests()
    assert step.preprocess(nb, {})[0].cells[0].source == "x = 1"


@pytest.mark.slow
def test_fuzzed_metadata_keeps_the_graded_structure(solved, source):
    rng = random.Random(20261130)
    for _ in range(200):
        nb = fuzz(solved, rng)
        # The cells that kept their (string) grade_id get exactly the source's structure; the others none.
        ids = {m.get("grade_id") for c in nb["cells"] if isinstance(m := c["metadata"].get("nbgrader"), dict)}
        out = normalised(json.dumps(nb), source)
        assert structure(out) == [s for s in structure(solved) if s[0] in ids]
        assert all(cells.nbgrader_meta(c) == source[cells.nbgrader_meta(c)["grade_id"]] for c in out.cells if cells.nbgrader_meta(c))


# Files the deep-JSON reader (harmless._loads_deep) once read in time that doubled with each character:
# an unclosed string after nesting too deep for json.loads. They are read in the grader's own process,
# before any sandbox, so a stall there holds up the whole batch.
UNCLOSED_STRINGS = [b"[" * 3000 + b'"' + b"a" * 60, b"[" * 3000 + b'"' + b"ab\\" * 40,
                    b"[" * 3000 + b'{"k": "' + b"x" * 50 + b"\\", b"[" * 3000 + b'"' + b"\\a" * 40 + b"\\"]


def test_an_unclosed_string_nested_deep_is_read_in_time_that_grows_with_its_length():
    """In a child process with a timeout: a backtracking regular expression cannot be interrupted."""
    import subprocess
    import sys
    code = ("import sys; from deepngrams.grading.harmless import harmless_file\n"
            f"for raw in {UNCLOSED_STRINGS!r}:\n"
            "    assert harmless_file(raw) == raw  # not a notebook: left for the preflight to refuse\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=release.ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("markdown", LIVE_LINKS + BREAKOUTS + SPLIT_BY_MARKUP + REMOTE_IMAGES)
def test_a_markdown_link_to_a_script_or_a_remote_image_reaches_nbgrader_as_text(solved, markdown):
    assert live_links(markdown), "the case must be live as handed in"
    nb = copy.deepcopy(solved)
    nb["cells"].insert(3, nbformat.v4.new_markdown_cell(markdown))
    kept = json.loads(harmless_file(json.dumps(nb).encode()))
    assert live_links(kept["cells"][3]["source"]) == []
    assert markdown in kept["cells"][3]["source"]  # shown, as text


def test_a_long_markdown_cell_or_one_naming_an_attachment_it_lacks_is_shown_as_text(solved):
    """A markdown cell too long to render and check (config.MAX_CHECKED_MARKDOWN) is shown as text, and
    so is one whose image names an attachment the cell does not have, however spelled (nbconvert
    would raise "missing attachment" and the whole feedback page would fail), or names one in a way
    nbconvert reads as an address."""
    from nbconvert.filters.markdown import markdown2html
    from deepngrams.config import MAX_CHECKED_MARKDOWN
    nb = copy.deepcopy(solved)
    long = "&amp;" + "amp;" * 8 + "&b" * (MAX_CHECKED_MARKDOWN // 2)
    nb["cells"][3:3] = [nbformat.v4.new_markdown_cell(text) for text in (long, "![x](attachment&#58;a.png)",
                                                                          "![x](attachment:a.png)",
                                                                          "![x](\\attachment:a.png)")]
    nb["cells"][6]["attachments"] = {"a.png": {"image/png": "iVBORw0KGgo="}}  # read as a path on the server
    kept = json.loads(harmless_file(json.dumps(nb).encode()))["cells"][3:7]
    assert all(cell["source"].startswith("(This cell links to a script") for cell in kept)
    for cell in kept[1:]:
        markdown2html(cell["source"])  # renders: no image of a missing attachment is left


def _counting_renders(monkeypatch) -> list[int]:
    """The length of each markdown text harmless renders to check it, from now on (its cache emptied)."""
    from deepngrams.grading import harmless
    rendered, real = [], harmless._render
    monkeypatch.setattr(harmless, "_CHECKED", {})
    monkeypatch.setattr(harmless, "_render", lambda text, attachments: rendered.append(len(text)) or real(text, attachments))
    return rendered


# Markdown that costs the renderer or its sanitiser far more than its length: nested lists and tags (quadratic
# in nbconvert's sanitiser), runs of emphasis, brackets and table cells; each cell distinct, as no cache helps.
COSTLY = {"nested lists": "<ul>" * 4000, "nested bold": "<b>" * 5000, "emphasis": "*_" * 7000,
          "brackets": "[" * 15000, "table": ("|a" * 50 + "|\n" + "|-" * 50 + "|\n") * 70, "quotes": ">" * 15000}


@pytest.mark.parametrize("how", ["many cells", "few costly cells"])
def test_a_notebook_of_costly_markdown_is_checked_only_up_to_the_budget(solved, how, monkeypatch):
    """Checking markdown renders it in the grader's own process: a notebook's markdown is rendered for
    at most config.MAX_CHECKED_MARKDOWN_TOTAL characters in all (each cell as written and sanitised),
    and what lies beyond reaches nbgrader as text, in the preflight (the batch's client) as in the
    Formgrader's step."""
    from deepngrams.config import MAX_CHECKED_MARKDOWN_TOTAL
    from deepngrams.grading.nbgrader_steps import markdown_shown_as_text
    count = 150 if how == "many cells" else 1  # 13 MiB, under the size the preflight accepts
    costly = [f"{i} {name}\n\n{text[:15000]}" for i in range(count) for name, text in COSTLY.items()]
    nb = copy.deepcopy(solved)
    nb["cells"][3:3] = [nbformat.v4.new_markdown_cell(text) for text in costly]
    raw = json.dumps(nb).encode()
    rendered = _counting_renders(monkeypatch)
    reason, _, kept = preflight.check_notebook(raw, graded_ids(solved))
    assert reason == ""
    assert sum(rendered) <= 2 * MAX_CHECKED_MARKDOWN_TOTAL, (len(rendered), sum(rendered))
    shown = [c["source"] for c in json.loads(kept)["cells"][3:3 + len(costly)]]
    assert all(text in s for text, s in zip(costly, shown))  # shown as written, or as text in a block
    # Past the budget on these cells alone (the course's cells before them only spend it sooner): text.
    beyond = next(i for i in range(len(costly)) if sum(map(len, costly[:i + 1])) > MAX_CHECKED_MARKDOWN_TOTAL)
    assert all(s.startswith("(This cell links to a script") for s in shown[beyond:])
    rendered.clear()
    graded = nbformat.from_dict(copy.deepcopy(nb))
    markdown_shown_as_text(graded)
    assert sum(rendered) <= 2 * MAX_CHECKED_MARKDOWN_TOTAL
    assert all(c.source.startswith("(This cell links to a script") for c in graded.cells[3 + beyond:3 + len(costly)])


def test_markdown_past_the_budget_is_shown_as_text_and_the_course_cells_before_it_as_written(solved, monkeypatch):
    """The budget counts the cells in order: the course's own markdown (13 K) comes first and renders as
    it always does; a student's cells that would take the notebook past the budget are text."""
    from deepngrams.config import MAX_CHECKED_MARKDOWN, MAX_CHECKED_MARKDOWN_TOTAL
    nb = copy.deepcopy(solved)
    long = [f"Notes, part {i}: " + "plain words " * (MAX_CHECKED_MARKDOWN // 13) for i in range(6)]
    nb["cells"] += [nbformat.v4.new_markdown_cell(text) for text in long]
    kept = json.loads(harmless_file(json.dumps(nb).encode()))["cells"]
    assert [c["source"] for c in kept[:len(solved["cells"])]] == [c["source"] for c in solved["cells"]]
    course = sum(len(c["source"]) for c in solved["cells"] if c["cell_type"] == "markdown")  # at most this spent
    assert course + len(long[0]) <= MAX_CHECKED_MARKDOWN_TOTAL < sum(map(len, long[:5])), "the case must cross it"
    mine = kept[len(solved["cells"]):]
    assert mine[0]["source"] == long[0]
    assert all(cell["source"].startswith("(This cell links to a script") and text in cell["source"]
               for text, cell in zip(long[5:], mine[5:]))


@pytest.mark.parametrize("tag", ["<ul>", "<b>", "<div>", "</i>"])
def test_a_markdown_cell_of_many_tags_is_shown_as_text_unrendered(solved, tag, monkeypatch):
    """Over config.MAX_MARKDOWN_TAGS tags, a cell is text without being rendered (nested tags slow the
    sanitiser down faster than the text grows); at the limit, harmless tags render as written."""
    from deepngrams.config import MAX_MARKDOWN_TAGS
    nb = copy.deepcopy(solved)
    nb["cells"][3:3] = [nbformat.v4.new_markdown_cell(f"{n} tags: " + tag * n)
                        for n in (MAX_MARKDOWN_TAGS, MAX_MARKDOWN_TAGS + 1)]
    rendered = _counting_renders(monkeypatch)
    at, over = json.loads(harmless_file(json.dumps(nb).encode()))["cells"][3:5]
    assert at["source"] == nb["cells"][3]["source"]
    assert over["source"].startswith("(This cell links to a script") and nb["cells"][4]["source"] in over["source"]
    assert len(nb["cells"][4]["source"]) not in rendered


def test_the_course_markdown_and_ordinary_links_are_left_as_written(solved):
    nb = copy.deepcopy(solved)
    nb["cells"].insert(3, nbformat.v4.new_markdown_cell("See [the docs](https://www.tensorflow.org) and the "
                                                        "training data: is a word here."))
    nb["cells"].insert(4, nbformat.v4.new_markdown_cell("My plot: ![loss](attachment:loss.png), where x < y and y > z."))
    nb["cells"][4]["attachments"] = {"loss.png": {"image/png": "iVBORw0KGgo="}}
    kept = json.loads(harmless_file(json.dumps(nb).encode()))
    assert [c["source"] for c in kept["cells"]] == [c["source"] for c in nb["cells"]]


@pytest.mark.parametrize("markdown", OTHER_SPELLINGS)
def test_other_spellings_of_a_link_to_a_script_reach_nbgrader_as_text(solved, markdown):
    nb = copy.deepcopy(solved)
    nb["cells"].insert(3, nbformat.v4.new_markdown_cell(markdown))
    shown = json.loads(harmless_file(json.dumps(nb).encode()))["cells"][3]["source"]
    assert shown.startswith("(This cell links to a script") and "\n```text\n" + markdown + "\n```" in shown


# A student who copies the notice and then leaves its block: the cell is not what the grader made of it.
FORGED_NOTICES = ["```text\nquoted\n```\n[s](javascript:alert(1))\n```", "````text\n````\n[s](javascript:alert(1))\n````",
                  "~~~text\n~~~\n[s](javascript:alert(1))", "```text\n[s](javascript:alert(1))\n```\n\n[t](javascript:alert(2))",
                  "```python\n```\n[s](javascript:alert(1))\n```"]


@pytest.mark.parametrize("markdown", LIVE_LINKS + BREAKOUTS + OTHER_SPELLINGS + SPLIT_BY_MARKUP + REMOTE_IMAGES)
def test_markdown_shown_as_text_stays_as_it_is_when_made_harmless_again(markdown):
    """The batch makes markdown harmless before nbgrader reads it, and nbgrader's first step does it again
    (for the Formgrader's door): the second time changes nothing."""
    from deepngrams.grading.harmless import harmless_markdown
    cell = {"cell_type": "markdown", "source": markdown}
    assert harmless_markdown(cell) is True
    once = cell["source"]
    assert harmless_markdown(cell) is False and cell["source"] == once
    assert live_links(once) == []


@pytest.mark.parametrize("after_notice", FORGED_NOTICES)
def test_a_copied_notice_that_leaves_its_block_is_shown_as_text(after_notice):
    from deepngrams.grading.harmless import harmless_markdown
    from deepngrams.grading.harmless import _SHOWN_AS_TEXT
    forged = _SHOWN_AS_TEXT + "\n\n" + after_notice
    assert live_links(forged), "the case must be live as handed in"
    cell = {"cell_type": "markdown", "source": forged}
    assert harmless_markdown(cell) is True
    assert live_links(cell["source"]) == [] and forged in cell["source"]


def test_the_courses_nbgrader_step_shows_markdown_that_links_to_a_script_as_text(solved):
    """What plain `nbgrader autograde` and the Formgrader's Autograde run (the course's OverwriteCellsKeepingOrder)
    makes every such cell harmless, says so, and leaves the other markdown as written."""
    from deepngrams.grading.nbgrader_steps import markdown_shown_as_text
    nb = nbformat.from_dict(copy.deepcopy(solved))
    hostile = LIVE_LINKS + BREAKOUTS + OTHER_SPELLINGS + SPLIT_BY_MARKUP + REMOTE_IMAGES
    for markdown in hostile:
        nb.cells.append(nbformat.v4.new_markdown_cell(markdown))
    before = [c.source for c in nb.cells]
    changes = markdown_shown_as_text(nb)
    assert len(changes) == len(hostile) and all("shown as text" in c for c in changes)
    assert [c.source for c in nb.cells][:-len(hostile)] == before[:-len(hostile)]
    for cell, markdown in zip(nb.cells[-len(hostile):], hostile):
        assert live_links(cell.source) == [] and markdown in cell.source
    assert markdown_shown_as_text(nb) == []


# ----------------------------------------------------------------------------------------
# Files other editors save outside nbformat's schema, in parts grading throws away
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_a_file_other_editors_save_is_made_valid_and_keeps_every_source(kind, solved):
    text = FORMATS[kind](solved)
    # The case is real: nbformat refuses the file as saved (an id that is a list even raises a TypeError).
    with pytest.raises((nbformat.ValidationError, TypeError)), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbformat's notes on what it would repair itself
        nbformat.validate(nbformat.reads(text, as_version=4))
    kept = nbformat.reads(harmless_file(text.encode()).decode(), as_version=4)
    nbformat.validate(kept)
    handed_in = json.loads(text)
    assert [c["source"] for c in kept.cells] == [c["source"] for c in handed_in["cells"]]
    assert structure(kept) == structure(handed_in)
    assert all(c.outputs == [] and c.execution_count is None for c in kept.cells if c.cell_type == "code")
    ids = [c.get("id") for c in kept.cells]
    assert ids == [None] * len(ids) if kept.nbformat_minor < 5 else len(set(ids)) == len(ids)


def test_valid_cell_ids_are_kept_and_fresh_ones_are_new(solved):
    nb = copy.deepcopy(solved)
    nb["nbformat_minor"] = 5
    nb["cells"][0]["id"], nb["cells"][1]["id"], nb["cells"][2]["id"] = "cell-1-0", "a b", "cell-1-0"
    kept = json.loads(harmless_file(json.dumps(nb).encode()))
    assert [c["id"] for c in kept["cells"][3:]] == [c["id"] for c in nb["cells"][3:]]
    assert kept["cells"][0]["id"] == "cell-1-0"
    assert kept["cells"][1]["id"] not in ("a b", "cell-1-0") and kept["cells"][2]["id"] not in ("cell-1-0",)
    assert len({c["id"] for c in kept["cells"]}) == len(kept["cells"])


def _with_saved_output(solved: dict, mib: int) -> dict:
    nb = copy.deepcopy(solved)
    scratch = nbformat.v4.new_code_cell("print(text)")
    scratch["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["All the world's a stage\n"] * (mib * 2**20 // 24)}]
    nb["cells"].insert(3, scratch)
    return nb


def test_saved_outputs_over_the_graded_size_are_dropped_and_the_file_graded(solved, tmp_path):
    path = tmp_path / "deep_ngrams.ipynb"
    path.write_text(json.dumps(_with_saved_output(solved, 24)))
    assert preflight.MAX_NOTEBOOK_BYTES < path.stat().st_size < preflight.MAX_HANDED_IN_BYTES
    assert preflight.preflight(path, graded_ids(solved)) == ("", [])
    kept = harmless_file(path.read_bytes())
    assert len(kept) < 2**20 and json.loads(kept)["cells"][3]["outputs"] == []


def test_a_file_too_large_to_read_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "deep_ngrams.ipynb"
    with path.open("wb") as f:
        f.truncate(preflight.MAX_HANDED_IN_BYTES + 1)  # sparse: nothing is written
    reason, notes = preflight.preflight(path, [])
    assert reason.startswith("file too large (50 MiB, at most 50 MiB)") and "Clear Outputs" in reason and not notes


def test_a_notebook_too_large_without_its_outputs_is_refused(solved, tmp_path):
    nb = copy.deepcopy(solved)
    nb["cells"].append(nbformat.v4.new_markdown_cell("padding " * (3 * 2**20)))  # 24 MiB of text
    path = tmp_path / "deep_ngrams.ipynb"
    path.write_text(json.dumps(nb))
    reason, _ = preflight.preflight(path, [])
    assert reason.startswith("too large, even without its saved outputs (24 MiB, at most 20 MiB)")


HOSTILE_FORMATS = {
    "nbformat_minor": [True, "5", 5.0, 10**30, -1, None, [5], {"a": 1}],
    "cell_type": [["code"], {"a": 1}, None, 5, "heading", ""],
    "id": [["a"], {"a": 1}, 5, None, True, "", "x" * 10**4],
    "cells": [{"a": 1}, "text", [1, "x", None, []], None],
    "outputs": ["text", [1, None], {"a": 1}],
    "source": [5, None, [1, 2], {"a": 1}],
}


@pytest.mark.parametrize("key, value", [(k, v) for k, values in HOSTILE_FORMATS.items() for v in values])
def test_a_format_nobody_saves_gets_a_reason_and_never_an_exception(solved, key, value):
    nb = copy.deepcopy(solved)
    if key in ("nbformat_minor", "cells"):
        nb[key] = value
    else:
        for cell in nb["cells"][:5]:
            cell[key] = value
    reason, notes, kept = preflight.check_notebook(json.dumps(nb).encode(), graded_ids(solved))
    assert isinstance(reason, str) and isinstance(notes, list) and isinstance(kept, bytes)
    if not reason:
        nbformat.validate(nbformat.reads(kept.decode(), as_version=4))


def test_a_lone_surrogate_never_passes_the_file_on_as_it_came(solved):
    """JSON may escape a lone surrogate, which UTF-8 cannot hold: the file is still made harmless
    (its link to a script shown as text), with U+FFFD in the surrogate's place."""
    nb = copy.deepcopy(solved)
    nb["cells"].insert(3, {"cell_type": "markdown", "metadata": {"tags": ["\ud800"]},
                           "source": "[click](javascript:alert(document.cookie)) \udfff"})
    raw = json.dumps(nb).encode()  # ASCII, the surrogates escaped
    reason, _, kept = preflight.check_notebook(raw, graded_ids(solved))
    cell = json.loads(kept)["cells"][3]
    assert reason == "" and cell["source"].startswith("(This cell links to a script") and "\ufffd" in cell["source"]


def test_a_deeply_nested_file_over_its_limit_is_refused_unparsed():
    from deepngrams.config import MAX_DEEP_JSON_BYTES
    raw = b"[" * (MAX_DEEP_JSON_BYTES + 1)
    assert harmless_file(raw) is raw
    reason, _, _ = preflight.check_notebook(raw, [])
    assert reason == "not JSON, so not a notebook (nested too deeply); was it saved from Jupyter?"
