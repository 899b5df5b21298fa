"""The course exchange: `exchange-setup` makes it or says what is wrong, and nbgrader's whole flow runs
through it between an instructor and a student, two ordinary Linux users.

The flow is nbgrader's own commands, each run as its user with a home of its own: the instructor
releases from a course kept in their home, the student lists (also as JupyterLab's Assignments
panel does), fetches, fills in, validates and submits, the instructor collects, autogrades,
generates and releases feedback, the student fetches it. Whatever the exchange hands over, the
student never reads the instructor's course nor finds another student's submission.
"""
from __future__ import annotations

import csv
import fnmatch
import io
import json
import os
import pwd
import random
import secrets
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

from deepngrams.config import ASSIGNMENT, COURSE_DIR, ROOT
from deepngrams.course import exchange, release
from rootless_runner import NOBODY, _closed_ancestor

pytestmark = pytest.mark.slow

COURSE_ID = "deep-ngrams"
STEP_TIMEOUT = 1200  # seconds; autograde runs the whole notebook


@pytest.fixture()
def open_folder():
    """A folder every user may pass through (pytest's tmp_path is closed to others)."""
    folder = Path(tempfile.mkdtemp(prefix="exchange-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def exchange_setup(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepngrams", "exchange-setup", "--root", str(root)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -----------------------------------------------------------------------------
# exchange-setup and exchange_problem

def test_the_default_root_is_nbgraders_own():
    from nbgrader.exchange.default.exchange import Exchange
    assert str(exchange.DEFAULT_ROOT) == Exchange.root.default_value
    assert "DEEPNGRAMS_EXCHANGE" in (COURSE_DIR / "nbgrader_config.py").read_text()


def test_a_missing_exchange_is_created_with_its_parents_world_writable_and_sticky(open_folder):
    root = open_folder / "srv" / "nbgrader" / "exchange"
    assert "does not exist" in exchange.exchange_problem(root) and "exchange-setup" in exchange.exchange_problem(root)
    done = exchange_setup(root)
    assert done.returncode == 0, done.stderr
    assert str(root) in done.stdout
    assert mode(root) == 0o1777
    assert mode(root.parent) == mode(root.parent.parent) == 0o755
    assert exchange.exchange_problem(root) == ""
    assert exchange_setup(root).returncode == 0  # a second run finds it ready


def test_an_own_folder_of_the_wrong_mode_is_fixed(open_folder):
    root = open_folder / "exchange"
    root.mkdir(mode=0o755)
    assert "0755" in exchange.exchange_problem(root) and "writable by everyone" in exchange.exchange_problem(root)
    assert exchange_setup(root).returncode == 0
    assert mode(root) == 0o1777


def test_a_world_writable_folder_without_the_sticky_bit_is_not_an_exchange(open_folder):
    root = open_folder / "exchange"
    root.mkdir()
    root.chmod(0o777)
    problem = exchange.exchange_problem(root)
    assert "sticky" in problem and f"chmod 1777 {root}" in problem


@pytest.mark.skipif(os.geteuid() != 0, reason="a folder owned by someone else is made by root")
def test_someone_elses_folder_of_the_wrong_mode_is_left_alone_with_the_fix_named(open_folder):
    root = open_folder / "exchange"
    root.mkdir(mode=0o755)
    os.chown(root, NOBODY, NOBODY)
    done = exchange_setup(root)
    assert done.returncode == 1
    assert "0755" in done.stderr and f"sudo chmod 1777 {root}" in done.stderr, done.stderr
    assert mode(root) == 0o755


def test_a_folder_holding_other_files_is_left_alone(open_folder):
    (open_folder / "notes.txt").write_text("not an exchange")
    done = exchange_setup(open_folder)
    assert done.returncode == 1 and "not an nbgrader exchange" in done.stderr, done.stderr
    assert mode(open_folder) == 0o755


def test_a_file_in_place_of_the_folder_is_named(open_folder):
    root = open_folder / "exchange"
    root.write_text("a file")
    done = exchange_setup(root)
    assert done.returncode == 1
    assert "is a file, not a folder" in done.stderr and f"sudo mkdir -p {root}" in done.stderr, done.stderr
    assert root.read_text() == "a file"


def test_an_exchange_behind_a_closed_folder_is_refused_before_anything_is_made(open_folder):
    closed = open_folder / "private"
    closed.mkdir(mode=0o700)
    done = exchange_setup(closed / "exchange")
    assert done.returncode == 1
    assert f"chmod o+x {closed}" in done.stderr and "students cannot reach" in done.stderr, done.stderr
    assert not (closed / "exchange").exists()


def test_the_ignore_list_lets_nbgraders_submission_files_through():
    ignore = ["*.txt", "*.py", "data", "__pycache__"]
    kept = exchange.keeping_submission_files(ignore)
    rng = random.Random(0)
    names = [*exchange.SUBMISSION_FILES, ".txt", "t.txt", "timestamp.txt.txt", "timestamps.txt", "timestam.txt",
             "submission.txt", "submission_secret2.txt", "shakespeare_data.txt", "Timestamp.txt", "data", "x.py"]
    names += ["".join(rng.choice("timestampubicr_.xT") for _ in range(rng.randint(0, 20))) + rng.choice([".txt", ""])
              for _ in range(5000)]
    for name in names:
        dropped_before = any(fnmatch.fnmatch(name, pattern) for pattern in ignore)
        expected = dropped_before and name not in exchange.SUBMISSION_FILES
        assert any(fnmatch.fnmatch(name, pattern) for pattern in kept) == expected, name


# -----------------------------------------------------------------------------
# the whole flow with two Linux users

def _missing_for_two_users() -> str:
    if os.geteuid() != 0:
        return "creates an instructor and a student with useradd: runs as root only"
    missing = [tool for tool in ("useradd", "userdel", "setpriv", "unshare") if shutil.which(tool) is None]
    return f"needs {', '.join(missing)} to create the two users and run commands as them" if missing else ""


class Users:
    """Ordinary Linux users made for the test (homes under an open folder), removed afterwards."""

    def __init__(self, base: Path):
        self.base = base
        self.made: list[pwd.struct_passwd] = []
        # A folder only root may enter (a Python under /root) holds the interpreter: each command runs
        # in a mount namespace of its own in which that folder is an open one holding just the
        # interpreter's installation (as tests/rootless_runner.py does for nobody).
        self.interpreter = os.path.realpath(sys.base_prefix)
        self.closed = _closed_ancestor(os.path.realpath(sys.executable))
        self.stash = base / "interpreter-mount"
        self.stash.mkdir()

    def add(self, role: str) -> pwd.struct_passwd:
        name = f"dng{role[:4]}{secrets.token_hex(3)}"
        home = self.base / name
        done = subprocess.run(["useradd", "--create-home", "--home-dir", str(home), "--user-group",
                               "--shell", "/bin/sh", name], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"useradd {name}: {done.stderr}"
        user = pwd.getpwnam(name)
        self.made.append(user)
        home.chmod(0o700)
        return user

    def command(self, user: pwd.struct_passwd, argv: list[str]) -> list[str]:
        command = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", *argv]
        if self.closed is None:
            return command
        stash, closed, base = (shlex.quote(str(p)) for p in (self.stash, self.closed, self.interpreter))
        script = (f"mount --bind {base} {stash} && mount -t tmpfs -o mode=0755 tmpfs {closed} && "
                  f"mkdir -p {base} && mount --bind {stash} {base} && exec \"$@\"")
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *command]

    def run(self, user: pwd.struct_passwd, argv: list[str], cwd: Path, env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess:
        environment = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": user.pw_dir,
                       "USER": user.pw_name, "LOGNAME": user.pw_name, "LANG": "C.UTF-8",
                       "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0", **(env or {})}
        return subprocess.run(self.command(user, argv), cwd=cwd, env=environment, input=stdin,
                              capture_output=True, text=True, timeout=STEP_TIMEOUT)

    def remove(self) -> list[str]:
        """userdel -r each user, after ending what it left running; returns what could not be removed."""
        left = []
        for user in self.made:
            for pid in _processes_of(user.pw_uid):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            done = subprocess.run(["userdel", "-r", user.pw_name], capture_output=True, text=True, timeout=60)
            try:
                pwd.getpwnam(user.pw_name)
                left.append(f"{user.pw_name}: {done.stderr.strip()}")
            except KeyError:
                pass
        return left


def _processes_of(uid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.stat(f"/proc/{name}").st_uid == uid:
                found.append(int(name))
        except OSError:
            continue
    return found


class Flow:
    """nbgrader's steps, run in order until one fails; each test then reads the steps it is about."""

    def __init__(self, users: Users):
        self.users = users
        self.done: dict[str, subprocess.CompletedProcess] = {}
        self.failed: str | None = None

    def nbgrader(self, who: pwd.struct_passwd, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.step(f"nbgrader {' '.join(args)} ({who.pw_name})", who,
                  [sys.executable, "-c", release.NBGRADER, *args], cwd, env)

    def step(self, name: str, who: pwd.struct_passwd, argv: list[str], cwd: Path,
             env: dict[str, str] | None = None, stdin: str | None = None) -> None:
        if self.failed is None:
            self.done[name] = done = self.users.run(who, argv, cwd, env, stdin)
            if done.returncode != 0:
                self.failed = name

    def result(self, prefix: str) -> subprocess.CompletedProcess:
        """The step whose name starts with `prefix`; fails the test when it failed or never ran."""
        name = next((n for n in self.done if n.startswith(prefix)), None)
        if name is None:
            failed = self.done[self.failed]
            pytest.fail(f"{prefix!r} never ran: {self.failed} failed first (status {failed.returncode}):\n"
                        f"{(failed.stdout + failed.stderr)[-4000:]}")
        done = self.done[name]
        assert done.returncode == 0, f"{name} failed (status {done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}"
        return done


@pytest.fixture(scope="module")
def course(request):
    """The whole flow, once for the module's tests: its folders, its users and what each step said."""
    if reason := _missing_for_two_users():
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="exchange-flow-", dir="/tmp"))
    base.chmod(0o755)
    users = Users(base)
    try:
        yield _run_the_flow(base, users)
    finally:
        left = users.remove()
        shutil.rmtree(base, ignore_errors=True)
        assert not left, f"users not removed: {left}"


def _run_the_flow(base: Path, users: Users) -> dict:
    root = base / "exchange"
    made = exchange_setup(root)
    assert made.returncode == 0, made.stderr
    instructor, student = users.add("instructor"), users.add("student")
    flow = Flow(users)

    # The instructor keeps the course in their home; the bundle and the exchange are named by the environment.
    course = Path(instructor.pw_dir) / "courses" / COURSE_ID
    teaching = {"DEEPNGRAMS_BUNDLE": str(ROOT), exchange.ENVIRONMENT_VARIABLE: str(root)}
    flow.step("copy the course (instructor)", instructor,
              ["sh", "-c", 'mkdir -p "$1/source" && cp "$2/nbgrader_config.py" "$1/" && '
                           'cp -r "$2/source/$3" "$1/source/"', "sh", str(course), str(COURSE_DIR), ASSIGNMENT],
              Path(instructor.pw_dir))
    flow.nbgrader(instructor, "generate_assignment", ASSIGNMENT, "--force", cwd=course, env=teaching)
    flow.nbgrader(instructor, "release_assignment", ASSIGNMENT, cwd=course, env=teaching)

    # The student works in a folder of their own with the bundle's student files, and names the
    # course and the exchange in their own nbgrader configuration.
    work = Path(student.pw_dir) / COURSE_ID
    config = f"c = get_config()\nc.CourseDirectory.course_id = {COURSE_ID!r}\nc.Exchange.root = {str(root)!r}\n"
    flow.step("configure nbgrader (student)", student,
              ["sh", "-c", 'mkdir -p "$HOME/.jupyter" "$1" && cat > "$HOME/.jupyter/nbgrader_config.py" && '
                           'cp -r "$2/w1_unittest.py" "$2/data" "$2/model" "$1/"', "sh", str(work), str(ROOT)],
              Path(student.pw_dir), stdin=config)
    flow.nbgrader(student, "list", cwd=work)
    flow.step("the Assignments panel's list (student)", student,
              [sys.executable, "-c", ASSIGNMENTS_PANEL_LIST, str(work)], work)
    flow.nbgrader(student, "fetch_assignment", ASSIGNMENT, cwd=work)
    notebook = work / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    solved = release.sample_submissions(release.read(release.RELEASE_NB))["alice_solved"]
    flow.step("fill in the exercises (student)", student, ["sh", "-c", 'cat > "$1"', "sh", str(notebook)], work,
              stdin=nbformat.writes(solved))
    flow.nbgrader(student, "validate", str(notebook.relative_to(work)), cwd=work)
    flow.nbgrader(student, "submit", ASSIGNMENT, cwd=work)

    # Another student plants entries in the inbound folder (anyone may create them): one named for the
    # student, with the untouched notebook and a time later than any of theirs, one for a student who
    # never handed anything in, and a link named for the student to a folder of the intruder's.
    intruder = users.add("other")
    untouched = release.sample_submissions(release.read(release.RELEASE_NB))["bob_untouched"]
    late = "2099-01-01 00:00:00.000000 UTC"
    flow.step("plant entries in the inbound (another student)", intruder,
              ["sh", "-c", 'cat > "$HOME/untouched" && chmod 711 "$HOME" && cd "$1" && '
                           'for name in "$2+$3+$4+x" "ghost+$3+$4+x" "$HOME/mine"; do mkdir -p "$name" && '
                           'cp "$HOME/untouched" "$name/$3.ipynb" && echo "$4" > "$name/timestamp.txt" && '
                           'chmod -R a+rX "$name"; done && ln -s "$HOME/mine" "$2+$3+$4+y"',
               "sh", str(root / COURSE_ID / "inbound"), student.pw_name, ASSIGNMENT, late],
              Path(intruder.pw_dir), stdin=nbformat.writes(untouched))
    # A student hands in an entry of their own by hand: the untouched notebook, and beside it a link to
    # the instructor's source notebook, a pipe and a folder (collect runs as the instructor); and a newer
    # entry without nbgrader's submission_secret.txt (release_feedback would fail on it).
    linker = users.add("linker")
    source_notebook = course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    flow.step("hand in links and a pipe (a third student)", linker,
              ["sh", "-c", 'e="$1/$2+$3+2026-01-01 00:00:00.000000 UTC+z" && mkdir "$e" && cat > "$e/$3.ipynb" && '
                          'echo "2026-01-01 00:00:00.000000 UTC" > "$e/timestamp.txt" && ln -s "$4" "$e/answers.ipynb" '
                           '&& mkfifo "$e/pipe.ipynb" && mkdir "$e/more" && cp "$e/$3.ipynb" "$e/more/" && '
                           'echo 0123456789abcdef > "$e/submission_secret.txt" && '
                           'n="$1/$2+$3+2026-06-01 00:00:00.000000 UTC+w" && mkdir "$n" && cp "$e/$3.ipynb" "$n/" && '
                           'chmod -R a+rX "$e" "$n"',
               "sh", str(root / COURSE_ID / "inbound"), linker.pw_name, ASSIGNMENT, str(source_notebook)],
              Path(linker.pw_dir), stdin=nbformat.writes(untouched))

    # Entries that each stopped collect, list or release_feedback for the whole class: one named for the
    # student whose time does not parse (made by anyone), and of a fourth student's own, newer than their
    # good one (which also holds 300 small files): one the instructor cannot read, one with an empty
    # submission_secret.txt, one whose secret is not text, and one without timestamp.txt.
    flow.step("plant an entry whose time does not parse (another student)", intruder,
              ["sh", "-c", 'mkdir "$1/$2+$3+not a time+t" && chmod a+rx "$1/$2+$3+not a time+t"', "sh",
               str(root / COURSE_ID / "inbound"), student.pw_name, ASSIGNMENT], Path(intruder.pw_dir))
    breaker = users.add("breaker")
    flow.step("hand in entries nbgrader cannot use (a fourth student)", breaker,
              ["sh", "-c", BREAKER_ENTRIES, "sh", str(root / COURSE_ID / "inbound"), breaker.pw_name, ASSIGNMENT],
              Path(breaker.pw_dir), stdin=nbformat.writes(untouched))

    probes = {}
    if flow.failed is None:
        inbound = root / COURSE_ID / "inbound"
        probes = {
            "read the instructor's course": users.run(student, ["ls", str(course)], work),
            "list the inbound": users.run(student, ["ls", str(inbound)], work),
            "change the released assignment": users.run(
                student, ["touch", str(root / COURSE_ID / "outbound" / ASSIGNMENT / "extra.py")], work),
            "inbound": sorted(p.name for p in inbound.iterdir() if p.name.startswith(f"{student.pw_name}+")
                              and not p.name.endswith(("+x", "+y", "+t"))),
        }

    flow.nbgrader(instructor, "collect", ASSIGNMENT, cwd=course, env=teaching)
    flow.nbgrader(instructor, "autograde", ASSIGNMENT, cwd=course, env=teaching)
    flow.nbgrader(instructor, "export", cwd=course, env=teaching)
    flow.nbgrader(instructor, "generate_feedback", ASSIGNMENT, cwd=course, env=teaching)
    flow.nbgrader(instructor, "release_feedback", ASSIGNMENT, cwd=course, env=teaching)
    flow.nbgrader(student, "fetch_feedback", ASSIGNMENT, cwd=work)
    if flow.failed is None:
        probes["list the feedback"] = users.run(student, ["ls", str(root / COURSE_ID / "feedback")], work)
    return {"flow": flow, "root": root, "course": course, "work": work, "instructor": instructor,
            "student": student, "linker": linker, "breaker": breaker, "probes": probes}


# A student's five entries made by hand ($1 the inbound, $2 the student, $3 the assignment), each with
# the notebook (standard input), a timestamp and a secret: the oldest with 300 small files beside them,
# then one closed to others, one with an empty secret, one whose secret is not text, one without timestamp,
# and one whose time zone is a file (nbgrader's parser would open it: reading /proc/self/mem fails).
BREAKER_ENTRIES = r"""
set -e
cd "$1" && cat > "$HOME/nb"
for t in 01 02 03 04 05 06; do
  e="$2+$3+2026-$t-01 00:00:00.000000 UTC+b$t"
  mkdir "$e" && cp "$HOME/nb" "$e/$3.ipynb" && echo "2026-$t-01 00:00:00.000000 UTC" > "$e/timestamp.txt"
  echo abcdef01 > "$e/submission_secret.txt" && chmod -R a+rX "$e"
done
for i in $(seq 300); do : > "$2+$3+2026-01-01 00:00:00.000000 UTC+b01/f$i"; done
chmod 700 "$2+$3+2026-02-01 00:00:00.000000 UTC+b02"
: > "$2+$3+2026-03-01 00:00:00.000000 UTC+b03/submission_secret.txt"
printf '\377\376' > "$2+$3+2026-04-01 00:00:00.000000 UTC+b04/submission_secret.txt"
rm "$2+$3+2026-05-01 00:00:00.000000 UTC+b05/timestamp.txt"
echo "2026-06-01 00:00:00.000000 /proc/self/mem" > "$2+$3+2026-06-01 00:00:00.000000 UTC+b06/timestamp.txt"
"""


# What JupyterLab's Assignments panel asks the server for (nbgrader's own handler code), in the
# student's folder; prints the released assignments or the panel's message.
ASSIGNMENTS_PANEL_LIST = """\
import json, sys
sys.modules['rfc3987_syntax'] = None
from nbgrader.server_extensions.assignment_list.handlers import AssignmentList
panel = AssignmentList()
panel.root_dir = sys.argv[1]
listed = panel.list_assignments()
if not listed["success"]:
    sys.exit("the panel says: " + " ".join(str(listed["value"]).split()))
print(json.dumps([[a["course_id"], a["assignment_id"], a["status"]] for a in listed["value"]]))
"""


def test_the_student_lists_the_released_assignment_in_the_panel_and_fetches_it(course):
    flow = course["flow"]
    assert f"{COURSE_ID} {ASSIGNMENT}" in flow.result("nbgrader list").stdout + flow.result("nbgrader list").stderr
    assert [COURSE_ID, ASSIGNMENT, "released"] in json.loads(flow.result("the Assignments panel").stdout)
    flow.result("nbgrader fetch_assignment")
    notebook = course["work"] / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert notebook.stat().st_uid == course["student"].pw_uid


def test_the_solved_notebook_validates_and_is_submitted(course):
    flow = course["flow"]
    validated = flow.result("nbgrader validate")
    assert "Success! Your notebook passes all the tests." in validated.stdout, validated.stdout[-3000:]
    flow.result("nbgrader submit")
    submitted = course["probes"]["inbound"]
    assert len(submitted) == 1 and submitted[0].startswith(f"{course['student'].pw_name}+{ASSIGNMENT}+")


def test_the_student_cannot_read_the_course_nor_find_other_submissions(course):
    course["flow"].result("nbgrader submit")
    probes = course["probes"]
    for what in ("read the instructor's course", "list the inbound", "change the released assignment"):
        assert probes[what].returncode != 0 and "Permission denied" in probes[what].stderr, (what, probes[what])
    # A submission's name ends in a random string: with the inbound not listable, it cannot be guessed.
    unguessable = probes["inbound"][0].split("+")[-1]
    assert len(unguessable) >= 12
    inbound = course["root"] / COURSE_ID / "inbound"
    assert mode(inbound) & 0o007 == 0o003  # others may enter and write, never list


def test_the_student_fetches_the_feedback(course):
    course["flow"].result("nbgrader release_feedback")
    course["flow"].result("nbgrader fetch_feedback")
    pages = list((course["work"] / ASSIGNMENT / "feedback").glob(f"*/{ASSIGNMENT}.html"))
    assert len(pages) == 1, list((course["work"] / ASSIGNMENT).rglob("*"))
    assert pages[0].stat().st_uid == course["student"].pw_uid
    assert "Score" in pages[0].read_text(encoding="utf-8")
    listed = course["probes"]["list the feedback"]  # each student's page is found by its hash only
    assert listed.returncode != 0 and "Permission denied" in listed.stderr, listed


def test_collect_takes_only_what_each_student_handed_in_themselves(course):
    """Entries another user planted in the inbound (named for the student with a later time, for a
    student who never handed in, a link) are not collected; of a student's own entry, only its plain
    files are (not a link to the instructor's files, a pipe or a folder); and the collect says so."""
    collected = course["flow"].result("nbgrader collect")
    submitted = course["course"] / "submitted"
    assert sorted(p.name for p in submitted.iterdir()) == sorted(
        [course["student"].pw_name, course["linker"].pw_name, course["breaker"].pw_name])
    linked = submitted / course["linker"].pw_name / ASSIGNMENT
    assert sorted(p.name for p in linked.iterdir()) == [f"{ASSIGNMENT}.ipynb", "submission_secret.txt",
                                                        "timestamp.txt"]
    assert "2026-01-01" in (linked / "timestamp.txt").read_text()  # not the newer entry without a secret
    assert "BEGIN SOLUTION" not in (linked / f"{ASSIGNMENT}.ipynb").read_text()
    own = submitted / course["student"].pw_name / ASSIGNMENT
    assert "2099" not in (own / "timestamp.txt").read_text()
    handed_in = nbformat.read(str(own / f"{ASSIGNMENT}.ipynb"), 4)
    solved = release.sample_submissions(release.read(release.RELEASE_NB))["alice_solved"]
    assert [c.source for c in handed_in.cells] == [c.source for c in solved.cells]
    said = collected.stdout + collected.stderr
    assert said.count("Not collected:") == 5 + 7 and "ghost" in said, said[-4000:]
    assert said.count("submission_secret.txt is missing, empty or not a short text") == 3, said[-4000:]
    assert "Not collected: 3 other file(s)" in said
    assert all(repr(name) in said for name in ("answers.ipynb", "pipe.ipynb", "more"))
    # An entry nbgrader could not use is left in the inbound, named, and the student's good one collected.
    broken = submitted / course["breaker"].pw_name / ASSIGNMENT
    assert sorted(p.name for p in broken.iterdir()) == [f"{ASSIGNMENT}.ipynb", "submission_secret.txt", "timestamp.txt"]
    assert "2026-01-01" in (broken / "timestamp.txt").read_text()
    for why in ("not a time+t", "Not collected: 300 other file(s)", "cannot be read",
                "timestamp.txt is missing or not a time"):
        assert why in said, (why, said[-4000:])


def test_autograde_gives_the_solved_notebook_full_marks(course):
    """Graded by nbgrader's autograde with the course's steps (in the sandbox, as the instructor)."""
    flow = course["flow"]
    flow.result("nbgrader autograde")
    graded = flow.result("nbgrader autograde")
    flow.result("nbgrader export")
    rows = list(csv.DictReader(io.StringIO((course["course"] / "grades.csv").read_text())))
    row = next((r for r in rows if r["student_id"] == course["student"].pw_name), None)
    assert row is not None, rows
    assert float(row["max_score"]) > 0 and float(row["score"]) == float(row["max_score"]), \
        (row, (graded.stdout + graded.stderr)[-4000:])
