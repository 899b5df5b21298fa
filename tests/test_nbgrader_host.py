"""nbgrader's host: one process with nbgrader loaded, a fresh forked child for each submission.

The child runs the private course's nbgrader_config.py first (`nbgrader_host.run_steps`), so each
test's configuration file is the code under test: it records what the child sees.
"""
import json
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from deepngrams.grading import nbgrader_host

RECORD = '''\
import json, os
import deepngrams.grading.nbgrader_steps as steps
seen = {"polluted": getattr(steps, "POLLUTED", None), "env": os.environ.get("CHECK_ENV"),
        "host_env": os.environ.get("ONLY_IN_THE_HOST"), "pid": os.getpid(), "pgid": os.getpgid(0),
        "compiled_templates": sorted(steps.TEMPLATE_BYTECODE.stored)}
steps.POLLUTED = os.environ.get("CHECK_ENV")
open("seen.json", "w").write(json.dumps(seen))
'''


def started_host() -> nbgrader_host.Host:
    """A new host, with a variable in its environment that its children must not see."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ONLY_IN_THE_HOST", "yes")
        return nbgrader_host.Host()


@pytest.fixture(scope="module")
def host():
    """One host for the tests that leave it running, as a process keeps its hosts for all its
    submissions (each start imports nbgrader, a second or two)."""
    h = started_host()
    yield h
    h.close()


@pytest.fixture
def fresh_host():
    """A host of the test's own, for a test that ends it."""
    h = started_host()
    yield h
    h.close()


def private(tmp_path: Path, name: str, config: str) -> Path:
    folder = tmp_path / name / "course"
    folder.mkdir(parents=True)
    (folder / "nbgrader_config.py").write_text(config)
    return folder


def run(host, folder: Path, env: dict, timeout=60):
    env = dict(env, PYTHONPATH=os.environ.get("PYTHONPATH", ""), PATH=os.environ["PATH"])
    return host.run(folder, "s0", env, folder.parent / "stderr.txt", timeout)


def test_each_submission_gets_a_fresh_child_with_its_own_environment(host, tmp_path):
    firsts = []
    for name in ("a", "b"):
        folder = private(tmp_path, name, RECORD)
        status = run(host, folder, {"CHECK_ENV": name})
        assert status == 1  # the private course has no assignment: nbgrader fails, after the config ran
        firsts.append(json.loads((folder / "seen.json").read_text()))
        assert (folder.parent / "stderr.txt").read_text().strip(), "the child's error reaches its stderr file"
    a, b = firsts
    assert a["polluted"] is None and b["polluted"] is None, "the second child saw what the first changed"
    assert (a["env"], b["env"]) == ("a", "b") and a["host_env"] is None and b["host_env"] is None
    assert a["pid"] != b["pid"] and a["pgid"] == a["pid"] and b["pgid"] == b["pid"]  # a group each, to kill whole
    assert host.alive()


def test_a_child_starts_with_the_feedback_templates_compiled_by_its_host(host, tmp_path):
    """Each submission's feedback reuses them (nbgrader_steps.FeedbackExporter) instead of compiling
    the same templates again."""
    folder = private(tmp_path, "a", RECORD)
    run(host, folder, {"CHECK_ENV": "a"})
    assert len(json.loads((folder / "seen.json").read_text())["compiled_templates"]) >= 5


def kernel_factories(host: nbgrader_host.Host) -> list[psutil.Process]:
    return [p for p in psutil.Process(host.proc.pid).children() if "zygote.py" in " ".join(p.cmdline())]


def test_a_host_told_its_kernels_thread_count_starts_their_factory_before_any_request():
    """The factory imports TensorFlow, the longest wait before a batch's first kernel: started with
    the host, it imports beside the host's own imports rather than after the first request. It
    ends with the host."""
    told, untold = nbgrader_host.Host(kernel_threads=1), nbgrader_host.Host()
    try:
        assert untold.alive() and kernel_factories(untold) == []  # it starts one on its first request
        factories = kernel_factories(told)
        assert len(factories) == 1 and factories[0].is_running()
    finally:
        told.close()
        untold.close()
    gone, alive = psutil.wait_procs(factories, timeout=30)
    assert not alive, "the kernel factory outlived its host"


def test_a_child_killed_by_a_signal_reports_it_and_the_host_goes_on(host, tmp_path):
    folder = private(tmp_path, "a", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert run(host, folder, {}) == -signal.SIGKILL
    folder = private(tmp_path, "b", RECORD)
    assert run(host, folder, {"CHECK_ENV": "b"}) == 1 and (folder / "seen.json").is_file()


STUCK = """\
import os, subprocess, time
sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)  # as the sandbox is: a session of its own
open("pids", "w").write(f"{os.getpid()} {sleeper.pid}")
time.sleep(300)
"""


def test_a_child_past_its_time_is_stopped_by_the_host_with_everything_it_started(host, tmp_path):
    folder = private(tmp_path, "a", STUCK)
    start = time.monotonic()
    assert run(host, folder, {}, timeout=5) is None
    assert time.monotonic() - start < 60
    pids = [int(x) for x in (folder / "pids").read_text().split()]
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
        assert time.monotonic() < deadline, "the child or what it started outlived its time limit"
        time.sleep(0.1)
    assert run(host, private(tmp_path, "b", RECORD), {}) == 1  # the host answers the next one


def test_quick_children_are_answered_in_step(host, tmp_path):
    """A child that ends at once puts its pid and its status on the channel together: each
    answer still goes to its own request."""
    for code in [0, 5, 1, 7, 0, 2, 9, 3] * 3:
        folder = private(tmp_path, f"quick{time.monotonic_ns()}", f"import os\nos._exit({code})\n")
        assert run(host, folder, {}) == code


def test_a_request_out_of_step_ends_the_host(fresh_host):
    fresh_host._send({"not": "a request"})
    with pytest.raises(nbgrader_host.HostFailed):
        fresh_host._expect("pid", 30, "did not start a child")
    assert not fresh_host.alive()


def borrow():
    """A host borrowed and given back, as one submission's grading does."""
    with nbgrader_host.borrowed_host() as h:
        return h


def test_a_host_that_dies_is_a_machinery_failure_and_is_replaced(tmp_path):
    """One that dies while idle is replaced before anyone asks it anything."""
    first = borrow()
    assert borrow() is first  # given back, and borrowed again by the next submission
    with pytest.raises(nbgrader_host.HostFailed):
        with nbgrader_host.borrowed_host() as h:
            assert h is first
            first.proc.kill()
            first.proc.wait()
            run(h, private(tmp_path, "a", RECORD), {})
    with nbgrader_host.borrowed_host() as second:
        assert second is not first and second.alive()
        assert run(second, private(tmp_path, "b", RECORD), {}) == 1
    second.proc.kill()
    second.proc.wait()
    with nbgrader_host.borrowed_host() as third:
        assert third is not second and run(third, private(tmp_path, "c", RECORD), {}) == 1
    third.close()


def test_submissions_graded_at_once_get_a_host_each_and_keep_them_for_the_next(tmp_path):
    with nbgrader_host.borrowed_host() as a, nbgrader_host.borrowed_host() as b:
        assert a is not b and a.proc.pid != b.proc.pid
    with nbgrader_host.borrowed_host() as c, nbgrader_host.borrowed_host() as d:
        assert {c, d} == {a, b}
    for h in (a, b):
        h.close()


def test_a_host_left_out_of_step_is_not_borrowed_again(tmp_path):
    """An exchange cut short (the grading thread interrupted between a request and its answer) would
    hand the next submission the previous one's answer: that host ends instead."""
    with pytest.raises(KeyboardInterrupt):
        with nbgrader_host.borrowed_host() as cut:
            cut._send({"private": str(private(tmp_path, "a", RECORD)), "student": "s0", "env": dict(os.environ),
                       "stderr": str(tmp_path / "err.txt")})
            raise KeyboardInterrupt
    assert not cut.alive()
    with nbgrader_host.borrowed_host() as h:
        assert h is not cut and run(h, private(tmp_path, "b", RECORD), {}) == 1
    h.close()


def test_a_host_that_read_other_course_files_is_not_borrowed_again(tmp_path, monkeypatch):
    """A host reads the model card and the corpus once (the cases come from them): once either
    changes, the next submission gets a host that read the new ones."""
    first = borrow()
    card = tmp_path / "model_card.json"
    card.write_text("{}")
    monkeypatch.setattr(nbgrader_host, "CARD_PATH", card)
    second = borrow()
    assert second is not first and not first.alive()
    card.write_text('{"changed": true}')
    os.utime(card, ns=(1, 1))
    assert borrow() is not second and not second.alive()
    monkeypatch.undo()
    borrow().close()


def test_a_host_outlives_the_thread_that_started_it_for_the_next_batch(tmp_path):
    """A local cluster's worker threads end with their batch; the hosts they started serve the next."""
    result = {}

    def grade():
        result["host"] = borrow()

    thread = threading.Thread(target=grade)
    thread.start()
    thread.join(120)
    time.sleep(1)
    h = result["host"]
    assert h.alive(), "the host ended with the thread that started it"
    with nbgrader_host.borrowed_host() as again:
        assert again is h and run(again, private(tmp_path, "a", RECORD), {}) == 1
    h.close()


def test_a_forked_child_never_borrows_its_parents_hosts(tmp_path):
    """A forked process shares its parent's pipes to the hosts: borrowing one would mix two
    conversations on one channel. It starts hosts of its own, with a spawning thread of its own."""
    parent = borrow()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            with nbgrader_host.borrowed_host() as h:
                status = run(h, private(tmp_path, "child", RECORD), {})
                os.write(write, json.dumps({"host": h.proc.pid, "status": status}).encode())
        finally:
            os._exit(0)
    os.close(write)
    import select
    with os.fdopen(read) as f:
        answered = select.select([f], [], [], 120)[0]
        seen = json.loads(f.read() or "null") if answered else None
    if not answered:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert seen is not None, "the forked child could not borrow a host (it waited for its parent's spawning thread)"
    assert seen["host"] != parent.proc.pid and seen["status"] == 1
    assert borrow() is parent and parent.alive()  # the parent's pool is as it was
    parent.close()


def test_closing_the_idle_hosts_ends_them_and_the_next_submission_starts_afresh(tmp_path):
    first = borrow()
    nbgrader_host.close_idle_hosts()
    assert not first.alive()
    with nbgrader_host.borrowed_host() as h:
        assert h is not first and run(h, private(tmp_path, "a", RECORD), {}) == 1
    nbgrader_host.close_idle_hosts()
    assert not h.alive()


KILLED_WORKER = """import json, os, sys, time
from pathlib import Path
from deepngrams.grading import nbgrader_host
folder = Path(sys.argv[1])
with nbgrader_host.borrowed_host() as h:
    h._send({"private": str(folder), "student": "s0", "env": dict(os.environ), "stderr": str(folder.parent / "err.txt")})
    child = h._expect("pid", 60, "did not start a child")
    print(json.dumps({"host": h.proc.pid, "child": child}), flush=True)
    time.sleep(300)
"""


def test_the_host_and_its_child_end_with_the_process_that_uses_them(tmp_path):
    """A worker killed mid-submission (SIGKILL) leaves nothing running: the host dies with its
    process, the child with the host."""
    import subprocess
    import sys
    folder = private(tmp_path, "a", "import time\nopen('started', 'w').close()\ntime.sleep(300)\n")
    worker = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        seen = json.loads(worker.stdout.readline())
        deadline = time.monotonic() + 60
        while not (folder / "started").exists():
            assert time.monotonic() < deadline, "the child did not start"
            time.sleep(0.1)
    finally:
        worker.kill()
        worker.wait()
    for what in ("child", "host"):
        deadline = time.monotonic() + 15
        while psutil.pid_exists(seen[what]) and psutil.Process(seen[what]).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, f"the {what} outlived the process that used it"
            time.sleep(0.1)


ORPHAN = """\
import json, os, subprocess
subprocess.run(["sh", "-c", "sleep 30 & echo $! > orphan.pid"], check=True)  # sh ends: its sleep is an orphan
orphan = int(open("orphan.pid").read())
parent = int(open(f"/proc/{orphan}/stat").read().rsplit(")", 1)[1].split()[1])
os.kill(orphan, 9)
open("seen.json", "w").write(json.dumps({"child": os.getpid(), "orphan_parent": parent}))
"""


def test_what_the_child_starts_is_reparented_to_it_not_to_the_machines_init(host, tmp_path):
    """The sandbox's init outlives bubblewrap: the child adopts it and reaps it itself, rather than
    waiting for the machine's init, which on some machines reaps only every second or so."""
    folder = private(tmp_path, "a", ORPHAN)
    assert run(host, folder, {}) == 1  # the config ran, then nbgrader failed (no assignment)
    seen = json.loads((folder / "seen.json").read_text())
    assert seen["orphan_parent"] == seen["child"]


def test_an_ended_child_is_reaped_and_anything_else_left_alone():
    import subprocess
    from deepngrams.grading import sandbox
    proc = subprocess.Popen(["true"])
    deadline = time.monotonic() + 30
    while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    sandbox._reap_if_child(proc.pid)
    assert not psutil.pid_exists(proc.pid)
    sandbox._reap_if_child(1)  # not a child of this process: nothing happens
    assert psutil.pid_exists(1)
    proc.returncode = 0  # reaped above: Popen must not wait for it again
