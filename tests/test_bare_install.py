"""A bare `pip install .` (no extras) is enough for every command: a fresh virtual environment imports every module
of the package, answers `opsux --help`, and serves `opsux demo`. (A run-time import of a dev-only package, such as
fastcore, once crashed `opsux demo`; CI installs `.[dev]`, so only a bare environment can see it.)"""
import os, subprocess, sys, urllib.request
from pathlib import Path

import pytest

from support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = {"opsux.celery": "celery", "opsux.rq": "rq"}      # integrations that need their extra


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    "A virtual environment with nothing but `pip install .` of this checkout."
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    build = tmp_path_factory.mktemp("src")      # a copy of the working tree: the build must not write into the checkout
    for p in ("opsux", "settings.ini", "setup.py", "README.md"):
        subprocess.run(["cp", "-r", str(ROOT / p), str(build)], check=True)
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", str(build)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return py


def test_bare_install_imports_every_module(bare):
    code = r"""
import importlib, pkgutil, sys, opsux
optional = %r
bad = []
for m in sorted(n for _, n, _ in pkgutil.walk_packages(opsux.__path__, "opsux.") if ".migrations" not in n):
    try: importlib.import_module(m)
    except ImportError as e:
        if m in optional and f"opsux[{optional[m]}]" in str(e): continue    # says which extra to install
        bad.append(f"{m}: {type(e).__name__}: {e}")
    except Exception as e: bad.append(f"{m}: {type(e).__name__}: {e}")
print("\n".join(bad)); sys.exit(1 if bad else 0)
""" % OPTIONAL
    r = subprocess.run([str(bare), "-c", code], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]


def test_bare_install_runs_the_commands(bare, tmp_path):
    opsux = bare.parent / "opsux"
    env = dict(os.environ, OPSUX_HOME=str(tmp_path))
    env.pop("OPSUX_DATABASE_URL", None)
    for args in (["--help"], ["db", "upgrade"], ["seed", "--runs", "50"], ["reap"], ["prune", "--older-than", "90d"],
                 ["catalog", "check", str(ROOT / "opsux")]):
        r = subprocess.run([str(opsux), *args], capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=300)
        assert r.returncode == 0, (args, r.stdout[-1000:], r.stderr[-2000:])
    r = subprocess.run([str(opsux), "users", "add", "ada@example.test", "--name", "Ada", "--tenant", "Contoso",
                        "--password-stdin"], input="a-long-password\n", capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_bare_install_serves_the_demo(bare, tmp_path):
    port = free_port()
    env = dict(os.environ, OPSUX_HOME=str(tmp_path), PYTHONUNBUFFERED="1")
    env.pop("OPSUX_DATABASE_URL", None)
    log = open(tmp_path / "demo.log", "w")
    proc = subprocess.Popen([str(bare.parent / "opsux"), "demo", "--port", str(port)], env=env, cwd=str(tmp_path),
                            stdout=log, stderr=subprocess.STDOUT)
    def answers():
        assert proc.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/operations", timeout=30) as r: return r.status == 200
        except OSError: return False
    try: wait_until(answers, timeout=300, interval=0.5)
    finally:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill()
        log.close()
