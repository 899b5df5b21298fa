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
    """One host for the tests that leave it running, as a grading thread keeps one for all its
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


def test_a_host_that_dies_is_a_machinery_failure_and_is_replaced(tmp_path):
    first = nbgrader_host.host()
    assert nbgrader_host.host() is first  # one per thread, kept
    first.proc.kill()
    first.proc.wait()
    with pytest.raises(nbgrader_host.HostFailed):
        run(first, private(tmp_path, "a", RECORD), {})
    second = nbgrader_host.host()
    try:
        assert second is not first and second.alive()
        assert run(second, private(tmp_path, "b", RECORD), {}) == 1
    finally:
        second.close()


def test_the_host_and_its_child_end_with_the_thread_that_started_the_host(tmp_path):
    """A worker that dies mid-submission leaves nothing running: the host dies with its thread,
    the child with the host."""
    started, result = threading.Event(), {}
    folder = private(tmp_path, "a", "import time\nopen('started', 'w').close()\ntime.sleep(300)\n")

    def grade():
        h = nbgrader_host.Host()
        result["host"] = h.proc.pid
        h._send({"private": str(folder), "student": "s0", "env": dict(os.environ),
                 "stderr": str(tmp_path / "err.txt")})
        result["child"] = h._expect("pid", 60, "did not start a child")
        started.set()
        while not (folder / "started").exists():
            time.sleep(0.1)
        # the thread ends here, its host and the child still running

    thread = threading.Thread(target=grade)
    thread.start()
    thread.join(120)
    assert started.is_set()
    deadline = time.monotonic() + 15
    while psutil.pid_exists(result["child"]):
        assert time.monotonic() < deadline, "the child outlived its host"
        time.sleep(0.1)
    deadline = time.monotonic() + 15
    while psutil.pid_exists(result["host"]) and psutil.Process(result["host"]).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the host outlived the thread that started it"
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
