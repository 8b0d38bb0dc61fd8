"""The `opsux` command line, run as a real process against real databases."""
import os, subprocess, sys

import pytest

import opsux


def run(*args, db=None, stdin=None, env=None, timeout=180):
    cmd = [sys.executable, "-m", "opsux.cli", *args]
    if db: cmd += ["--db", db]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_db_upgrade_seed_users_and_reap(db_url):
    r = run("db", "upgrade", db=db_url)
    assert r.returncode == 0, r.stderr
    assert "newest schema" in r.stdout
    assert "s3cret" not in r.stdout + r.stderr

    r = run("seed", "--runs", "120", "--tenants", "2", db=db_url)
    assert r.returncode == 0, r.stderr

    r = run("users", "add", "grace@contoso.test", "--name", "Grace", "--tenant", "Contoso", "--tenant", "Fabrikam",
            "--password-stdin", db=db_url, stdin="correct horse battery staple\n")
    assert r.returncode == 0, r.stderr
    ops = opsux.connect(db_url)
    try:
        user = ops.directory.verify_password("grace@contoso.test", "correct horse battery staple")
        assert user is not None and user.name == "Grace"
        assert ops.directory.verify_password("grace@contoso.test", "wrong") is None
        names = sorted(t.name for t in ops.viewer(user).tenants())
        assert names == ["Contoso", "Fabrikam"]
    finally:
        ops.close()

    r = run("reap", "--max-idle", "10m", db=db_url)
    assert r.returncode == 0, r.stderr
    assert "failed" in r.stdout


def test_password_never_taken_from_arguments(tmp_path):
    r = run("users", "add", "a@b.test", "--name", "A", "--password", "x", db=f"sqlite:///{tmp_path}/x.sqlite")
    assert r.returncode == 2 and "unrecognized arguments" in r.stderr


def test_empty_password_on_stdin_is_refused(tmp_path):
    r = run("users", "add", "a@b.test", "--name", "A", "--password-stdin", db=f"sqlite:///{tmp_path}/x.sqlite", stdin="\n")
    assert r.returncode != 0 and "no password" in r.stderr


def test_unreachable_database_is_a_clear_error_not_a_traceback():
    r = run("db", "upgrade", db="postgresql+psycopg://opsux:s3cret@127.0.0.1:1/opsux", timeout=60)
    assert r.returncode == 2
    assert "cannot reach the database" in r.stderr
    assert "Traceback" not in r.stderr and "s3cret" not in r.stderr


@pytest.mark.parametrize("args, expected", [
    (["reap", "--max-idle", "soon"], "expected a positive duration"),
    (["seed", "--runs", "-3"], "positive whole number"),
    (["serve", "--port", "0"], "positive whole number"),
    (["serve", "--page-limit", "fast"], "expected BURST/SECONDS"),
    (["prune"], "--older-than"),
])
def test_bad_arguments_are_refused_with_a_reason(args, expected):
    r = run(*args)
    assert r.returncode == 2 and expected in r.stderr


def test_catalog_guard_passes_on_our_own_code():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = run("catalog", "check", os.path.join(root, "opsux"), os.path.join(root, "bench"))
    assert r.returncode == 0, r.stdout + r.stderr
