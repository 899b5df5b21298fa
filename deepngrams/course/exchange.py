"""The course exchange: the folder where nbgrader hands assignments, submissions and feedback over.

    python -m deepngrams exchange-setup [--root DIR]

nbgrader's default exchange is one folder shared by the instructor and every student: the
instructor's release_assignment, collect and release_feedback and the students' fetch_assignment,
submit and fetch_feedback (the Assignments panel of JupyterLab runs the same) all work in it, each
as its own Linux user. So its root must be writable by everyone, and sticky as /tmp is (mode 1777),
so that no student can rename or remove the course's folder inside it; and every folder above it
must let everyone through. nbgrader finds none of this out until a command fails, and the panel
then says only that the exchange does not exist; this module says what is wrong and how to fix it.

The course's nbgrader_config.py sets the root: the environment variable DEEPNGRAMS_EXCHANGE, or
nbgrader's own default (`DEFAULT_ROOT`).
"""
from __future__ import annotations

import argparse
import datetime
import glob
import os
import re
import secrets
import shlex
import stat
import sys
from pathlib import Path

from deepngrams.config import MAX_SUBMIT_FILE_BYTES, SECRET, TIMESTAMP

DEFAULT_ROOT = Path("/usr/local/share/nbgrader/exchange")  # nbgrader's default Exchange.root
ENVIRONMENT_VARIABLE = "DEEPNGRAMS_EXCHANGE"
MODE = 0o1777  # everyone writes, no one removes another's entries: as /tmp
# Without them release_feedback fails, for the whole class.
SUBMISSION_FILES = (TIMESTAMP, SECRET)
SECRET_REPLACED = (f"{SECRET} is not the short text nbgrader's submit writes: replaced, so this feedback cannot be "
                   f"fetched with nbgrader (hand in again with nbgrader submit)")


# A time zone nbgrader's parse_utc looks up by name (dateutil's gettz), among the system's zone files.
# gettz opens a path as given: "2026-12-06 10:00:00 /proc/self/mem" would have the grader, often
# root, open any file a student names (and fail, or wait on it). A zone is read only by such a name.
ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*|[+-]?[0-9]+", re.ASCII)


def submitted_time(text: str) -> datetime.datetime | None:
    """The time a timestamp.txt holds (its text), as nbgrader reads it (parse_utc: in UTC), or None where
    nbgrader could not read one, or its zone is not a zone's name (`ZONE_NAME`)."""
    from nbgrader.utils import parse_utc
    text = text.strip()  # as nbgrader reads the file
    parts = text.split(" ")
    if len(parts) == 3 and not ZONE_NAME.fullmatch(parts[2]):
        return None
    try:
        return parse_utc(text)
    except Exception:  # noqa: BLE001 - dateutil's parser and zone files fail in many ways, all "not a time"
        return None


def usable_secret(data: bytes) -> bool:
    """Whether a submission_secret.txt is one the grader keeps: text that nbgrader's release_feedback (which
    stops for the whole class at one it cannot decode) and the student's fetch_feedback read alike in any
    locale, not empty (nbgrader's hash refuses that), and no longer than what the grader reads of it."""
    return 0 < len(data) <= MAX_SUBMIT_FILE_BYTES and data.isascii()


def new_secret() -> bytes:
    """A submission_secret.txt as nbgrader's submit writes it."""
    return secrets.token_hex(64).encode()


def configured_root() -> Path:
    """The exchange root the course's configuration uses (DEEPNGRAMS_EXCHANGE, else nbgrader's default)."""
    return Path(os.environ.get(ENVIRONMENT_VARIABLE) or DEFAULT_ROOT)


def fix_command(root: Path) -> str:
    """The administrator's commands that make `root` a working exchange."""
    quoted = shlex.quote(str(root))
    return f"sudo mkdir -p {quoted} && sudo chmod 1777 {quoted}"


def closed_ancestor(path: Path) -> Path | None:
    """The highest folder above `path` that not everyone may pass through (other users, students
    among them, cannot reach `path` then), or None."""
    for folder in reversed(path.parents):
        try:
            if not folder.stat().st_mode & stat.S_IXOTH:
                return folder
        except OSError:
            return None  # missing or unreachable: the caller's own look at `path` tells
    return None


def exchange_problem(root: Path) -> str:
    """What keeps `root` from serving as the course's exchange for everyone, or "" when nothing does.

    Checked before any nbgrader step, since nbgrader itself finds out only when a transfer fails.
    """
    root = Path(root)
    quoted = shlex.quote(str(root))
    setup = f"python -m deepngrams exchange-setup --root {quoted}"
    closed = closed_ancestor(root)
    if closed is not None:
        return (f"students cannot reach the exchange folder {root}: {closed} (mode "
                f"{stat.S_IMODE(closed.stat().st_mode):04o}) lets only its owner through. Choose an exchange "
                f"outside it (DEEPNGRAMS_EXCHANGE=/path), or open it: chmod o+x {shlex.quote(str(closed))}")
    try:
        mode = stat.S_IMODE(root.stat().st_mode)
        is_dir = root.is_dir()
    except FileNotFoundError:
        if root.is_symlink():
            return (f"the exchange {root} is a link to a folder that does not exist: remove the link, then "
                    f"create the folder with `{setup}` (or, as an administrator: {fix_command(root)})")
        return (f"the exchange folder {root} does not exist: create it with `{setup}` "
                f"(or, as an administrator: {fix_command(root)})")
    except OSError as e:
        return (f"the exchange folder {root} cannot be reached ({e.strerror}): every folder on its path must "
                f"be a folder everyone may pass through; as an administrator run {fix_command(root)}")
    if not is_dir:
        return (f"the exchange {root} is a file, not a folder: move the file away, then create the folder with "
                f"`{setup}` (or, as an administrator: {fix_command(root)})")
    if mode & MODE != MODE:
        if mode & 0o777 != 0o777:
            why = "writable by everyone: the instructor and each student write in it as themselves"
        else:
            why = "sticky: without it any user may rename or remove the course's folder in it"
        return (f"the exchange folder {root} has mode {mode:04o}, not {MODE:o}: it must be {why}. Fix it with "
                f"`{setup}` as its owner, or as an administrator: sudo chmod 1777 {quoted}")
    if not os.access(root, os.W_OK | os.X_OK):
        return f"you cannot write in the exchange folder {root}: ask its administrator to run sudo chmod 1777 {quoted}"
    return ""


def _create(root: Path) -> None:
    """Create `root` and any missing folder above it: the folders above open to everyone (0755), `root` 1777."""
    missing = [folder for folder in (root, *root.parents) if not os.path.lexists(folder)]
    for folder in reversed(missing):
        folder.mkdir()
        folder.chmod(MODE if folder == root else 0o755)  # mkdir's mode is cut by the umask and never sticky


def setup_exchange(root: Path) -> str:
    """Make `root` a working exchange where this user may: create it, or set its mode when it is ours.

    Returns what is still wrong ("" when the exchange is ready), with the fix only someone else can make.
    """
    root = Path(root)
    if closed_ancestor(root) is not None:
        return exchange_problem(root)  # a folder made there would be out of the students' reach
    if not os.path.lexists(root):
        try:
            _create(root)
        except OSError as e:
            return (f"cannot create the exchange folder {root} ({e.strerror}): as an administrator run "
                    f"{fix_command(root)}")
    elif os.path.isdir(root) and stat.S_IMODE(root.stat().st_mode) & MODE != MODE:
        if root.stat().st_uid != os.geteuid():
            return exchange_problem(root)  # someone else's folder: its owner or an administrator decides
        if not looks_like_an_exchange(root):
            return (f"{root} holds files that are not an nbgrader exchange's: it is left as it is (mode "
                    f"{stat.S_IMODE(root.stat().st_mode):04o}). Choose a new or empty folder for the exchange.")
        root.chmod(MODE)
    return exchange_problem(root)


def looks_like_an_exchange(root: Path) -> bool:
    """Whether `root` is empty or holds only course folders of nbgrader (inbound, outbound, feedback):
    the only folders exchange-setup opens to everyone, so a mistyped --root never opens a home or /usr."""
    try:
        return all(course.is_dir() and not course.is_symlink()
                   and {p.name for p in course.iterdir()} <= {"inbound", "outbound", "feedback"}
                   for course in root.iterdir())
    except OSError:
        return False


def collect_class():
    """nbgrader's collect, taking only the submissions their students handed in themselves.

    The inbound folder lets every user create entries in it, and an entry's name says whose it is and
    when it was made (`alice+deep_ngrams+<time>+<random>`): any student can make one that claims to
    be another's, with a time later than all of theirs. nbgrader notices that its owner is not the
    student it names, warns ("cheating attempt?") and collects it all the same, so it replaces the
    other student's work. Here such an entry is never collected: with `check_owner` on (nbgrader's
    default), each student's newest entry among those they own is, and the others are named in a
    warning, as is an entry nbgrader could not use: one the instructor cannot read, or without a
    short submission_secret.txt and a timestamp.txt holding a time, which nbgrader's submit writes (a
    hand-made one: release_feedback and list would fail on it for every student), or whose name holds
    no time (collect itself would stop). Of an entry, only what submit writes is copied (`do_copy`).
    Turn `ExchangeCollect.check_owner` off only where students hand in under ids that are not their
    user names (then entries are taken whoever made them, as nbgrader does)."""
    import pwd

    from nbgrader.exchange.default.collect import ExchangeCollect

    class CollectOwnSubmissions(ExchangeCollect):
        def _path_to_record(self, path):
            name = os.path.basename(path)
            try:
                record = super()._path_to_record(path)
            except Exception as e:  # noqa: BLE001 - nbgrader's reading of a name anyone may write
                self.log.warning("Not collected: %s (its name is not nbgrader's student+assignment+time+random: %s)",
                                 ascii(name), ascii(str(e)[:200]))
                return {"username": name.rsplit("+", 3)[0], "filename": name, "timestamp": datetime.datetime.min,
                        "handed_in_by_them": False}
            try:
                info = os.lstat(path)  # a link's own owner: whoever made it, not what it names
                owner = pwd.getpwuid(info.st_uid).pw_name
            except (OSError, KeyError):
                owner = None
            record["handed_in_by_them"] = (not self.check_owner or (owner == record["username"]
                                                                     and stat.S_ISDIR(info.st_mode)))
            # The names are anyone's text: ascii() shows them, escapes and all.
            if not record["handed_in_by_them"]:
                self.log.warning("Not collected: %s names the student %s but was not handed in by that user "
                                 "(it is another user's, or a link)", ascii(record["filename"]),
                                 ascii(record["username"]))
            elif problem := _entry_problem(path):
                record["handed_in_by_them"] = False
                self.log.warning("Not collected: %s: %s (nbgrader would stop on it for every student): "
                                 "hand it in again with nbgrader submit", ascii(record["filename"]), problem)
            return record

        def _sort_by_timestamp(self, records):
            own = [r for r in records if r["handed_in_by_them"]]
            return super()._sort_by_timestamp(own) if own else records  # none of their own: dropped in copy_files

        def copy_files(self):
            self.src_records = [r for r in self.src_records if r["handed_in_by_them"]]
            super().copy_files()

        def do_copy(self, src, dest, log=None):
            """Of the entry, the files nbgrader's submit writes: the assignment's notebooks (the names
            in the course's source) and SUBMISSION_FILES, each opened without following a link and
            refused unless it is a regular file: collect runs as the instructor, so a link would hand in
            any file the instructor may read (another student's work, the course's source), and a pipe
            could be read forever. Anything else is left out and named: the grader reads nothing else,
            and 100,000 small files would make nbgrader's autograde of the class take hours."""
            coursedir = self.coursedir
            source = Path(coursedir.format_path(coursedir.source_directory, ".", coursedir.assignment_id))
            notebooks = {p.name for p in source.glob("*.ipynb")}
            room, most = coursedir.max_dir_size * 1000, coursedir.max_file_size * 1000  # nbgrader's kB
            try:  # read before (_entry_problem), but its owner may have closed it since: theirs alone is lost
                folder = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            except OSError as e:
                self.log.warning("Not collected: %s (it cannot be read: %s)", ascii(os.path.basename(src)), e.strerror)
                return
            try:
                names = os.listdir(folder)
                os.makedirs(dest)
                wanted = {n for n in names if n in SUBMISSION_FILES or n in notebooks
                          or (not notebooks and n.endswith(".ipynb"))}
                for name in sorted(wanted):
                    limit = min(most, room)
                    size = _copy_plain_file(folder, name, Path(dest) / name, limit)
                    if size is None:
                        self.log.warning("Not collected: %s in %s (not a plain file of at most %d bytes)",
                                         ascii(name), ascii(os.path.basename(src)), limit)
                    else:
                        room -= size
                if others := sorted(set(names) - wanted):
                    self.log.warning("Not collected: %d other file(s) in %s, such as %s (the grader reads only %s)",
                                     len(others), ascii(os.path.basename(src)), ", ".join(map(ascii, others[:5])),
                                     ", ".join(sorted(notebooks) + list(SUBMISSION_FILES)))
            finally:
                os.close(folder)
            if coursedir.groupshared:  # as nbgrader's own copy leaves a shared course
                os.chmod(dest, 0o2770)
                for path in Path(dest).iterdir():
                    path.chmod(0o660)

    return CollectOwnSubmissions



def _entry_problem(path: str) -> str | None:
    """Why an entry that collect would take is of no use to nbgrader, or None: it must be a folder the
    instructor can read, holding the submission_secret.txt and timestamp.txt that nbgrader's submit
    writes (release_feedback and list read both, and stop for every student at one they cannot use)."""
    try:
        folder = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as e:
        return f"it cannot be read ({e.strerror})"
    try:
        secret = _small_text(folder, SECRET)
        if secret is None or not usable_secret(secret.encode()):
            return "its submission_secret.txt is missing, empty or not a short text"
        if submitted_time(_small_text(folder, TIMESTAMP) or "") is None:
            return "its timestamp.txt is missing or not a time"
    finally:
        os.close(folder)
    return None


def _open_plain_file(folder: int, name: str) -> int | None:
    """A descriptor of `name` of the open `folder` if it is a regular file, opened never through a link
    and never waiting on a pipe; None where it is missing or anything else."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    except OSError:
        return None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _small_text(folder: int, name: str) -> str | None:
    """The ASCII text of the regular file `name` of the open `folder` (`_open_plain_file`), or None where
    it is missing, not a regular file, over MAX_SUBMIT_FILE_BYTES or not text."""
    if (fd := _open_plain_file(folder, name)) is None:
        return None
    try:
        data = os.read(fd, MAX_SUBMIT_FILE_BYTES + 1)
        return data.decode("ascii") if len(data) <= MAX_SUBMIT_FILE_BYTES else None
    except (OSError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)


def _copy_plain_file(folder: int, name: str, dest: Path, limit: int) -> int | None:
    """Copy `name` of the open `folder` to `dest` if it is a regular file of at most `limit` bytes
    (`_open_plain_file`); returns its size, or None, with nothing left, if it is not."""
    if (fd := _open_plain_file(folder, name)) is None:
        return None
    size = 0
    try:
        with open(dest, "xb") as out:
            while chunk := os.read(fd, 1 << 20):
                size += len(chunk)
                if size > limit:
                    break
                out.write(chunk)
        if size > limit:
            dest.unlink()
            return None
    finally:
        os.close(fd)
    return size


def keeping_submission_files(ignore: list[str]) -> list[str]:
    """nbgrader's CourseDirectory.ignore, but letting SUBMISSION_FILES through collect, autograde and
    generate_feedback (which all copy with it): each pattern "*SUFFIX" that would drop one of them is
    replaced by patterns that drop every other name ending in SUFFIX (nbgrader matches globs only)."""
    kept = []
    for pattern in ignore:
        suffix = pattern[1:]
        stems = {name[:-len(suffix)] for name in SUBMISSION_FILES if suffix and name.endswith(suffix)}
        if pattern.startswith("*") and stems and not glob.has_magic(suffix):
            kept += _names_ending_in(suffix, "", stems)
        else:
            kept.append(pattern)
    return kept


def _names_ending_in(suffix: str, prefix: str, excluded_stems: set[str]) -> list[str]:
    """Globs matching every name prefix + stem + suffix whose stem is not one of `excluded_stems`."""
    start = glob.escape(prefix)
    if not excluded_stems:
        return [f"{start}*{suffix}"]
    patterns = [] if "" in excluded_stems else [f"{start}{suffix}"]
    nexts = sorted({stem[0] for stem in excluded_stems if stem})
    patterns.append(f"{start}[!{''.join(nexts)}]*{suffix}" if nexts else f"{start}?*{suffix}")
    for char in nexts:
        patterns += _names_ending_in(suffix, prefix + char, {stem[1:] for stem in excluded_stems if stem[:1] == char})
    return patterns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepngrams exchange-setup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=None, metavar="DIR",
                        help=f"the exchange folder (default: ${ENVIRONMENT_VARIABLE}, else {DEFAULT_ROOT})")
    args = parser.parse_args(argv)
    root = (args.root or configured_root()).expanduser().absolute()
    problem = setup_exchange(root)
    if problem:
        print(f"exchange-setup: {problem}", file=sys.stderr)
        return 1
    print(f"The exchange {root} is ready (mode 1777). Instructors: set {ENVIRONMENT_VARIABLE}={root} "
          f"when it is not {DEFAULT_ROOT}; students: c.Exchange.root = {str(root)!r} in "
          f"~/.jupyter/nbgrader_config.py.")
    return 0
