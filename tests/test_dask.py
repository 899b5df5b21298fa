"""The Dask engine with real processes: `dask scheduler` and `dask worker` started from the project's
environment, talking TCP on 127.0.0.1. A worker killed mid-submission, a worker lost for good and a
client restarted mid-batch still leave every submission graded exactly once, with the verdicts of a
plain local run; a failure of the machinery is reported "not graded", never as the student's zero."""
import contextlib
import csv
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from nbgrader.api import Gradebook

from deepngrams.course import release
from deepngrams.grading import batch, engine, gradebook, nbgrader_host, sandbox

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sandbox.available() is not None, reason=str(sandbox.available()))]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ASSIGNMENT = release.ASSIGNMENT
FULL = {"line_to_tensor": 3, "create_batch_dataset": 3, "GRULM": 4, "compile_model": 2,
        "log_perplexity": 3, "temperature_random_sampling": 1, "GenerativeModel": 3}
EXPECTED = {"alice_solved": FULL, "bob_untouched": {ex: 0 for ex in FULL},
            "carol_partial": dict(FULL, GRULM=0, compile_model=0, temperature_random_sampling=0, GenerativeModel=0)}
SAMPLES = {name: name for name in EXPECTED}  # student -> the sample handed in
REMOTE = "tcp://10.1.2.3:8786"


def _listening() -> set:
    import psutil
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process().net_connections(kind="inet") if c.status == "LISTEN"}


def test_the_local_cluster_opens_nothing_another_user_could_use():
    """On a shared server any user can connect to a port of 127.0.0.1: a Dask scheduler or worker
    listening there would run whatever they send, as the grader. The default cluster talks in
    memory; Dask's HTTP servers listen on 127.0.0.1 only and serve no page (not its workers'
    listings, logs or metrics)."""
    import urllib.error
    import urllib.request
    before = _listening()
    client = engine.client_for(None, 2)
    try:
        assert client.scheduler.address.startswith("inproc://")
        assert client.submit(len, b"abc", pure=False).result() == 3
        opened = _listening() - before
        assert opened, "Dask's HTTP servers: expected one for the scheduler and one for each worker"
        assert all(ip == "127.0.0.1" for ip, _ in opened), opened
        for _, port in opened:
            for page in ("/health", "/metrics", "/info/main/workers.html", "/json/counts.json", "/statics/"):
                with pytest.raises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}{page}", timeout=10)
                assert refused.value.code == 404, (port, page)
    finally:
        engine.close(client)


def test_the_local_cluster_hands_waiting_tasks_to_idle_workers_within_a_tenth_of_a_second():
    """Every grading task needs the course, which at first one worker holds: the scheduler sends the
    tasks there, and the other workers get theirs by stealing. At Dask's default of once a second, a
    worker would sit idle for up to a second at the start of every batch."""
    client = engine.client_for(None, 2)
    try:
        stealing = client._deepngrams_cluster.scheduler.periodic_callbacks["stealing"]
        assert stealing.callback_time <= 100  # milliseconds
        assert client.submit(len, b"abc", pure=False).result() == 3
    finally:
        engine.close(client)


def _spin(seconds: float) -> int:
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        n += 1
    return n


def test_the_local_cluster_gathers_no_profile_and_rarely_samples_the_machine():
    """The local cluster serves no dashboard, so what only the dashboard shows is not gathered: no
    statistical profile of a task's thread (Dask samples every 10 ms), and the machine sampled every
    few seconds, not twice a second by each server; both ran in the grader's own process."""
    client = engine.client_for(None, 2)
    try:
        cluster = client._deepngrams_cluster
        servers = [cluster.scheduler, *cluster.workers.values()]
        counts = [server.monitor.count for server in servers]
        assert client.submit(_spin, 1.5, pure=False).result() > 0
        assert client.profile()["count"] == 0
        samples = [server.monitor.count - before for server, before in zip(servers, counts)]
        assert max(samples) <= 1, samples
    finally:
        engine.close(client)


# ----------------------------------------------------------------------------------------
# No cluster: which schedulers the grader accepts, and what a worker may send back
# ----------------------------------------------------------------------------------------
def test_a_scheduler_on_this_machine_needs_no_tls():
    for address in ("tcp://127.0.0.1:8786", "127.0.0.1:8786", "tcp://localhost:8786", "tcp://[::1]:8786"):
        assert engine.scheduler_problem(address, tls=False, insecure=False) == "", address


def test_a_remote_scheduler_without_tls_is_refused_unless_insecure():
    problem = engine.scheduler_problem(REMOTE, tls=False, insecure=False)
    assert "TLS" in problem and "--insecure" in problem and "tls://" in problem
    assert engine.scheduler_problem(REMOTE, tls=False, insecure=True) == ""
    assert engine.scheduler_problem("tls://10.1.2.3:8786", tls=True, insecure=False) == ""
    assert "--tls-ca-file" in engine.scheduler_problem("tls://10.1.2.3:8786", tls=False, insecure=False)


def test_an_address_that_is_not_dask_is_refused():
    for address in ("http://10.1.2.3:8786", "http://127.0.0.1:8786", "file:///tmp/scheduler.json"):
        assert "not a Dask address" in engine.scheduler_problem(address, tls=True, insecure=True), address


def test_tls_needs_all_three_files():
    assert engine.security(None, None, None) is None
    with pytest.raises(ValueError, match="--tls-cert, --tls-key missing"):
        engine.security("ca.pem", None, None)
    with pytest.raises(ValueError, match="--tls-ca-file missing"):
        engine.security(None, "cert.pem", "key.pem")


def worker_result(name: str) -> dict:
    return {"report": {"student": "mallory", "internal": "s0123456789abcdef", "reason": ""},
            "autograded": {name: b"written"}, "feedback": {}}


@pytest.mark.parametrize("name", ["../x", "../../outside", f"{ASSIGNMENT}/../../x", "/tmp/absolute", ""])
def test_a_result_file_named_outside_its_folder_is_refused(tmp_path, name):
    with pytest.raises(ValueError, match="unusable name"):
        engine.unpack_result(worker_result(name), tmp_path / "into")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not Path("/tmp/absolute").exists()


def test_a_result_file_lands_in_the_private_course(tmp_path):
    report = engine.unpack_result(worker_result(f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb"), tmp_path)
    assert (Path(report["private"]) / "autograded" / "s0123456789abcdef" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
            ).read_bytes() == b"written"


def project_env(**extra) -> dict:
    """The environment of a process started from the project's environment (no scheduler set
    from outside)."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(ROOT), **extra)
    if "DASK_SCHEDULER_ADDRESS" not in extra:
        env.pop("DASK_SCHEDULER_ADDRESS", None)
    return env


def test_the_cli_refuses_a_remote_scheduler_before_any_work(tmp_path):
    """The course folder is not even looked at."""
    command = [sys.executable, "-m", "deepngrams", "grade", "--course", str(tmp_path), "--scheduler", REMOTE]
    done = subprocess.run(command, env=project_env(), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert "TLS" in done.stderr and "--insecure" in done.stderr and "source/" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_scheduler_from_the_environment_is_refused_alike(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(engine.SCHEDULER_ENV, REMOTE)
    with pytest.raises(SystemExit) as exit:
        batch.main(["--course", str(tmp_path)])
    assert exit.value.code == 2
    assert "--insecure" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------
# Real clusters
# ----------------------------------------------------------------------------------------
def scheduler_address(scheduler_file: Path, scheduler: subprocess.Popen, timeout: float = 120) -> str:
    """The address the scheduler listens on, once it has written it: it picks a free port itself, so
    no other process can take the port between our choosing it and the scheduler binding it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and scheduler.poll() is None:
        with contextlib.suppress(OSError, ValueError, KeyError):  # not yet written, or half written
            return json.loads(scheduler_file.read_text())["address"]
        time.sleep(0.2)
    raise RuntimeError(f"the scheduler wrote no address to {scheduler_file} (exit status {scheduler.poll()})")


def start_cluster(root: Path, workers: int, **config) -> SimpleNamespace:
    """`dask scheduler` and `workers` `dask worker` processes (a nanny each, which restarts its
    worker if it dies), each in a process group of its own; returns once all workers are up."""
    import distributed
    root.mkdir(parents=True, exist_ok=True)
    cluster = SimpleNamespace(root=root, processes=[], orphans=[], workers=[])

    def spawn(name: str, *args: str) -> subprocess.Popen:
        with open(root / f"{name}.log", "wb") as log:
            proc = subprocess.Popen([str(BIN / "dask"), *args], env=project_env(**config), cwd=root,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        cluster.processes.append(proc)
        return proc

    # The timeouts end the processes should the test itself be killed before its teardown.
    try:
        cluster.scheduler = spawn("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                  "--scheduler-file", str(root / "scheduler.json"), "--idle-timeout", "1200")
        cluster.address = scheduler_address(root / "scheduler.json", cluster.scheduler)
        cluster.workers = [spawn(f"worker-{i}", "worker", cluster.address, "--nthreads", "1", "--nworkers", "1",
                                 "--no-dashboard", "--memory-limit", "0", "--name", f"worker-{i}",
                                 "--local-directory", str(root / f"worker-{i}"), "--death-timeout", "60")
                           for i in range(workers)]
        with distributed.Client(cluster.address, timeout="120s") as client:
            client.wait_for_workers(workers, timeout=180)
    except Exception as e:
        stop_cluster(cluster)
        logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(root.glob("*.log")))
        raise AssertionError(f"the cluster did not start ({e}):\n{logs}") from e
    return cluster


def stop_cluster(cluster) -> list:
    """Kill every process of the cluster, what its workers started included; returns those still
    alive after that (none, if all is well)."""
    below = list(cluster.orphans)
    for proc in cluster.processes:
        with contextlib.suppress(psutil.Error):
            below += psutil.Process(proc.pid).children(recursive=True)
    for proc in cluster.processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    for p in below:
        with contextlib.suppress(psutil.Error):
            p.kill()
    for proc in cluster.processes:
        proc.wait(timeout=60)
    _, alive = psutil.wait_procs(below, timeout=30)
    groups = []
    for proc in cluster.processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 0)
            groups.append(proc.pid)
    return alive + [f"process group {g}" for g in groups]


@pytest.fixture(scope="module")
def cluster():
    root = Path(tempfile.mkdtemp(prefix="test-dask-cluster-"))
    cluster = start_cluster(root, workers=2)
    yield cluster
    left = stop_cluster(cluster)
    shutil.rmtree(root, ignore_errors=True)
    assert not left, f"processes of the cluster left running: {left}"


@pytest.fixture(scope="module")
def courses():
    """Scratch courses inside the bundle (where the notebooks find its data and model)."""
    (release.ROOT / ".cache").mkdir(exist_ok=True)
    parent = Path(tempfile.mkdtemp(prefix="test-dask-", dir=release.ROOT / ".cache"))
    made = itertools.count()

    def new_course(students: dict[str, str]) -> Path:
        course = release.scratch_course(parent / f"c{next(made)}")
        for student, sample in students.items():
            shutil.copytree(release.SUBMITTED / sample, course / "submitted" / student)
        return course

    yield new_course
    shutil.rmtree(parent, ignore_errors=True)


def points(outcome) -> dict:
    return {ex: got for ex, (got, _) in outcome.scores.items()}


def submissions(course: Path) -> dict[str, int]:
    """How many submissions the gradebook has of each of its students."""
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return {s.id: len(s.submissions) for s in gb.students}


def recorded(course: Path, students) -> dict:
    """What the course keeps of each student: submissions in the gradebook and their scores,
    the report.csv row, the grades.csv scores, the feedback page."""
    report = {r["student"]: r for r in csv.DictReader((course / "report.csv").open())}
    grades = {r["student_id"]: r for r in csv.DictReader((course / "grades.csv").open())}
    counts = submissions(course)
    return {s: {"submissions": counts.get(s, 0), "gradebook": gradebook.scores_of(course, s),
                "report": {k: v for k, v in report[s].items() if k not in ("student", "seconds")} if s in report
                else None,
                "grades": {k: grades[s][k] for k in ("raw_score", "score", "max_score")} if s in grades else None,
                "feedback": (course / "feedback" / s / ASSIGNMENT / f"{ASSIGNMENT}.html").is_file()}
            for s in students}


@pytest.fixture(scope="module")
def plain_run(courses):
    """The three samples graded by a plain local run: what every disturbed run must match."""
    course = courses(SAMPLES)
    outcomes = {o.student: o for o in batch.grade(course, workers=2, progress=False)}
    assert {s: points(o) for s, o in outcomes.items()} == EXPECTED
    return outcomes, recorded(course, SAMPLES)


def assert_matches_plain_run(course: Path, outcomes: dict, students: dict[str, str], plain_run,
                             allowed_leftovers: frozenset = frozenset()) -> None:
    """Each student (handing in `students[student]`) graded once, as the plain run graded that sample,
    and no staging folder left but `allowed_leftovers`."""
    plain_outcomes, plain_recorded = plain_run
    for student, sample in students.items():
        assert not outcomes[student].reason.startswith("not graded"), outcomes[student].reason
        assert points(outcomes[student]) == EXPECTED[sample], student
        assert outcomes[student].reason == plain_outcomes[sample].reason
    assert {s for s, n in submissions(course).items() if n} == set(students)
    here = recorded(course, students)
    for student, sample in students.items():
        assert here[student] == plain_recorded[sample], student
        assert here[student]["submissions"] == 1
    assert staging_left(course) <= allowed_leftovers


def staging_left(course: Path) -> set[Path]:
    """The folders a merge stages the graded notebook and feedback in (.new-*, .old-*): none once it ends."""
    return set((course / "autograded").glob(".*")) | set((course / "feedback").glob(".*"))


def marker(course: Path, student: str) -> Path:
    return course / "autograded" / student / ASSIGNMENT / ".deepngrams-grade.json"


def grading_child(pid: int) -> psutil.Process | None:
    """The nbgrader process a worker runs a submission in, if it is grading one now."""
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if child.name() == nbgrader_host.CHILD_NAME.decode():
                    return child
    return None


def worker_grading(watch, running, timeout: float = 300) -> tuple[int, list[psutil.Process]]:
    """A worker in the middle of a submission (the scheduler says it processes a grading task and
    the worker has started nbgrader for it): its pid, and the processes grading the submission."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.done():
            raise AssertionError(f"the batch ended before any worker was seen grading: {running.result()}")
        pids = watch.run(os.getpid)
        for address, keys in watch.processing().items():
            if address in pids and any(str(k).startswith("grade-") for k in keys):
                if child := grading_child(pids[address]):
                    with contextlib.suppress(psutil.Error):
                        return pids[address], [child, *child.children(recursive=True)]
        time.sleep(0.3)
    raise AssertionError("no worker started grading")


def kill_worker_mid_submission(cluster, watch, running) -> None:
    """SIGKILL a worker process while it grades (its nanny starts a new one); what it was grading
    must end with it, not run on unseen."""
    pid, grading = worker_grading(watch, running)
    cluster.orphans += grading
    os.kill(pid, signal.SIGKILL)
    _, alive = psutil.wait_procs(grading, timeout=15)
    assert not alive, f"the submission of a killed worker still runs: {alive}"


def test_a_worker_killed_mid_submission_changes_no_verdict(cluster, courses, plain_run):
    import distributed
    students = dict(SAMPLES, erin_copy="alice_solved", frank_copy="alice_solved")
    course = courses(students)
    with distributed.Client(cluster.address) as watch, ThreadPoolExecutor(1) as pool:
        running = pool.submit(batch.grade, course, scheduler=cluster.address, progress=False)
        kill_worker_mid_submission(cluster, watch, running)
        outcomes = {o.student: o for o in running.result(timeout=900)}
        watch.wait_for_workers(2, timeout=120)
    assert sorted(outcomes) == sorted(students) and not any(o.skipped for o in outcomes.values())
    assert_matches_plain_run(course, outcomes, students, plain_run)


def test_a_client_restarted_mid_batch_grades_each_submission_once(cluster, courses, plain_run):
    course = courses(SAMPLES)
    command = [sys.executable, "-m", "deepngrams", "grade", "--course", str(course), "--scheduler", cluster.address]
    with open(course.parent / "first.log", "wb") as log:
        first = subprocess.Popen(command, env=project_env(), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not any(marker(course, s).is_file() for s in SAMPLES):
            assert first.poll() is None, (course.parent / "first.log").read_text()
            assert time.monotonic() < deadline, "the first run saved nothing"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    saved = {s for s in SAMPLES if marker(course, s).is_file()}
    assert first.returncode == -signal.SIGKILL and 0 < len(saved) < len(SAMPLES)
    # a run killed in the middle of a merge may leave its staging folder behind; the second adds none
    left_by_first = staging_left(course)

    second = subprocess.run(command, env=project_env(), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"Graded {len(SAMPLES) - len(saved)}, skipped {len(saved)} already graded" in second.stdout
    skipped = {line.split()[0] for line in second.stdout.splitlines() if line.endswith("(already graded)")}
    assert skipped == saved
    # each student's saved outcome, as a third run would find it
    outcomes = {s: gradebook.saved_outcome(course, s) for s in SAMPLES}
    assert_matches_plain_run(course, outcomes, SAMPLES, plain_run, frozenset(left_by_first))


@pytest.fixture(scope="module")
def lone_worker():
    """A cluster of one worker: the course its tasks share lives on that worker alone."""
    cluster = start_cluster(Path(tempfile.mkdtemp(prefix="test-dask-lone-")), workers=1)
    yield cluster
    left = stop_cluster(cluster)
    shutil.rmtree(cluster.root, ignore_errors=True)
    assert not left, f"processes of the cluster left running: {left}"


def test_the_only_worker_killed_mid_submission_grades_it_when_restarted(lone_worker, courses, plain_run):
    """The course lost with the worker is made again: the submission is graded, not failed."""
    import distributed
    students = {"alice_solved": "alice_solved"}
    course = courses(students)
    with distributed.Client(lone_worker.address) as watch, ThreadPoolExecutor(1) as pool:
        running = pool.submit(batch.grade, course, scheduler=lone_worker.address, progress=False)
        kill_worker_mid_submission(lone_worker, watch, running)
        outcomes = {o.student: o for o in running.result(timeout=600)}
        watch.wait_for_workers(1, timeout=120)
    assert_matches_plain_run(course, outcomes, students, plain_run)


def test_a_worker_lost_for_good_is_not_graded_then_a_rerun_grades_it(lone_worker, cluster, courses, plain_run):
    """The student gets "not graded" and no grade at all (not a zero); a run on a healthy cluster
    grades it."""
    import distributed
    students = {"carol_partial": "carol_partial"}
    course = courses(students)
    with distributed.Client(lone_worker.address) as watch, ThreadPoolExecutor(1) as pool:
        # distributed.scheduler.allowed-failures = 0 from now on: a task whose worker is lost fails at
        # once. (A lambda travels by value; the scheduler cannot import this test module.)
        watch.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", 0))
        running = pool.submit(batch.grade, course, scheduler=lone_worker.address, progress=False)
        _, grading = worker_grading(watch, running)
        lone_worker.orphans += grading
        # the machine is gone: the nanny, its worker and the submission they were grading
        os.killpg(lone_worker.workers[0].pid, signal.SIGKILL)
        for p in grading:
            with contextlib.suppress(psutil.Error):
                p.kill()
        [outcome] = running.result(timeout=300)
    assert outcome.reason.startswith("not graded: ") and "re-run" in outcome.reason, outcome.reason
    assert outcome.scores == {} and not outcome.skipped
    assert not marker(course, "carol_partial").exists()
    assert submissions(course).get("carol_partial", 0) == 0 and gradebook.scores_of(course, "carol_partial") == {}
    [row] = csv.DictReader((course / "report.csv").open())
    assert row["student"] == "carol_partial" and row["reason"] == outcome.reason

    outcomes = {o.student: o for o in batch.grade(course, scheduler=cluster.address, progress=False)}
    assert not outcomes["carol_partial"].skipped
    assert_matches_plain_run(course, outcomes, students, plain_run)
