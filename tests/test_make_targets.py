"""The Makefile's `lab` and `sandbox` targets: JupyterLab for root and ordinary users without its
news prompt; no system package installed behind the user's back when bubblewrap is missing."""
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make")
JUPYTER = ROOT / ".venv" / "bin" / "jupyter"
NEWS_PLUGIN = "@jupyterlab/apputils-extension:announcements"

needs_make = pytest.mark.skipif(MAKE is None, reason="no make")
needs_jupyter = pytest.mark.skipif(not JUPYTER.exists(), reason="no .venv/bin/jupyter (run make once)")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="runs as root")


def _user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _lab_lines(output):
    """The dry run's two lines of the lab recipe: the plugin switch and the `jupyter lab` command."""
    lines = [line.strip() for line in output.replace("\\\n", " ").splitlines()]
    lab = [line for line in lines if re.search(r"bin/jupyter lab\b", line)]
    disable = [line for line in lines if "labextension disable" in line]
    assert len(lab) == 1 and len(disable) == 1, output
    return lab[0], disable[0]


def _dry_run_lab(cwd=ROOT, user=None):
    if user is None:
        done = subprocess.run([MAKE, "-n", "lab"], cwd=cwd, capture_output=True, text=True, timeout=120)
    else:
        done = subprocess.run(["su", user, "-s", "/bin/sh", "-c", f"cd {shlex.quote(str(cwd))} && make -n lab"],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return _lab_lines(done.stdout)


def _check_lab_command(lab, disable):
    words = shlex.split(lab)
    assert "--notebook-dir=." in words
    assert "--LabApp.news_url=None" in words
    command = next(part for part in disable.split("||") if "labextension disable" in part)
    assert "--level=sys_prefix" in command and NEWS_PLUGIN in shlex.split(command)
    return words


@needs_make
@as_root
def test_make_lab_as_root_allows_root_and_has_no_news_prompt():
    lab, disable = _dry_run_lab()
    assert "--allow-root" in _check_lab_command(lab, disable)


@needs_make
@as_root
@pytest.mark.skipif(not _user_exists("tester") or shutil.which("su") is None, reason="needs user tester and su")
def test_make_lab_as_an_ordinary_user_does_not_allow_root():
    tmp = Path(tempfile.mkdtemp(prefix="make-lab-", dir="/tmp"))
    try:
        tmp.chmod(0o755)
        for name in ("Makefile", "requirements.txt"):
            shutil.copy(ROOT / name, tmp / name)
            (tmp / name).chmod(0o644)
        lab, disable = _dry_run_lab(cwd=tmp, user="tester")
        assert "--allow-root" not in _check_lab_command(lab, disable)
    finally:
        shutil.rmtree(tmp)


@needs_make
@needs_jupyter
def test_the_installed_jupyterlab_knows_the_options_of_make_lab():
    """Every option of the `jupyter lab` line is one the installed JupyterLab lists; the plugin the
    Makefile disables is the installed JupyterLab's announcements plugin (the news prompt)."""
    done = subprocess.run([MAKE, "-n", "lab"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    lab, disable = _lab_lines(done.stdout)
    options = [word.split("=")[0] for word in shlex.split(lab) if word.startswith("--")]
    assert {"--notebook-dir", "--LabApp.news_url"} <= set(options)
    help_all = subprocess.run([str(JUPYTER), "lab", "--help-all"], capture_output=True, text=True, timeout=120)
    assert help_all.returncode == 0, help_all.stderr[-2000:]
    known = set(re.findall(r"^(--[\w.-]+)", help_all.stdout, re.M))
    assert "--allow-root" in known  # given to root only, so not always on the line above
    assert set(options) <= known, set(options) - known
    assert "None to turn off fetching announcements" in " ".join(help_all.stdout.split())  # news_url's off switch

    # The announcements plugin (the news prompt) is in the installed frontend under that id.
    prefix = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", "import sys; print(sys.prefix)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    bundles = list((Path(prefix) / "share" / "jupyter" / "lab" / "static").glob("jlab_core.*.js"))
    assert bundles and any(f'id:"{NEWS_PLUGIN}"' in b.read_text(errors="replace") for b in bundles)
    disable_help = subprocess.run([str(JUPYTER), "labextension", "disable", "--help-all"], capture_output=True,
                                  text=True, timeout=120)
    assert re.search(r"^--level=.*\n.*sys_prefix", disable_help.stdout, re.M), disable_help.stdout[-2000:]


def _stamp():
    done = subprocess.run([MAKE, "-s", "--eval", "print-stamp: ; @echo $(STAMP)", "print-stamp"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


@pytest.mark.slow
@needs_make
@needs_jupyter
def test_make_lab_starts_jupyterlab_without_the_news_plugin(tmp_path):
    """`make lab` for real (root included): the page JupyterLab serves disables the news plugin."""
    token = "make-lab-test"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    args = f"--no-browser --ip=127.0.0.1 --port=0 --IdentityProvider.token={token}"
    # -o: never (re)build .venv here, whatever the stamp says.
    proc = subprocess.Popen([MAKE, "-o", _stamp(), "lab", f"LAB_ARGS={args}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log = []
    try:
        deadline = time.monotonic() + 120
        port = None
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            log.append(line)
            found = re.search(r"http://127\.0\.0\.1:(\d+)/lab", line)
            port = found and found.group(1)
        assert port, "".join(log)[-3000:]
        page = None
        while page is None:  # the server may name its port a moment before it listens on it
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=60) as response:
                    page = response.read().decode()
            except urllib.error.URLError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.5)
        data = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page, re.S)
        config = json.loads(data.group(1))
        assert NEWS_PLUGIN in config["disabledExtensions"]
        assert config["news"] == {"disabled": True}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        proc.stdout.close()


def _fake_path(tmp_path, with_bwrap):
    """A PATH of the few tools make needs, an apt-get and a sudo that record any call, and bwrap or not."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    for tool in ("sha256sum", "cut", "id", "python3"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    names = ["apt-get", "apt", "sudo"] + (["bwrap"] if with_bwrap else [])
    for name in names:
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {shlex.quote(str(calls))}\nexit 0\n')
        (bin_dir / name).chmod(0o755)
    return str(bin_dir), calls


def _make(target, path, *extra):
    return subprocess.run([MAKE, "-s", *extra, target], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PATH=path))


@needs_make
def test_make_sandbox_without_bwrap_says_what_to_do_and_installs_nothing(tmp_path):
    path, calls = _fake_path(tmp_path, with_bwrap=False)
    done = _make("sandbox", path)
    assert done.returncode != 0
    message = " ".join(done.stderr.split())
    assert "bubblewrap (bwrap) is not installed" in message
    assert "as root: apt-get install bubblewrap" in message and "distribution's bubblewrap package" in message
    assert "-m deepngrams plain-autograde" in message and "trusted submissions only" in message
    assert not calls.exists(), calls.read_text()


@needs_make
@pytest.mark.parametrize("target", ["demo", "grade", "test", "bench"])
def test_the_sandboxed_targets_stop_at_the_missing_bwrap(tmp_path, target):
    path, calls = _fake_path(tmp_path, with_bwrap=False)
    done = _make(target, path, "-o", _stamp())
    assert done.returncode != 0
    assert "apt-get install bubblewrap" in done.stderr and "plain-autograde" in done.stderr
    assert not calls.exists(), calls.read_text()


@needs_make
def test_make_sandbox_with_bwrap_is_silent(tmp_path):
    path, calls = _fake_path(tmp_path, with_bwrap=True)
    done = _make("sandbox", path)
    assert done.returncode == 0 and done.stdout == "" and "bubblewrap" not in done.stderr, done.stderr
    assert not calls.exists(), calls.read_text()


@needs_make
def test_make_browser_test_without_chromium_says_what_to_do_and_installs_nothing(tmp_path):
    path, calls = _fake_path(tmp_path, with_bwrap=True)
    done = _make("browser-test", path, "-o", _stamp())
    assert done.returncode != 0
    assert "Chromium is not installed" in done.stderr and "as root: apt-get install chromium" in done.stderr
    assert "pytest" not in done.stdout + done.stderr
    assert not calls.exists(), calls.read_text()


def test_readme_quick_start_names_what_a_user_needs():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## ")[0]
    assert "Python 3.11 or 3.12" in quick_start and "apt-get install bubblewrap" in quick_start
    assert "installs Debian's" not in readme
