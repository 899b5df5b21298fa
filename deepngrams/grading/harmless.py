"""A submission's metadata and format made harmless before nbgrader reads the file: only the plain
values nbgrader and nbconvert need are kept, whatever a student's file holds (nested past Python's
recursion limit, numbers too long to parse, broken attachments). Standard library and the bundle's
config only, so the preflight and the command line start without loading nbgrader; nbconvert, whose
renderer judges a student's markdown, is loaded when the first such cell is checked."""
from __future__ import annotations

import hashlib
import html
import json
import re
from html.parser import HTMLParser

from deepngrams.config import (MAX_CHECKED_MARKDOWN, MAX_CHECKED_MARKDOWN_TOTAL, MAX_DEEP_JSON_BYTES,
                               MAX_MARKDOWN_TAGS)
from deepngrams.grading.cells import nbgrader_meta

SCHEMA_VERSION = 3
_FLAGS = ("deletable", "editable", "collapsed")  # the cell metadata Jupyter needs (booleans)
_NBGRADER_KEYS = ("grade", "solution", "locked", "task", "points", "grade_id", "schema_version", "checksum",
                  "cell_type")
_TOKEN = re.compile(r'\s*(?:([\[\]{},:])|("(?:[^"\\]|\\.)*")|(-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)'
                    r'|(true|false|null))', re.S)
_WORDS = {"true": True, "false": False, "null": None}
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # after json.loads every surrogate left is a lone one
_ATTACHMENT = re.compile(r"(?<!missing-)attachment:(?:([A-Za-z0-9._-]+)(?=[\s)]|$))?")


def _int(digits: str):
    """JSON integers: one too long for Python to parse (over 4300 digits) reads as null, not as an error."""
    return int(digits) if len(digits) <= 4000 else None


def _loads_deep(text: str):
    """json.loads without recursion, for JSON nested deeper than Python's recursion limit.

    Lenient about commas and colons: it only reads files whose every value is later checked again.
    """
    stack: list = []  # [open list or dict, the dict's pending key]
    pos = 0
    while True:
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"not JSON at character {pos}")
        pos = m.end()
        punct, string, number, word = m.groups()
        if punct in ("[", "{"):
            stack.append([[] if punct == "[" else {}, None])
            continue
        if punct in (",", ":"):
            continue
        if punct:  # ] or }
            if not stack:
                raise ValueError(f"unbalanced {punct!r} at character {pos}")
            value = stack.pop()[0]
        elif string is not None:
            value = json.loads(string)
            if stack and isinstance(stack[-1][0], dict) and stack[-1][1] is None:
                stack[-1][1] = value  # an object's key
                continue
        elif number is not None:
            value = json.loads(number, parse_int=_int)
        else:
            value = _WORDS[word]
        if not stack:
            if text[pos:].strip():
                raise ValueError(f"extra data at character {pos}")
            return value
        container, key = stack[-1]
        if isinstance(container, list):
            container.append(value)
        else:
            container[key] = value
            stack[-1][1] = None


def _scalar(value) -> bool:
    return value is None or isinstance(value, (bool, str, float)) or isinstance(value, int) and abs(value) < 2**53


def harmless_cell_metadata(meta) -> dict:
    """What nbgrader and nbconvert can take of a cell's metadata: Jupyter's boolean flags, and the
    nbgrader metadata's plain values when it is a mapping with a string grade_id (NormaliseMetadata
    then rebuilds it from the source notebook). Everything else (tags, widgets, editor state) goes."""
    if not isinstance(meta, dict):
        return {}
    kept = {k: meta[k] for k in _FLAGS if isinstance(meta.get(k), bool)}
    found = meta.get("nbgrader")
    if isinstance(found, dict) and isinstance(found.get("grade_id"), str):
        kept["nbgrader"] = {k: found[k] for k in _NBGRADER_KEYS if k in found and _scalar(found[k])}
    return kept


def harmless_notebook_metadata(meta) -> dict:
    """The notebook's kernel and language names (all nbconvert reads); OverwriteKernelspec then puts
    the course's kernel in."""
    meta = meta if isinstance(meta, dict) else {}
    kept: dict = {}
    kernel = meta.get("kernelspec")
    if isinstance(kernel, dict) and all(isinstance(kernel.get(k), str) for k in ("name", "display_name")):
        kept["kernelspec"] = {k: kernel[k] for k in ("name", "display_name", "language")
                              if isinstance(kernel.get(k), str)}
    language = meta.get("language_info")
    if isinstance(language, dict) and isinstance(language.get("name"), str):
        kept["language_info"] = {"name": language["name"]}
    return kept


def harmless_attachments(cell: dict) -> None:
    """Markdown attachments nbconvert can render: well-formed ones are kept, and an image that refers
    to a missing or malformed one is pointed elsewhere (nbconvert raises "missing attachment", and
    the feedback of the whole notebook fails)."""
    found = cell.get("attachments")
    good = {}
    for name, bundle in (found.items() if isinstance(found, dict) else ()):
        if isinstance(bundle, dict):
            bundle = {k: "".join(v) if isinstance(v, list) else v for k, v in bundle.items()
                      if isinstance(k, str) and "/" in k and (isinstance(v, str) or isinstance(v, list)
                                                              and all(isinstance(x, str) for x in v))}
            if bundle:
                good[name] = bundle
    if good:
        cell["attachments"] = good
    else:
        cell.pop("attachments", None)
    if cell.get("cell_type") != "markdown":
        return
    source = cell.get("source", "")
    source = "".join(x for x in source if isinstance(x, str)) if isinstance(source, list) else source
    if isinstance(source, str):
        cell["source"] = _ATTACHMENT.sub(lambda m: m.group(0) if m.group(1) and m.group(1) in good
                                         else "missing-" + m.group(0), source)


# Link schemes that run or carry a page when clicked (the Formgrader renders the autograded notebook's
# markdown on the Jupyter server's own origin, links as written), where a link's address starts: after "("
# or "]:" (markdown), "<" (an autolink), or "=" or a quote (an HTML attribute), spaces between. "Training
# data: ..." is text.
_LIVE_SCHEME = re.compile(r"(?:[(<\"'=]|\]:) *(?:javascript|vbscript|data):")
_INVISIBLE = re.compile(r"[\x00-\x1f\x7f\\]+")  # what browsers and markdown drop from an address
# What loads by itself when the page shows: an image (markdown's or a tag's), media, frames, styles. Its
# address, unless it is one of the cell's attachments, tells someone outside when the grader reads it.
_LOADS = re.compile(r"!\[|<(?:img|image|video|audio|source|picture|svg|iframe|frame|embed|object|input|track|link|"
                    r"style|meta|base)\b|\b(?:src|srcset|poster|background|lowsrc|dynsrc) *=|url *\(|@import")
_ADDRESS = re.compile(r"(?:\] *\(|\]:|=|url *\(|@import) *<? *[\"']? *([^\s\"'<>)]*)")
# What an HTML sanitiser (nbconvert's SanitizeHTML, run on every markdown cell the feedback and the
# Formgrader show) removes from the text it is given: comments, processing instructions, declarations and
# other bogus comments ("<!", "<?", "</" then no letter). Each removal can join what it separated
# ("java<!-- -->script:"), and where each ends is the HTML parser's business, so a cell that holds one is
# not read further: it is shown as text. The sanitiser keeps or escapes tags, removing nothing, but a
# browser or another renderer may drop them: that reading is checked too.
_REMOVED_BY_SANITISER = re.compile(r"<[!?]|</(?![A-Za-z])")
_TAG = re.compile(r"</?[a-z][^>]*(?:>|\Z)")
_TAG_OPENING = re.compile(r"<[A-Za-z/!?]")


def _readings(text: str) -> list[str]:
    """`text` as markdown and browsers may end up reading it: entities decoded (as often as they decode),
    escapes, line breaks, tabs and control characters gone, any case; and that without its tags."""
    for _ in range(8):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    reading = _INVISIBLE.sub("", text).lower()
    return [reading, _TAG.sub("", reading)]


def _unsafe_to_render(text: str, attachments: frozenset = frozenset()) -> bool:
    """Whether markdown `text` could link to a live scheme, load anything from an address that is not
    one of its `attachments`, or run a script: judged on what nbconvert's sanitiser and renderer make
    of it (`_rendered_unsafe`), and on readings of the text that browsers or other renderers may make
    (entities decoded, invisible characters and tags dropped). A cell that holds what the sanitiser
    removes (a comment), that is too long or holds too many tags to render here (the renderer and the
    sanitiser slow down faster than the text grows with nested tags), or that fails to render, is
    unsafe too."""
    if (len(text) > MAX_CHECKED_MARKDOWN or _REMOVED_BY_SANITISER.search(text)
            or len(_TAG_OPENING.findall(text)) > MAX_MARKDOWN_TAGS):
        return True
    try:
        readings = _readings(text)
    except ValueError:  # html.unescape on a character number longer than Python parses
        return True
    for reading in readings:
        if _LIVE_SCHEME.search(reading):
            return True
        if _LOADS.search(reading) and any(not address.startswith("attachment:")
                                          for address in _ADDRESS.findall(reading)):
            return True
    return _rendered_unsafe(text, attachments)


# What a rendered cell must not hold: elements that run, load or reshape the page, event handlers,
# addresses that run or carry a page, and anything fetched by itself but the cell's attachments.
_UNSAFE_TAGS = {"script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "link", "meta", "base",
                "form", "svg", "math", "template", "portal"}
_ADDRESS_ATTRIBUTES = {"href", "xlink:href", "src", "action", "formaction", "data", "poster", "background", "srcset",
                       "lowsrc", "dynsrc", "cite", "longdesc", "ping", "manifest", "codebase", "archive"}
_FETCHED_ATTRIBUTES = _ADDRESS_ATTRIBUTES - {"href", "xlink:href", "action", "formaction", "cite", "longdesc"}
_CHECKED: dict = {}  # (text's digest, attachments) -> verdict: the course's own cells recur in every notebook


def _rendered_unsafe(text: str, attachments: frozenset) -> bool:
    """Whether the HTML nbconvert renders of `text`, as written or after its sanitiser (which the
    feedback and the Formgrader show), holds what `_UNSAFE_TAGS` and the attribute sets name. Any
    failure to render counts as unsafe."""
    key = (hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest(), attachments)
    if key not in _CHECKED:
        try:
            from nbconvert.preprocessors.sanitize import SanitizeHTML
            pages = [_render(version, attachments) for version in (text, SanitizeHTML().sanitize_html_tags(text))]
            verdict = any(_page_unsafe(page, attachments) for page in pages)
        except Exception:  # noqa: BLE001 - what cannot be rendered here is shown as text
            verdict = True
        if len(_CHECKED) > 10_000:
            _CHECKED.clear()
        _CHECKED[key] = verdict
    return _CHECKED[key]


def _render(text: str, attachments: frozenset) -> str:
    """nbconvert's HTML of markdown `text` (its renderer, as the feedback and the Formgrader use it), an
    image of an attachment left as its "attachment:" address; one the cell lacks raises, as in nbconvert."""
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    class Renderer(IPythonRenderer):
        def _embed_image_or_attachment(self, src: str) -> str:
            if src.startswith("attachment:"):
                if src[len("attachment:"):] not in attachments:
                    raise ValueError(f"missing attachment: {src}")
                return src
            return super()._embed_image_or_attachment(src)

    return MarkdownWithMath(renderer=Renderer(escape=False)).render(text)


class _UnsafeElements(HTMLParser):
    """Reads a rendered page; `found` names what in it `_UNSAFE_TAGS` and the attribute sets name."""

    def __init__(self, attachments: frozenset) -> None:
        super().__init__()
        self.attachments, self.found = attachments, []

    def handle_starttag(self, tag, attrs):
        if tag in _UNSAFE_TAGS:
            self.found.append(tag)
        for name, value in attrs:
            value = _INVISIBLE.sub("", (value or "").strip()).lower()
            if name.startswith("on") or (name == "style" and ("url(" in value or "@import" in value
                                                               or "expression(" in value)):
                self.found.append(name)
            elif name in _ADDRESS_ATTRIBUTES and value.startswith(("javascript:", "vbscript:", "data:")):
                self.found.append(name)
            elif name in _FETCHED_ATTRIBUTES and value.removeprefix("attachment:") not in self.attachments:
                self.found.append(name)

    handle_startendtag = handle_starttag


def _page_unsafe(page: str, attachments: frozenset) -> bool:
    parser = _UnsafeElements(attachments)
    parser.feed(page)
    parser.close()
    return bool(parser.found)


_SHOWN_AS_TEXT = ("(This cell links to a script or a data address, shows an image from elsewhere, holds an HTML "
                  "comment or is too long to check; it is shown as text.)")
_SHOWN_BLOCK = re.compile(re.escape(_SHOWN_AS_TEXT) + r"\n\n(`{3,})text\n(.*)\n\1", re.S)


def _fence_length(text: str) -> int:
    """A fence that nothing in `text` can close: longer than all its backticks together, since a
    sanitiser that removes a comment joins the runs of backticks around it (never adds one)."""
    return max(3, text.count("`") + 1)


def _shown_as_text(source: str) -> bool:
    """Whether `source` is already what harmless_markdown makes: the notice, then one code block that
    nothing inside can close (a student who copies the notice and closes the block early is not)."""
    block = _SHOWN_BLOCK.fullmatch(source)
    return block is not None and block.group(2).count("`") < len(block.group(1))


class MarkdownBudget:
    """What is left to check of one notebook's markdown: MAX_CHECKED_MARKDOWN_TOTAL characters, its cells
    in order. Checking renders a cell in the grader's own process (the batch's client, the Formgrader's
    server), so a notebook of many long cells would hold it for minutes; the cells beyond the budget
    are shown as text unchecked, whatever they hold."""

    def __init__(self) -> None:
        self.left = MAX_CHECKED_MARKDOWN_TOTAL

    def allows(self, text: str) -> bool:
        """Whether `text` may be checked (it is counted either way: once spent, the budget stays spent)."""
        self.left -= len(text)
        return self.left >= 0


def harmless_markdown(cell: dict, budget: MarkdownBudget | None = None) -> bool:
    """A markdown cell that could link to a script or load an image from elsewhere (`_unsafe_to_render`),
    or that the notebook's `budget` leaves unchecked, is shown as the text it is: in a code block that
    nothing in it can close (`_fence_length`), so nothing in it renders as a link. Whether it changed
    the cell (one it already made harmless stays as it is)."""
    source = cell.get("source", "")
    source = "".join(x for x in source if isinstance(x, str)) if isinstance(source, list) else source
    if not isinstance(source, str) or _shown_as_text(source):
        return False
    found = cell.get("attachments")
    if (budget or MarkdownBudget()).allows(source) and not _unsafe_to_render(
            source, frozenset(found) if isinstance(found, dict) else frozenset()):
        return False
    fence = "`" * _fence_length(source)
    cell["source"] = f"{_SHOWN_AS_TEXT}\n\n{fence}text\n{source}\n{fence}"
    return True


_NOTEBOOK_KEYS = ("cells", "metadata", "nbformat", "nbformat_minor")
_CELL_KEYS = {"code": ("id", "cell_type", "metadata", "source", "outputs", "execution_count"),
              "markdown": ("id", "cell_type", "metadata", "source", "attachments"),
              "raw": ("id", "cell_type", "metadata", "source", "attachments")}
_CELL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def harmless_format(data: dict) -> None:
    """What nbformat's schema refuses but editors write, where grading has no use for it, made valid:
    saved outputs and execution counts go (the notebook is run afresh), so do keys a cell of its type
    does not have (outputs on a markdown cell), cell ids in a notebook older than nbformat 4.5 (which
    has none), and ids a 4.5 notebook cannot have (malformed or repeated: a fresh one instead)."""
    if data.get("nbformat") != 4:
        return  # the preflight names the version
    for key in [k for k in data if k not in _NOTEBOOK_KEYS]:
        del data[key]
    minor = data.get("nbformat_minor")
    with_ids = isinstance(minor, int) and not isinstance(minor, bool) and minor >= 5
    listed = data.get("cells") if isinstance(data.get("cells"), list) else []
    cells = [c for c in listed if isinstance(c, dict) and c.get("cell_type") in tuple(_CELL_KEYS)]  # ==, not hash
    kept = {c.get("id") for c in cells if isinstance(c.get("id"), str) and _CELL_ID.fullmatch(c["id"])}
    seen: set = set()
    for i, cell in enumerate(cells):
        for key in [k for k in cell if k not in _CELL_KEYS[cell["cell_type"]]]:
            del cell[key]
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        if not with_ids:
            cell.pop("id", None)
            continue
        found = cell.get("id")
        if not isinstance(found, str) or found not in kept or found in seen:  # a fresh id no other cell has
            cell["id"] = next(f"cell-{i}-{n}" for n in range(len(cells) + 1) if f"cell-{i}-{n}" not in kept)
        seen.add(cell["id"])


def harmless_notebook(data: dict) -> dict:
    """The parsed JSON of a submission with its metadata made harmless and its format valid where
    only what grading discards broke it (in place, and returned)."""
    harmless_format(data)
    data["metadata"] = harmless_notebook_metadata(data.get("metadata"))
    budget = MarkdownBudget()
    for cell in data.get("cells") if isinstance(data.get("cells"), list) else ():
        if isinstance(cell, dict):
            cell["metadata"] = harmless_cell_metadata(cell.get("metadata"))
            if cell.get("cell_type") in ("markdown", "raw") or "attachments" in cell:
                harmless_attachments(cell)
            # A markdown cell with a grade_id is left to nbgrader's steps: it may be an answer saved as
            # markdown, which they turn back into code (OverwriteCellsKeepingOrder shows what stays markdown).
            if cell.get("cell_type") == "markdown" and not isinstance(nbgrader_meta(cell).get("grade_id"), str):
                harmless_markdown(cell, budget)
    return data


def harmless_file(raw: bytes) -> bytes:
    """A submitted notebook's bytes with its metadata made harmless and its saved outputs dropped, or
    the bytes as they were when they are not a JSON object (the preflight says why). Metadata nested
    deeper than Python's recursion limit, or numbers too long to parse, do not make the file
    unreadable (plain json.loads would raise on them)."""
    try:
        text = raw.decode("utf-8")
        try:
            data = json.loads(text, parse_int=_int)
        except RecursionError:
            if len(raw) > MAX_DEEP_JSON_BYTES:
                return raw  # the preflight refuses it: nested too deeply
            data = _loads_deep(text)
        if not isinstance(data, dict):
            return raw
        # JSON may escape a lone surrogate, which UTF-8 cannot hold: written as U+FFFD, never a reason to
        # pass the file on as it came.
        return _LONE_SURROGATE.sub("\ufffd", json.dumps(harmless_notebook(data), ensure_ascii=False)).encode()
    except (UnicodeDecodeError, ValueError, RecursionError):
        return raw
