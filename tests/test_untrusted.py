"""Student text on its way to a person: terminal escapes, spreadsheet formulas, hostile HTML."""
import csv
import io
import re
import shutil

import pytest

from deepngrams.course import release
from deepngrams.grading.untrusted import FORMULA_START, clean_feedback_html, clean_html, csv_cell, inert_output, printable

PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8" />
<title>deep_ngrams</title>
<script src="https://cdn.example.org/mathjax.js"></script>
<style type="text/css">div.cell { color: black; }</style>
<script>window.MathJax = {};</script>
</head>
<body class="jp-Notebook" onload="steal()">
<div class="cell border-box-sizing text_cell rendered"><div class="inner_cell">{student}</div></div>
<div class="output_png output_subarea"><img src="%s"></div>
</body>
</html>
""" % PNG


@pytest.mark.parametrize("link", [
    "javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:alert(1)", "java\tscript:alert(1)",
    "&#106;avascript:alert(1)", "&#x6A;&#x61;vascript:alert(1)", "javascript&colon;alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", "DATA:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)", "VBScript:msgbox(1)", PNG,
])
def test_links_only_to_the_web_or_mail(link):
    out = clean_html(f'<a href="{link}">click</a><a href="https://example.org/x">ok</a><a href="mailto:t@x.org">m</a>')
    assert "click" in out
    assert not re.search(r"(?i)javascript|vbscript|data:", out), out
    assert 'href="https://example.org/x"' in out and 'href="mailto:t@x.org"' in out


@pytest.mark.parametrize("attack, gone", [
    ('<img src="https://tracker.example.org/pixel.gif?id=42">', "tracker"),
    ('<img src="//tracker.example.org/p.gif">', "tracker"),
    ('<img src=x onerror="alert(1)">', "onerror"),
    ('<img src="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=">', "svg"),
    ("<svg><script>alert(1)</script></svg>", "alert"),
    ("<svg onload=alert(1)></svg>", "alert"),
    ('<style>@import url("https://evil.example.org/x.css");</style>', "evil"),
    ('<div style="background:url(https://evil.example.org/b.png)">x</div>', "evil"),
    ('<iframe src="https://evil.example.org"></iframe>', "evil"),
    ('<form action="https://evil.example.org"><input name="password"></form>', "evil"),
    ('<object data="https://evil.example.org/x.swf"></object>', "evil"),
    ('<meta http-equiv="refresh" content="0;url=https://evil.example.org">', "evil"),
    ('<base href="https://evil.example.org/">', "evil"),
    ('<div onclick="alert(1)" onmouseover="alert(2)">x</div>', "alert"),
    ("<script>alert(1)</script>", "alert"),
])
def test_no_script_frame_form_or_remote_resource(attack, gone):
    out = clean_html(f"<p>before</p>{attack}<p>after</p>")
    assert gone not in out.lower(), out
    assert "<p>before</p>" in out and "<p>after</p>" in out


def test_the_notebooks_own_images_and_markup_stay():
    fragment = (f'<div class="output_png output_subarea"><img src="{PNG}" alt="plot"></div>'
                '<table class="dataframe"><tr><th>a</th><td><code>x</code></td></tr></table>'
                '<h2 id="sec">Title</h2><pre><span class="k">def</span></pre><a name="top"></a>')
    out = clean_html(fragment)
    assert f'src="{PNG}"' in out and 'class="output_png output_subarea"' in out
    assert '<table class="dataframe">' in out and '<h2 id="sec">' in out and '<span class="k">' in out
    assert '<a name="top"' in out


def test_feedback_page_has_a_csp_keeps_styles_and_drops_every_script():
    page = clean_feedback_html(PAGE.replace("{student}", '<a href="javascript:x()">a</a><img src="https://t.example/p">'))
    head = page.split("</head>")[0]
    assert head.index('http-equiv="Content-Security-Policy"') < head.index("<title>")
    csp = re.search(r'Content-Security-Policy" content="([^"]*)"', page).group(1)
    assert "default-src &#x27;none&#x27;" in csp and "img-src data:" in csp and "script-src" not in csp
    assert "div.cell { color: black; }" in page
    assert "<script" not in page.lower() and "mathjax" not in page.lower()
    assert "javascript" not in page and "t.example" not in page and "onload" not in page
    assert '<body class="jp-Notebook">' in page and f'src="{PNG}"' in page


@pytest.mark.parametrize("text, shown", [
    ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),  # clear screen, cursor home
    ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),  # OSC: window title
    ("a\x9b31mb", "a\\x9b31mb"),  # C1 CSI
    ("\x85next line", "\\x85next line"),  # C1 NEL
    ("abc\u202edcba", "abc\\u202edcba"),  # bidi override
    ("zero\u200bwidth", "zero\\u200bwidth"),
    ("nul\x00byte\x7f", "nul\\x00byte\\x7f"),
    ("two\nlines\r", "two\\x0alines\\x0d"),
    ("bad\udcffname", "bad\\udcffname"),  # an undecodable byte of a file name
    ("naïve Zoë 学生", "naïve Zoë 学生"),
])
def test_printable_escapes_every_control_and_format_character(text, shown):
    assert printable(text) == shown
    assert printable(text).isprintable()


@pytest.mark.parametrize("cell", ["=2+5", "+SUM(A1)", "-2+3", "@cmd", "\t=1", "\r=1", "=HYPERLINK(\"http://x\")",
                                  " =1+1", "-", "+", "=1"])
def test_formula_cells_are_neutralised(cell):
    out = csv_cell(cell)
    assert out.startswith("'") and out.isprintable()
    parsed = next(csv.reader(io.StringIO(_row([out]))))
    assert parsed == [out]


@pytest.mark.parametrize("cell", ["a;=1+1;b", "graded cell x;=cmd|' /C calc'!A0; is not part", "a; +SUM(A1)",
                                  "note;@cmd", "a;-2+3;", "=1;=2", "a;  =1", ";;=1", 'a;"=1+1', 'a; "" =1', 'a;""+1'])
def test_no_cell_starts_a_formula_where_spreadsheets_split_at_semicolons(cell):
    for delimiter in (",", ";"):
        parsed = next(csv.reader(io.StringIO(_row(["plain", csv_cell(cell), "19"])), delimiter=delimiter))
        assert not [field for field in parsed if field.lstrip(" ").startswith(FORMULA_START)], (delimiter, parsed)


@pytest.mark.parametrize("cell", ["0", "19", "-1.5", "+3", "2.5e-3", "alice", "a=b", "x,y", "a;b", "a; b=c"])
def test_numbers_and_plain_text_stay_as_they_are(cell):
    assert csv_cell(cell) == cell


def _row(cells):
    buf = io.StringIO()
    csv.writer(buf).writerow(cells)
    return buf.getvalue()


@pytest.mark.parametrize("text, shown", [
    # OSC: window titles, hyperlinks, clipboard writes; ended by BEL, by ST, or not at all
    ("a\x1b]0;owned\x07b", "ab"),
    ("a\x1b]2;owned\x1b\\b", "ab"),
    ("\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\", "click"),
    ("\x1b]52;c;cm0gLXJmIH4K\x07copied", "copied"),
    ("left open\x1b]0;never ended", "left open"),
    # CSI that is not a colour: screen clears, cursor moves, device queries, private modes
    ("x\x1b[2Jy", "xy"),
    ("over\x1b[1A\x1b[2Kwritten", "overwritten"),
    ("ask\x1b[6n", "ask"),
    ("alt\x1b[?1049hscreen", "altscreen"),
    ("cut\x1b[", "cut"),
    # device strings and the rest of ESC's forms
    ("p\x1bPq#0;2;0;0;0\x1b\\q", "pq"),
    ("apc\x1b_payload\x1b\\", "apc"),
    ("reset\x1bc", "reset"),
    ("lone\x1b", "lone"),
    # one-byte C1 forms
    ("z\x9b2Jz", "zz"),
    ("t\x9d0;title\x07t", "tt"),
    # lone controls and format characters
    ("bell\x07back\x08nul\x00del\x7f", "bellbacknuldel"),
    ("abc\u202edcba\u2066", "abcdcba"),
    # a colour broken by a control is no colour: what is left is text
    ("\x1b[31\x07m", "m"),
    ("\x1b\x07[31m", "[31m"),
    ("\x1b\x1b[31mred", "\x1b[31mred"),
    ("lone\ud800 surrogate\udfff", "lone surrogate"),
])
def test_inert_output_drops_every_escape_sequence_and_control_but_colours(text, shown):
    assert inert_output(text) == shown


@pytest.mark.parametrize("text", ["\x1b[31mred\x1b[0m and \x1b[1;32mbold green\x1b[m",
                                  "lines\nand\ttabs\r\n", "progress 10%\rprogress 20%",
                                  "naïve Zoë 学生 ≤ ±", "Traceback \x1b[0;31m---> 1\x1b[0m raise"])
def test_inert_output_keeps_what_jupyter_draws(text):
    assert inert_output(text) == text


def test_inert_output_leaves_no_escape_outside_a_colour_whatever_the_mix():
    """Removing a sequence never joins its neighbours into a new one: every ESC left opens a colour."""
    import random
    import re
    parts = ["\x1b", "[", "]", "0;", "31", "m", "\x07", "\\", "P", "\x9b", "\x9d", "\x9c", "a", "\n", "\r", "\u202e",
             "\x1b[31m", "\x1b]0;", "2J"]
    rng = random.Random(3)
    for _ in range(3000):
        out = inert_output("".join(rng.choice(parts) for _ in range(rng.randint(1, 14))))
        rest = re.sub(r"\x1b\[[0-9;]*m", "", out)
        assert all(c in "\n\t\r" or printable(c) == c for c in rest), repr(out)


def test_inert_output_keeps_only_colours_that_nbconvert_draws_in_little_time():
    """nbconvert's ansi2html takes time as the number of colours times the text's length, and as the
    square of one colour's codes (the Formgrader draws every graded notebook with it): a colour of very
    many codes goes, a long text keeps its words without colours, and one notebook keeps MAX_COLOURS."""
    from deepngrams import config
    from deepngrams.grading import untrusted
    assert inert_output("x\x1b[" + "0;" * 200_000 + "31mdone\n") == "xdone\n"
    truecolour = "\x1b[1;38;2;255;255;255;48;2;255;255;255m"
    assert len(truecolour) <= config.MAX_COLOUR_CHARS and inert_output(truecolour + "t") == truecolour + "t"
    long = "\x1b[31m" + "r" * config.MAX_COLOURED_TEXT + "\x1b[0m"
    assert inert_output(long) == "r" * config.MAX_COLOURED_TEXT
    budget = untrusted.colour_budget()
    outputs = [inert_output("\x1b[31mred\x1b[0m " * 300, budget) for _ in range(10)]
    assert sum(o.count("\x1b") for o in outputs) == config.MAX_COLOURS == 2_000 and budget == [0]
    assert all(o.replace("\x1b[31m", "").replace("\x1b[0m", "") == "red " * 300 for o in outputs)


def test_the_graded_notebook_keeps_no_more_colours_than_nbconvert_draws_in_little_time():
    """Every output of the graded notebook draws from one budget of colours (`verdicts._safe_outputs`),
    lines of a display's text counted together."""
    from deepngrams import config
    from deepngrams.grading import untrusted, verdicts
    many = "\x1b[1m+\x1b[0m" * 700
    outputs = [{"output_type": "stream", "name": "stdout", "text": many},
               {"output_type": "error", "ename": "E", "evalue": many, "traceback": [many, many]},
               {"output_type": "display_data", "data": {"text/plain": [many, "\n", many]}}]
    kept = verdicts._safe_outputs(outputs, untrusted.colour_budget())
    texts = [kept[0].text, kept[1].evalue, *kept[1].traceback, kept[2].data["text/plain"]]
    assert sum(t.count("\x1b") for t in texts) == config.MAX_COLOURS
    assert kept[2].data["text/plain"].replace("\x1b[1m", "").replace("\x1b[0m", "") == "+" * 700 + "\n" + "+" * 700


def test_feedback_page_carries_no_terminal_code_from_a_markdown_cell_or_an_output():
    page = ("<html><head><style>p {}</style></head><body class='jp-Notebook'><p>title\x1b]0;owned\x07 here</p>"
            "<pre>\x1b[2Jcleared\x9b6n\u202e</pre></body></html>")
    out = clean_feedback_html(page)
    assert "title here" in out and "<pre>cleared</pre>" in out
    assert not any(c in out for c in "\x1b\x07\x9b\u202e")


@pytest.mark.parametrize("raw, kept", [
    (b"2026-12-01 10:00:00.123456 UTC", b"2026-12-01 10:00:00.123456 UTC"),
    (b"\x1c2000-01-01 00:00:00.000000 UTC\x1d\xc2\x85", b"2000-01-01 00:00:00.000000 UTC"),  # white space to nbgrader
    (b"2026-12-01 10:00:00 Europe/Paris", b"2026-12-01 09:00:00.000000 UTC"),  # a zone by its name, as submit may
    (b"2026-12-01 10:00:00 -0300", b"2026-12-01 10:05:00.000000 UTC"),  # nbgrader reads -0300 as seconds
    (b"2026-12-01T10:00:00+01:00\n", b"2026-12-01 09:00:00.000000 UTC"),
    (b"", None),
    (b" \n", None),
    (b"\xc2\xa0\x1c", None),  # white space to Python's str.strip, which nbgrader reads the file with
])
def test_the_timestamp_handed_in_reaches_grading_as_a_time_and_nothing_else(tmp_path, raw, kept):
    from deepngrams.config import ASSIGNMENT
    from deepngrams.grading.submission import door_refusals, handed_in_files
    folder = tmp_path / "submitted" / "student" / ASSIGNMENT
    folder.mkdir(parents=True)
    shutil.copy(release.RELEASE_NB, folder / "deep_ngrams.ipynb")
    (folder / "timestamp.txt").write_bytes(raw)
    files, reason, _, _ = handed_in_files(tmp_path, "student", [])
    assert files.get("timestamp.txt") == (kept or b"") and "timestamp" not in reason  # empty: not late
    assert door_refusals(tmp_path) == {}


@pytest.mark.parametrize("raw", [b"=HYPERLINK(\"http://example.org\")", b"\xff\xfe not text", b"garbage",
                                 b"9999-12-31 23:59:59 -1400", b"2026-12-01 10:00:00 UTC" + b" " * 2000,
                                 b"\x1b]0;owned\x07", b"2026-12-01 10:00:00 /proc/self/mem",
                                 b"2026-12-01 10:00:00 :/proc/self/mem", b"2026-12-01 10:00:00 ../../../proc/self/mem",
                                 b"2026-12-01 10:00:00 \x1b]0;owned\x07"])
def test_a_timestamp_nbgrader_cannot_read_is_refused_on_both_doors_with_its_reason(tmp_path, raw):
    """nbgrader fails such a submission (printing the file's text); graded as on time, a late one could
    hide its lateness. Both doors refuse it and say what to do, never showing what the file held."""
    from deepngrams.config import ASSIGNMENT
    from deepngrams.grading.submission import TIMESTAMP_UNREADABLE, door_refusals, handed_in_files
    folder = tmp_path / "submitted" / "student" / ASSIGNMENT
    folder.mkdir(parents=True)
    shutil.copy(release.RELEASE_NB, folder / "deep_ngrams.ipynb")
    (folder / "timestamp.txt").write_bytes(raw)
    files, reason, _, _ = handed_in_files(tmp_path, "student", [])
    assert "deep_ngrams.ipynb" not in files and files["timestamp.txt"] == b""  # what release_feedback reads
    assert reason.startswith("timestamp.txt ") and "grade again" in reason
    assert door_refusals(tmp_path) == {"student": reason}
    assert raw.decode("utf-8", "replace").strip() not in reason
    if len(raw) < 1000:
        assert reason == f"timestamp.txt {TIMESTAMP_UNREADABLE}"


def test_a_timestamp_that_is_a_link_is_refused_on_both_doors(tmp_path):
    from deepngrams.config import ASSIGNMENT
    from deepngrams.grading.submission import door_refusals, handed_in_files
    folder = tmp_path / "submitted" / "student" / ASSIGNMENT
    folder.mkdir(parents=True)
    shutil.copy(release.RELEASE_NB, folder / "deep_ngrams.ipynb")
    (tmp_path / "time.txt").write_text("2026-12-01 10:00:00 UTC")
    (folder / "timestamp.txt").symlink_to(tmp_path / "time.txt")
    files, reason, _, _ = handed_in_files(tmp_path, "student", [])
    assert "deep_ngrams.ipynb" not in files and files["timestamp.txt"] == b""
    assert reason.startswith("timestamp.txt cannot be read as a plain file") and "(a link" in reason
    assert "a link" in door_refusals(tmp_path)["student"]


def test_every_time_nbgrader_submit_writes_reads_as_nbgrader_reads_it():
    """The zone rule (exchange.submitted_time) refuses only hand-written files: whatever zone an instructor
    sets (nbgrader's Exchange.timezone; submit writes "%Y-%m-%d %H:%M:%S.%f %Z"), winter and summer, the
    time reads as nbgrader's own parser reads it."""
    import datetime
    import zoneinfo
    from nbgrader.utils import parse_utc
    from deepngrams.course.exchange import submitted_time
    written = [datetime.datetime(2026, month, 15, 12, tzinfo=zoneinfo.ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S.%f %Z")
               for zone in sorted(zoneinfo.available_timezones()) for month in (1, 7)]
    assert len(written) > 500
    assert [t for t in written if submitted_time(t) is None or submitted_time(t) != parse_utc(t)] == []
