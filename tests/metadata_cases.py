"""Submissions whose metadata or format is broken in the ways students' editors and habits break it,
a seeded fuzzer of metadata, and markdown that links to scripts, for tests/test_metadata.py,
tests/test_grade_student_data.py and tests/test_nbgrader_door.py.

Each builder takes the solved notebook (as JSON data) and returns the text of the file handed in:
text, because some of these (metadata nested 1000 deep, integers of 5000 digits) cannot be
written by `json.dumps` or nbformat at all.
"""
from __future__ import annotations

import copy
import json
import random

DEEP = 1000
_PLACE = "@@deep-or-large@@"  # a string in the data, replaced in the file's text


def _text(nb: dict, replacement: str = "") -> str:
    return json.dumps(nb, indent=1).replace(json.dumps(_PLACE), replacement)


def _cells(nb: dict, which) -> list[dict]:
    return [c for c in nb["cells"] if which(c.get("metadata", {}).get("nbgrader", {}))]


def is_test(meta: dict) -> bool:
    return bool(meta.get("grade")) and not meta.get("solution")


def is_solution(meta: dict) -> bool:
    return bool(meta.get("solution"))


def not_a_mapping(solved: dict) -> str:
    """Every solution and test cell's nbgrader metadata replaced by a string, a list, a number, null;
    and a plain cell's metadata by a list."""
    nb = copy.deepcopy(solved)
    junk = ["solution", ["grade", True], 3, None, True]
    for i, cell in enumerate(_cells(nb, lambda m: is_test(m) or is_solution(m))):
        cell["metadata"]["nbgrader"] = junk[i % len(junk)]
    next(c for c in nb["cells"] if not c["metadata"])["metadata"] = ["not", "a", "mapping"]  # the whole metadata
    return _text(nb)


def nested_deep(solved: dict) -> str:
    """A solution cell's and a test cell's nbgrader metadata nested 1000 deep, and another key of
    a markdown cell, and of the notebook, too."""
    nb = copy.deepcopy(solved)
    solution, test = _cells(nb, is_solution)[0], _cells(nb, is_test)[0]
    solution["metadata"]["nbgrader"] = _PLACE
    test["metadata"]["nbgrader"] = {"grade_id": _PLACE}
    next(c for c in nb["cells"] if c["cell_type"] == "markdown")["metadata"]["editor"] = _PLACE
    nb["metadata"]["widgets"] = _PLACE
    return _text(nb, "[" * DEEP + "]" * DEEP)


def grade_id_a_list(solved: dict) -> str:
    """Every test cell's grade_id wrapped in a list."""
    nb = copy.deepcopy(solved)
    for cell in _cells(nb, is_test):
        cell["metadata"]["nbgrader"]["grade_id"] = [cell["metadata"]["nbgrader"]["grade_id"]]
    return _text(nb)


def solution_claims_grade(solved: dict) -> str:
    """Every solution cell claiming to be a graded cell worth 100 points."""
    nb = copy.deepcopy(solved)
    for cell in _cells(nb, is_solution):
        cell["metadata"]["nbgrader"].update(grade=True, points=100)
    return _text(nb)


def test_not_graded(solved: dict) -> str:
    """Every test cell's `grade` flag turned off."""
    nb = copy.deepcopy(solved)
    for cell in _cells(nb, is_test):
        cell["metadata"]["nbgrader"]["grade"] = False
    return _text(nb)


def unknown_ids(solved: dict) -> str:
    """Made-up ids: a code cell claiming to be a test worth 50 points, a solution cell renamed."""
    nb = copy.deepcopy(solved)
    extra = copy.deepcopy(_cells(nb, is_test)[0])
    extra["metadata"]["nbgrader"].update(grade_id="test_bonus_points", points=50)
    extra["source"], extra["id"] = 'print("All tests passed")', "made-up"
    nb["cells"].append(extra)
    return _text(nb)


def missing_attachment(solved: dict) -> str:
    """Markdown images of attachments the file does not have, or has malformed."""
    nb = copy.deepcopy(solved)
    nb["cells"].insert(1, {"cell_type": "markdown", "id": "notes", "metadata": {}, "source": "My notes ![plot](attachment:plot.png)"})
    nb["cells"].insert(2, {"cell_type": "markdown", "id": "more-notes", "metadata": {}, "attachments": {"empty.png": {}},
                           "source": "![empty](attachment:empty.png) and ![other](attachment:image%201.png)"})
    return _text(nb)


def huge_number(solved: dict) -> str:
    """A test cell's points and the notebook's metadata holding an integer of 5000 digits."""
    nb = copy.deepcopy(solved)
    _cells(nb, is_test)[0]["metadata"]["nbgrader"]["points"] = _PLACE
    nb["metadata"]["big"] = _PLACE
    return _text(nb, "9" * 5000)


# What other editors save, outside nbformat's schema, in parts grading throws away (each a dict edited in place).
def _ids_before_4_5(nb: dict) -> None:
    """Cell ids kept in a notebook that says nbformat 4.4, as VS Code and JupyterLab 3.3 save it."""
    nb["nbformat_minor"] = 4
    for i, cell in enumerate(nb["cells"]):
        cell.setdefault("id", f"c{i}")


def _outputs_on_text_cells(nb: dict) -> None:
    """A code cell turned into markdown, and one into raw, that keep their outputs and execution count."""
    nb["cells"].insert(1, {"cell_type": "markdown", "metadata": {}, "source": "My notes", "outputs": [],
                           "execution_count": None})
    nb["cells"].insert(2, {"cell_type": "raw", "metadata": {}, "source": "scratch", "execution_count": 7})


def _outputs_nbformat_refuses(nb: dict) -> None:
    """Saved outputs and counts the schema refuses: a stream with no name, an execute_result with no
    count, a count saved as text, outputs with no type."""
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    code[0]["outputs"] = [{"output_type": "stream", "text": "hello\n"}]
    code[1]["outputs"] = [{"output_type": "execute_result", "data": {"text/plain": "1"}, "metadata": {}}]
    code[2]["execution_count"] = "3"
    code[3]["outputs"] = [{"text": "no type"}, "not even an output"]


def _keys_no_schema_has(nb: dict) -> None:
    """Keys of other tools: on the notebook, on a code cell (attachments, trusted), on a markdown cell."""
    nb["colab"] = {"provenance": []}
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code.update(attachments={}, trusted=True)
    next(c for c in nb["cells"] if c["cell_type"] == "markdown")["collapsed"] = False


def _ids_nbformat_refuses(nb: dict) -> None:
    """A 4.5 notebook with cell ids that are malformed, too long, repeated, missing or not text."""
    nb["nbformat_minor"] = 5
    for cell, found in zip(nb["cells"], ("has space", "a/b", "x" * 65, "same", "same", None, "", ["a"], {"b": 1}, 7)):
        if found is None:
            cell.pop("id", None)
        else:
            cell["id"] = found


def _edited(*edits):
    def build(solved: dict) -> str:
        nb = copy.deepcopy(solved)
        for edit in edits:
            edit(nb)
        return _text(nb)
    build.__doc__ = " ".join(edit.__doc__ for edit in edits)
    return build


FORMATS = {"ids_before_4_5": _edited(_ids_before_4_5), "outputs_on_text_cells": _edited(_outputs_on_text_cells),
           "outputs_nbformat_refuses": _edited(_outputs_nbformat_refuses),
           "keys_no_schema_has": _edited(_keys_no_schema_has), "ids_nbformat_refuses": _edited(_ids_nbformat_refuses),
           # all but the last at once, as one student's file
           "saved_by_other_editors": _edited(_ids_before_4_5, _outputs_on_text_cells, _outputs_nbformat_refuses,
                                             _keys_no_schema_has)}

KINDS = {f.__name__: f for f in (not_a_mapping, nested_deep, grade_id_a_list, solution_claims_grade, test_not_graded,
                                  unknown_ids, missing_attachment, huge_number)} | FORMATS


# ----------------------------------------------------------------------------------------
# Fuzzing: random types, depths and values in every cell's metadata and the notebook's
# ----------------------------------------------------------------------------------------
def random_value(rng: random.Random, depth: int = 0):
    """A random JSON value: scalars of every type, strings that look like ids, nested containers."""
    kind = rng.randrange(9 if depth < 6 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 1, 100, 2**31, -(2**63), 10**30])
    if kind == 3:
        return rng.choice([0.5, -1e300, 1e308, 3.0])
    if kind == 4:
        return rng.choice(["", "x", "test_GRULM_outputs", "GRULM", "attachment:x.png", "é" * 3, "\u0000"])
    if kind == 5:
        return "s" * rng.randrange(50)
    if kind in (6, 7):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["a", "nbgrader", "grade", "tags", "kernelspec", "name"]) + str(i): random_value(rng, depth + 1)
            for i in range(rng.randrange(4))}


_NBGRADER_KEYS = ["grade", "solution", "locked", "task", "points", "schema_version", "checksum", "cell_type", "extra"]
_CELL_KEYS = ["deletable", "editable", "collapsed", "scrolled", "tags", "jupyter", "widgets", "trusted", "name"]


def fuzz(solved: dict, rng: random.Random) -> dict:
    """The solved notebook with random metadata. Every cell keeps its grade_id except about one
    in ten, whose whole nbgrader metadata becomes a random value (then it counts as deleted)."""
    nb = copy.deepcopy(solved)
    for cell in nb["cells"]:
        meta = cell["metadata"]
        for key in rng.sample(_CELL_KEYS, rng.randrange(len(_CELL_KEYS))):
            meta[key] = random_value(rng)
        grader = meta.get("nbgrader")
        if isinstance(grader, dict):
            if rng.random() < 0.1:
                meta["nbgrader"] = random_value(rng)
            else:
                for key in rng.sample(_NBGRADER_KEYS, rng.randrange(len(_NBGRADER_KEYS))):
                    grader[key] = random_value(rng)
        elif rng.random() < 0.2:  # a cell without nbgrader metadata gets some without a known id
            meta["nbgrader"] = random_value(rng)
    nb["metadata"].update({k: random_value(rng) for k in rng.sample(["kernelspec", "language_info", "widgets",
                                                                     "toc", "nbgrader"], rng.randrange(5))})
    return nb


# Markdown a student adds that would link to a script in the autograded notebook, which the Formgrader renders
# on the Jupyter server's origin: spellings of the schemes, and ways out of the block the cell is shown in.
LIVE_LINKS = ["[solution](javascript:alert(1))", "[s](JaVaScRiPt:alert(1))", "[s][r]\n\n[r]: javascript:alert(1)",
              "[s][r]\n\n[r]:\n  javascript:alert(1)", "[s](jav&#x61;script:alert(1))", "[s]( javascript:alert(1))",
              "[s](javascript&colon;alert(1))", "<javascript:alert(1)>", "[s](<javascript:alert(1)>)",
              "[s](vbscript:msgbox(1))", "[s](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
              "![i](data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=)"]
BREAKOUTS = ["```\n[s](javascript:alert(1))\n```\n[t](javascript:alert(2))", "~~~\n~~~\n[s](javascript:alert(1))",
             "``````\n``````\n[s](javascript:alert(1))", "</code></pre>[s](javascript:alert(1))",
             "    indented\n[s](javascript:alert(1))"]
# Spellings nbconvert's renderer leaves dead but a browser or another renderer may not (tabs, line breaks and
# control characters inside an address, an entity without its semicolon, an escaped character).
OTHER_SPELLINGS = ["[s](java\tscript:alert(1))", "[s](jav&#97script:alert(1))", "[s](java\\script:alert(1))",
                   "[s](  \x01javascript:alert(1))", '<a href="java\nscript:alert(1)">s</a>',
                   "<a href = 'JAVASCRIPT:alert(1)'>s</a>"]


# Links an HTML sanitiser joins (nbconvert's SanitizeHTML, on the feedback's markdown, drops comments and the like).
SPLIT_BY_MARKUP = ["[s](java<!-- -->script:alert(1))", "[r]: <!---->data:text/html;base64,PHNjcmlwdD4=\n\n[s][r]",
                   "[s](java<?x?>script:alert(1))", "[s](java<!>script:alert(1))", "[s](vb<!---->script:msgbox(1))",
                   "[s](java<!--->script:alert(1))", "[s](java<!-- a>b -->script:alert(1))",
                   # where a reading that decodes or drops characters first sees another comment than the parser
                   "&lt;!--[s](java<!-- -->script:alert(1))", "&#60;!--[s](java<!-- -->script:alert(1))",
                   "<\n!--[s](java<!-- -->script:alert(1))", "<\t!--[s](java<!-- -->script:alert(1))",
                   '<b title="<!--">[s](java<!-- -->script:alert(1))', "&lt;!--[s][r]\n\n[r]: java<!-- -->script:alert(1)",
                   "[s](java<!-- --\n>x-->script:alert(1))", "[s](java<!--&gt;x-->script:alert(1))",
                   "&lt;!--[s](data<!-- -->:text/html;base64,PHNjcmlwdD4=)",
                   # runs of backticks the sanitiser joins into a fence that closes the code block early
                   "``<!---->``\n[notes](javascript:alert(document.domain))", "``<?x>``\n[s](javascript:alert(1))",
                   # an end tag with nothing to close, which the sanitiser drops whole (its quoted ">" too)
                   '[s](java</b x=">">script:alert(1))', "[s](JaVa</A x='>'>ScRiPt:alert(1))",
                   '[s](da</b x=">">ta:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)',
                   '[s](vb</strong x=">">script:msgbox(1))', '[s][r]\n\n[r]: java</code x=">">script:alert(1)',
                   # a character number longer than Python parses (html.unescape raises)
                   "[s](javascript:alert(1)) &#" + "0" * 4301]
# Images and styles a page loads by itself: the address tells someone outside when the grader reads the notebook.
REMOTE_IMAGES = ["![](http://attacker.invalid/px.png?who=eve)", "![x](https://a.invalid/p.png)", "![x](//a.invalid/p.png)",
                 "![x][r]\n\n[r]: http://a.invalid/p.png", '<img src="http://a.invalid/p.png">',
                 "<IMG SRC=http://a.invalid/p.png>", "[![x](http://a.invalid/p.png)](https://www.tensorflow.org)",
                 '<img srcset="http://a.invalid/p.png 2x">', "![x](ht<!-- -->tp://a.invalid/p.png)",
                 '<div style="background:url(http://a.invalid/p.png)">x</div>',
                 "&lt;!--![x]<!-- -->(http://a.invalid/p.png)", "``<!---->``\n![x](http://a.invalid/p.png)",
                 '!</b x=">">[x](http://a.invalid/p.png?who=eve)', "!</i title='>'>[x](//a.invalid/p.png)",
                 # an "attachment" address that swallows the image's, in spellings the attachment check misses
                 "a=ATTACHMENT:![b](http://a.invalid/p.png)", "a=attachment&#58;![b](http://a.invalid/p.png)",
                 "url(ATTACHMENT:![x](https://a.invalid/p.png)"]


def live_links(markdown: str) -> list[str]:
    """The addresses that would run, carry a page or load by themselves in what nbconvert's renderer makes
    of `markdown`, as written and after nbconvert's HTML sanitiser (attributes of the tags it writes, read
    by an HTML parser: text in a code block is no tag): links to a script or data, and images, media and
    styles from anywhere but the cell's attachments."""
    import re
    from html.parser import HTMLParser
    from nbconvert.filters.markdown import markdown2html
    from nbconvert.preprocessors.sanitize import SanitizeHTML
    found, loaded = [], []

    class Addresses(HTMLParser):
        def handle_starttag(self, tag, attrs):
            for name, value in attrs:
                value = value or ""
                if name in ("href", "src", "action", "formaction"):
                    found.append(value)
                if name in ("src", "srcset", "poster", "background") and not value.startswith("attachment:"):
                    loaded.append(value)
                if name == "style" and "url(" in value:
                    loaded.append(value)

    for text in (markdown, SanitizeHTML().sanitize_html_tags(markdown)):
        parser = Addresses()
        parser.feed(markdown2html(text))
        parser.close()
    return [a for a in found if re.match(r"(javascript|vbscript|data):", re.sub(r"[\x00-\x20]", "", a), re.I)] + loaded
