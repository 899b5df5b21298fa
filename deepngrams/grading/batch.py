"""Grade every submission of a course: in parallel, sandboxed, with the grader's own verdicts.

    python -m deepngrams grade [--course grader] [--workers 2] [--force] [--student ID ...]

It keeps nbgrader's course layout, gradebook and feedback, and runs nbgrader's own autograde
pipeline for each submission, as the course's configuration sets it up: its `SandboxedExecute`
step runs the notebook in a sandbox (grading.sandbox) with every graded test cell replaced by a
probe, and the grader judges the probes' observations (grading.exercises). What this adds to
plain `nbgrader autograde` (which grades with the same steps, one notebook at a time):

1. each student's notebook is read once and checked first (grading.preflight): what nbgrader can
   repair is repaired and noted, the rest gets a reason and zero points;
2. each submission is autograded in a private copy of the course (grading.submission), several
   at a time, and the course's gradebook is then updated for that student alone, by writing a
   new file and renaming it over the old one (grading.gradebook);
3. a submission already graded (same files, same grader) is skipped unless `--force`;
4. the report (grading.report): a table per exercise with time and reason, `report.csv`,
   nbgrader's `grades.csv` and HTML feedback.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from deepngrams.config import ASSIGNMENT, COURSE_DIR, MIN_GRADING_MEMORY_GIB, ROOT, SOURCE_NB
from deepngrams.course.course_setup import name_students, record_assignment
from deepngrams.grading.cells import is_test_cell, nbgrader_meta
from deepngrams.grading.course_privacy import open_to_others_note
from deepngrams.grading.exercises import grading_key, student_key
from deepngrams.grading.gradebook import (_copy_db, export_grades, grader_version, kept_open, save_outcome,
                                          saved_outcome)
from deepngrams.grading.report import Outcome, format_report, write_report
from deepngrams.grading.sandbox import Limits, cpu_sharing_problem, mode as sandbox_mode
from deepngrams.grading import engine
from deepngrams.grading.submission import handed_in_files, unusable_name
from deepngrams.grading.untrusted import printable


def graded_cells(course: Path) -> list[str]:
    """The graded cells of the course's source notebook: what the preflight looks for in each file."""
    import nbformat
    source = course / SOURCE_NB.relative_to(COURSE_DIR)
    return [nbgrader_meta(c)["grade_id"] for c in nbformat.read(str(source), 4).cells if is_test_cell(c)]


def check_course(course: Path) -> list[str]:
    """Why this course cannot be graded here ([] when it can): found once, before any work starts.

    nbgrader logs a configuration file that fails and goes on without it, which would grade
    every submission with its defaults (no sandbox, no verdicts) and give everyone 0.
    """
    from traitlets.config.loader import PyFileConfigLoader
    from deepngrams.grading.nbgrader_steps import (GradeUpToHere, OnlyTheStudentsNotebook, OverwriteCellsKeepingOrder,
                                                   SandboxedExecute)
    config_file = course / "nbgrader_config.py"
    source = course / SOURCE_NB.relative_to(COURSE_DIR)
    problems = []
    if not source.is_file():
        problems.append(f"{source} is missing: the course needs its source notebook (copy grader/source/ from the "
                        f"bundle {ROOT})")
    if not config_file.is_file():
        return problems + [f"{config_file} is missing: copy grader/nbgrader_config.py from the bundle {ROOT}"]
    try:
        config = PyFileConfigLoader(config_file.name, path=str(course)).load_config()
    except Exception as e:  # noqa: BLE001 - any failure of the instructor's file is reported as it is
        lines = [line for line in str(e).strip().splitlines() if line.strip()] or [type(e).__name__]
        return problems + [f"{config_file} fails to load ({lines[-1][:300]}). A course kept outside the bundle "
                           f"names it: set BUNDLE_PATH = {str(ROOT)!r} in that file (or DEEPNGRAMS_BUNDLE={ROOT})"]
    steps = config.get("Autograde", {}).get("autograde_preprocessors", [])
    sanitize = config.get("Autograde", {}).get("sanitize_preprocessors", [])
    if SandboxedExecute not in steps or GradeUpToHere not in steps or OverwriteCellsKeepingOrder not in sanitize \
            or OnlyTheStudentsNotebook not in sanitize:
        problems.append(f"{config_file} does not set up this course's grading steps (Autograde.autograde_preprocessors "
                        f"and sanitize_preprocessors): copy grader/nbgrader_config.py from the bundle {ROOT}")
    return problems


def grade(course: Path = COURSE_DIR, *, workers: int = 2, force: bool = False, students: list[str] | None = None,
          limits: Limits | None = None, progress: bool = True, sandboxed: bool = True, scheduler: str | None = None,
          tls=None) -> list[Outcome]:
    """Grade the course's submissions; returns one Outcome per student, sorted by name.

    On a local Dask cluster of `workers` processes, or on the cluster whose scheduler is at
    `scheduler` (`tls`: its distributed.Security); see grading.engine.
    """
    from distributed import as_completed
    from tqdm import tqdm
    from deepngrams.grading import sandbox
    course = Path(course).resolve()
    limits = limits or Limits()
    if sandboxed and (problem := sandbox.available()):
        raise RuntimeError(f"cannot grade: {problem}")
    os.environ.setdefault("DEEPNGRAMS_BUNDLE", str(ROOT))  # the course's configuration finds this bundle
    if problems := check_course(course):
        raise RuntimeError("cannot grade " + str(course) + ":\n  " + "\n  ".join(problems))
    all_students = sorted(p.name for p in (course / "submitted").iterdir()
                          if (p / ASSIGNMENT).is_dir()) if (course / "submitted").is_dir() else []
    unknown = sorted(set(students or []) - set(all_students))
    if unknown:
        raise ValueError(f"no submission from {', '.join(map(repr, unknown))} in {course / 'submitted'}")
    chosen = students or all_students
    record_assignment(course)
    # One gradebook connection for the batch: every student's check and merge reads or writes it.
    with kept_open(course):
        version = grader_version(course)
        outcomes: dict[str, Outcome] = {}
        refused = {s: problem for s in all_students if (problem := unusable_name(s))}
        todo = []
        for student in chosen:
            if student in refused:  # before anything is written for it
                outcomes[student] = Outcome(student, reason=f"not graded: {refused[student]}")
                continue
            saved = saved_outcome(course, student, version)
            if saved and not force:
                outcomes[student] = saved
            else:
                todo.append(student)

        work_root = course / ".grading"
        work_root.mkdir(mode=0o700, exist_ok=True)
        batch = Path(tempfile.mkdtemp(prefix="batch-", dir=work_root))
        try:
            if todo:
                graded_ids, key = graded_cells(course), grading_key(course)
                template = batch / "gradebook.db"
                _copy_db(course / "gradebook.db", template)
                blob = engine.course_blob(course, template)
                # One TensorFlow thread per sandbox, however many cores each worker could have: the
                # notebook's operations are too small to gain from a second thread, which only takes CPU
                # from the grader's own work beside the kernel (make bench: engine).
                threads = 1
                bar = tqdm(total=len(todo), desc="grading", unit="submission", disable=not progress, dynamic_ncols=True)
                client = engine.client_for(scheduler, workers, tls)
                try:
                    course_future = engine.course_future(client, blob)
                    waiting, found = iter(todo), {}
                    running = as_completed()

                    def submit_next() -> None:
                        """The next submission's task: read and checked here, where the course is, a few
                        at a time (a course of 100,000 is never all in memory)."""
                        for student in waiting:
                            try:
                                files, reason, notes, read = handed_in_files(course, student, graded_ids)
                            except Exception as e:  # noqa: BLE001 - the grader's fault, not the student's: next run
                                outcomes[student] = Outcome(student, reason=f"not graded: its files could not be read "
                                                                            f"({type(e).__name__}: {e})"[:300])
                                bar.update()
                                continue
                            future = engine.submit(client, student, files, student_key(key, student),
                                                   course_future, limits, sandboxed, threads)
                            found[future.key] = (student, reason, notes, read)
                            running.add(future)
                            return

                    for _ in range(engine.window(client)):
                        submit_next()
                    for future in running:
                        student, reason, notes, read = found.pop(future.key)
                        try:
                            into = Path(tempfile.mkdtemp(prefix="r-", dir=batch))
                            report = engine.unpack_result(future.result(), into)
                        except Exception as e:  # noqa: BLE001 - the machinery failed, not the student: graded next run
                            outcomes[student] = Outcome(student, reason=f"not graded: {engine.failure(e)}", notes=notes)
                        else:
                            report = dict(report, reason=reason or report["reason"], notes=notes, submission=read)
                            outcomes[student] = save_outcome(course, report, version)
                        future.release()
                        bar.set_postfix_str(printable(student[:20]))
                        bar.update()
                        submit_next()
                finally:
                    engine.close(client)
                bar.close()
        finally:
            shutil.rmtree(batch, ignore_errors=True)
        name_students(course)
        export_grades(course)
        results = [outcomes[s] for s in sorted(outcomes)]
        everyone = {s: outcomes.get(s) or (None if s in refused else saved_outcome(course, s)) for s in all_students}
        write_report(course, [o for _, o in sorted(everyone.items()) if o is not None])
        return results


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _seconds(text: str) -> float:
    """A time limit as typed: a positive, finite number of seconds (a limit of 0 or inf fails every notebook)."""
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a time limit: give a positive, finite number of seconds")
    return value


def _memory_gib(text: str) -> float:
    """A memory limit as typed: finite, and enough for TensorFlow, or every notebook fails, correct ones too."""
    value = _number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a memory limit: give a finite number of GiB")
    if value < MIN_GRADING_MEMORY_GIB:
        raise argparse.ArgumentTypeError(
            f"{text} GiB is too little: TensorFlow alone reserves about 2 GiB, so a correct notebook "
            f"needs at least {MIN_GRADING_MEMORY_GIB:g} GiB (default {Limits().memory_gib:g})")
    return value


def main(argv: list[str] | None = None, prog: str = "python -m deepngrams grade", demo: bool = False) -> int:
    """The command line of `grade` and of `demo` (the bundled sample course, whose answers are public:
    its open folders are not worth a note)."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--course", type=Path, default=COURSE_DIR, help="nbgrader course directory (default: grader/)")
    p.add_argument("--workers", type=int, default=max(1, min(os.cpu_count() or 1, 8)),
                   help="submissions graded at once (default: one per core, at most 8)")
    p.add_argument("--force", action="store_true", help="grade again what is already graded")
    p.add_argument("--student", action="append", help="grade only this student (repeatable)")
    d = Limits()
    p.add_argument("--cell-timeout", type=_seconds, default=d.cell_timeout, help="seconds a cell may run")
    p.add_argument("--timeout", type=_seconds, default=d.wall_timeout, help="seconds a whole notebook may run")
    p.add_argument("--memory", type=_memory_gib, default=d.memory_gib,
                   help=f"GiB of memory the processes may use together (at least {MIN_GRADING_MEMORY_GIB:g})")
    p.add_argument("--scheduler", default=os.environ.get(engine.SCHEDULER_ENV) or None, metavar="ADDRESS",
                   help=f"grade on the Dask cluster of this scheduler (tcp://HOST:PORT or tls://HOST:PORT; default: "
                        f"${engine.SCHEDULER_ENV}, else a local cluster of --workers workers)")
    p.add_argument("--tls-ca-file", help="TLS: the certificate authority of the cluster")
    p.add_argument("--tls-cert", help="TLS: this client's certificate")
    p.add_argument("--tls-key", help="TLS: this client's private key")
    p.add_argument("--insecure", action="store_true",
                   help="allow a scheduler on another machine without TLS (a network you trust)")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be at least 1")
    try:
        tls = engine.security(args.tls_ca_file, args.tls_cert, args.tls_key)
    except ValueError as e:
        p.error(str(e))
    if args.scheduler and (problem := engine.scheduler_problem(args.scheduler, tls is not None, args.insecure)):
        p.error(problem)
    limits = Limits(cell_timeout=args.cell_timeout, wall_timeout=args.timeout, memory_gib=args.memory)
    course = args.course.resolve()
    if not (course / "source" / ASSIGNMENT).is_dir():
        p.error(f"{course} is not the course directory: it has no source/{ASSIGNMENT}/")
    if args.workers > 1 and not args.scheduler and (note := cpu_sharing_problem()):
        print(f"note: {note}", file=sys.stderr)  # the local workers' sandboxes run in this process's cgroup
    if not demo and (note := open_to_others_note(course)):
        print(f"note: {note}", file=sys.stderr)
    start = time.monotonic()
    try:
        outcomes = grade(course, workers=args.workers, force=args.force, students=args.student, limits=limits,
                         scheduler=args.scheduler, tls=tls)
    except (RuntimeError, ValueError, OSError) as e:
        # A list of problems stays a list; each line is still escaped (grading.untrusted.printable).
        print("error: " + "\n".join(printable(line) for line in str(e).split("\n")), file=sys.stderr)
        return 2
    print()
    print(format_report(outcomes))
    print()
    done = sum(not o.skipped for o in outcomes)
    where = args.scheduler or (f"{args.workers} local workers" if args.workers != 1 else "1 local worker")
    print(f"Graded {done}, skipped {len(outcomes) - done} already graded (use --force to grade again), "
          f"in {time.monotonic() - start:.0f} s on {where}.")
    # Where the workers ran (a cluster's may differ from here); here, when nothing ran this time.
    modes = sorted({o.sandbox for o in outcomes if not o.skipped and o.sandbox}) or [sandbox_mode()]
    print(f"Sandbox:         {', '.join(modes)}")
    print(f"Report:          {course / 'report.csv'}")
    print(f"Grades (CSV):    {course / 'grades.csv'}")
    print(f"Feedback (HTML): {course / 'feedback'}/<student>/{ASSIGNMENT}/")
    return 0
