"""Text a student controls, made safe for where it goes: a terminal, a spreadsheet, a browser.

Student ids (folder names), grade ids, reasons built from them, exception text and the
feedback pages all carry what a student wrote. Each helper here is used at the point where
such text leaves the grader: `printable` for the terminal, `csv_cell` for CSV files read by
spreadsheets, `inert_output` for the outputs of the graded notebook, `clean_feedback_html` for the
HTML pages handed back to students.
"""
from __future__ import annotations

import html
import re
import unicodedata

import nh3

from deepngrams import config

# Spreadsheets run a cell starting with one of these as a formula (OWASP, "CSV Injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_AFTER_SEMICOLON = re.compile(r'(;[ "]*)(?=[=+@-])')  # a quote may open the next cell

# The feedback page may load nothing from anywhere: no script, no remote image, font or style.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; form-action 'none'; base-uri 'none'"

_IMAGE = re.compile(r"data:image/(png|jpeg|gif);base64,[A-Za-z0-9+/=\s]*\Z")
_LINK_SCHEMES = ("http:", "https:", "mailto:")
_TAGS = set(nh3.ALLOWED_TAGS) - {"map", "area"}
_ATTRIBUTES = {tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}
_ATTRIBUTES["*"] = _ATTRIBUTES.get("*", set()) | {"class", "id", "title"}
_ATTRIBUTES["img"] = {"src", "alt", "width", "height"}
_ATTRIBUTES["a"] = {"href", "title", "name"}  # name: the page's own "#top" anchor
_STYLE = re.compile(r"<style\b[^>]*>.*?</style\s*>", re.S | re.I)
_HEAD = re.compile(r"<head\b[^>]*>(.*?)</head\s*>", re.S | re.I)
_BODY = re.compile(r"<body\b([^>]*)>(.*)</body\s*>", re.S | re.I)
_BODY_CLASS = re.compile(r"""\bclass\s*=\s*(["'])([\w\s-]*)\1""")


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _unsafe(char: str) -> bool:
    # Cc: C0 and C1 controls and DEL (escape sequences, bells, NUL, newlines); Cf: format
    # characters (bidi overrides, zero-width); Cs: lone surrogates from undecodable file
    # names; Zl/Zp: line and paragraph separators.
    return unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp")


def printable(text: object) -> str:
    """`text` with every control or format character written as a visible escape (`\\x1b`),
    so that printing it cannot move the cursor, clear the screen, retitle the window or
    reorder what is shown around it."""
    text = str(text)
    if text.isprintable() and text.isascii():
        return text
    return "".join(_escape(c) if _unsafe(c) else c for c in text)


# Colours (SGR, ESC [ ... m) are the one escape sequence cell outputs keep: Jupyter and nbconvert draw
# them. Every other one acts on a terminal that shows the file (cat, less -R): cursor moves, screen
# clears, window titles and hyperlinks (OSC), device strings (DCS), and their one-byte C1 forms. Each
# alternative starts with its own character, so the regular expression engine jumps from one
# introducer to the next.
_STRING_END = r"[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # up to BEL or ST, if they come
_COLOUR_AFTER_ESC = r"\[[0-9;]*m"  # SGR: what follows the ESC of a colour
_ESCAPE_SEQUENCE = re.compile(
    rf"\x1b(?!{_COLOUR_AFTER_ESC})(?:\[[0-?]*[ -/]*[@-~]?"     # CSI but a colour: cursor, screen, modes
    rf"|[]PX^_]{_STRING_END}"                     # OSC, DCS, SOS, PM, APC
    r"|[ -/]*[0-~]?)"                             # the other escapes, and a lone ESC
    r"|\x9b[0-?]*[ -/]*[@-~]?"                     # C1 CSI
    + "".join(rf"|\x{c:02x}{_STRING_END}" for c in (0x90, 0x98, 0x9d, 0x9e, 0x9f)))  # C1 strings
# The bidirectional embeddings, overrides and isolates: they reorder the text after them on its line.
BIDI_OVERRIDES = frozenset(map(chr, [*range(0x202a, 0x202f), *range(0x2066, 0x206a)]))
# Then the other C0 and C1 controls go (all but new line, tab and carriage return, which outputs use
# as text, and the ESC of a colour), and the bidirectional controls, which reorder what is around them.
_CONTROLS = dict.fromkeys([*range(0x00, 0x09), 0x0b, 0x0c, *range(0x0e, 0x1b), *range(0x1c, 0x20), *range(0x7f, 0xa0),
                           0x061c, 0x200e, 0x200f, *sorted(map(ord, BIDI_OVERRIDES)),
                           *range(0xd800, 0xe000)])  # and lone surrogates, which no notebook file can hold


# nbconvert's ansi2html, which draws the Formgrader's pages and the feedback, slices the rest of the
# text at every colour and pops a colour's codes one by one: one line of two million codes took minutes.
# So a colour is kept only while it is short, in a text that is not long, and while the notebook has
# colours left (`colour_budget`); the text itself is always kept.
_COLOUR = re.compile("\x1b" + _COLOUR_AFTER_ESC)


def colour_budget() -> list[int]:
    """How many more colours the outputs of one notebook may keep (`inert_output` counts it down)."""
    return [config.MAX_COLOURS]


def inert_output(text: object, colours: list[int] | None = None) -> str:
    """A cell's output text as Jupyter shows it (colours, tabs, new lines and carriage returns kept),
    with every other escape sequence, control character and bidirectional control removed: the
    graded notebook and the feedback page then show the same, and neither acts on a terminal that
    prints them. No ESC is left but a colour's: removing a sequence never makes a new one.
    `colours`: the notebook's `colour_budget()` (a text alone gets one of its own)."""
    text = _ESCAPE_SEQUENCE.sub("", str(text)).translate(_CONTROLS)
    if "\x1b" not in text:
        return text
    if len(text) > config.MAX_COLOURED_TEXT:
        return _COLOUR.sub("", text)
    left = colour_budget() if colours is None else colours

    def rationed(match: re.Match) -> str:
        if len(match.group()) > config.MAX_COLOUR_CHARS or left[0] <= 0:
            return ""
        left[0] -= 1
        return match.group()
    return _COLOUR.sub(rationed, text)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip() == text and text.lower().lstrip("+-") not in ("inf", "infinity", "nan")


def csv_cell(text: object) -> str:
    """A CSV cell that a spreadsheet shows as text: printable, and a leading =, +, -, @, tab or
    carriage return neutralised by a leading apostrophe (numbers such as -1.5 stay numbers)."""
    raw = str(text)
    cell = printable(raw)
    if _is_number(raw):
        return cell
    # A spreadsheet set to split lines at ";" (most of Europe's) starts a new cell after each one.
    cell = _AFTER_SEMICOLON.sub(r"\1'", cell)
    if raw.lstrip(" ").startswith(FORMULA_START) or cell.lstrip(" ").startswith(FORMULA_START):
        return "'" + cell
    return cell


def _attribute(tag: str, name: str, value: str) -> str | None:
    """Links only to the web or mail; images only the notebook's own inline pictures."""
    if tag == "img" and name == "src":
        return value if _IMAGE.match(value.strip()) else None
    if name == "href":
        target = re.sub(r"[\x00-\x20]", "", value).lower()
        scheme = re.match(r"[a-z][a-z0-9+.-]*:", target)
        return value if scheme is None or scheme.group(0) in _LINK_SCHEMES else None
    return value


def clean_html(fragment: str) -> str:
    """An HTML fragment with only ordinary markup left: no script, style, frame, form or event
    handler, no `javascript:`/`data:` link and no image but an inline png, jpeg or gif."""
    return nh3.clean(fragment, tags=_TAGS, attributes=_ATTRIBUTES, attribute_filter=_attribute,
                     url_schemes={"http", "https", "mailto", "data"}, strip_comments=True,
                     clean_content_tags={"script", "style", "svg", "math", "iframe", "object", "embed",
                                         "template", "noscript", "textarea", "select", "title"})


def clean_feedback_html(page: str, title: str = "feedback") -> str:
    """A feedback page that is safe to open: nbconvert's styles kept, every script dropped,
    the body sanitised and free of terminal codes, and a Content-Security-Policy that loads
    nothing from outside."""
    head = _HEAD.search(page)
    styles = _STYLE.findall(head.group(1)) if head else []
    body = _BODY.search(page[head.end():] if head else page)
    attrs, content = (body.group(1), body.group(2)) if body else ("", page)
    css_class = _BODY_CLASS.search(attrs)
    body_open = f'<body class="{html.escape(css_class.group(2))}">' if css_class else "<body>"
    return "\n".join([
        "<!DOCTYPE html>",
        "<html>",
        "<head>",
        f'<meta http-equiv="Content-Security-Policy" content="{html.escape(CSP)}">',
        '<meta charset="utf-8">',
        f"<title>{html.escape(printable(title))}</title>",
        *styles,
        "</head>",
        body_open,
        inert_output(clean_html(content)),  # a markdown cell's escape sequences too: cat the page safely
        "</body>",
        "</html>",
        "",
    ])
