"""The catalog guard: real source files in, findings with file:line out."""
import io
import textwrap
from pathlib import Path

import pytest

from opsux.rules.catalog import OperationCatalog
from opsux.guard import Produced, check_command, find_operation_types, scan

REPO = Path(__file__).resolve().parents[1]


def write(root: Path, name: str, src: str) -> Path:
    p = root / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(src))
    return p


def run(paths, **kw):
    out = io.StringIO()
    code = check_command([str(p) for p in paths], out=out, **kw)
    return code, out.getvalue()


def test_repo_own_code_passes():
    code, text = run([REPO / "opsux", REPO / "tests"])
    assert code == 0, text
    assert text.startswith("catalog check OK:") and len(text.strip().splitlines()) == 1


def test_unregistered_type_fails_naming_file_and_line(tmp_path):
    f = write(tmp_path, "jobs.py", """\
        def start(ops, t):
            ops.runs.enqueue(t, "inventory.sync")
            ops.runs.enqueue(t, "mailbox.migrate")
    """)
    code, text = run([tmp_path])
    assert code == 1
    assert f"{f}:3: unregistered operation type 'mailbox.migrate'" in text.splitlines()
    assert "inventory.sync" not in text


def test_registering_the_type_makes_it_pass(tmp_path):
    write(tmp_path, "jobs.py", 'enqueue(t, "mailbox.migrate")\n')
    toml = write(tmp_path, "catalog.toml", '[operations]\n"mailbox.migrate" = "Migrate mailbox"\n')
    assert run([tmp_path / "jobs.py"], catalog_files=[str(toml)])[0] == 0
    assert run([tmp_path / "jobs.py"], catalog=OperationCatalog({"mailbox.migrate": "Migrate mailbox"}))[0] == 0
    assert run([tmp_path / "jobs.py"])[0] == 1


def test_keywords_constants_and_attributes(tmp_path):
    write(tmp_path, "pkg/kinds.py", """\
        from enum import Enum
        EXPORT: str = "report.export"
        class Kind(str, Enum):
            PURGE = "tenant.purge"
    """)
    jobs = write(tmp_path, "pkg/jobs.py", """\
        import kinds
        from kinds import EXPORT, Kind
        LOCAL = "local.type"
        class Names:
            AUDIT = "audit.run"
        def go(svc, t, catalog):
            svc.enqueue(t, type="kw.type")
            svc.enqueue(t, operation_type="kw2.type")
            enqueue(t, LOCAL)
            svc.enqueue(t, Names.AUDIT)
            svc.enqueue(t, kinds.EXPORT)
            svc.enqueue(t, EXPORT)
            svc.enqueue(t, Kind.PURGE)
            svc.enqueue(t, kinds.Kind.PURGE.value)
            catalog.require("req.type")
            OperationCatalog.require("req2.type")
            svc.enqueue(t, f"dyn.{t}")
            other.require("not.a.catalog")
            print("enqueue(t, 'in.a.string')")
    """)
    found = [(p.line, p.type) for p in find_operation_types([tmp_path]) if p.path == str(jobs)]
    assert found == [(7, "kw.type"), (8, "kw2.type"), (9, "local.type"), (10, "audit.run"), (11, "report.export"),
                     (12, "report.export"), (13, "tenant.purge"), (14, "tenant.purge"), (15, "req.type"),
                     (16, "req2.type")]
    assert scan([tmp_path]).unchecked == [(str(jobs), 17)]
    assert all(isinstance(p, Produced) for p in find_operation_types([tmp_path]))


def test_ambiguous_or_reassigned_constants_are_not_guessed(tmp_path):
    f = write(tmp_path, "a.py", 'T = "x.one"\nT = "x.two"\nenqueue(t, T)\n')
    s = scan([f])
    assert s.produced == [] and s.unchecked == [(str(f), 3)]


def test_expected_refusals_and_pragma_are_exempt(tmp_path):
    write(tmp_path, "test_refusal.py", """\
        import pytest
        from fastcore.test import test_fail
        def test_it(ops, t):
            with pytest.raises(ValueError):
                ops.runs.enqueue(t, "nope.one")
            test_fail(lambda: ops.runs.enqueue(t, "nope.two"))
            ops.runs.enqueue(t, "nope.three")  # opsux: allow-unregistered
    """)
    code, text = run([tmp_path])
    assert code == 0, text
    assert find_operation_types([tmp_path]) == []


def test_unparsable_file_is_a_finding_not_a_crash(tmp_path):
    bad = write(tmp_path, "broken.py", "def f(:\n    pass\n")
    write(tmp_path, "nul.py", "")
    (tmp_path / "nul.py").write_bytes(b"x = 1\x00\n")
    code, text = run([tmp_path])
    assert code == 1
    assert f"{bad}:1: cannot parse Python source" in text
    assert "nul.py: cannot parse Python source" in text


def test_directory_walk_skips_venv_build_and_hidden_dirs(tmp_path):
    for d in (".venv", "build", ".hidden", "__pycache__"):
        write(tmp_path, f"{d}/x.py", 'enqueue(t, "skipped.type")\n')
    write(tmp_path, "src/data.txt", 'enqueue(t, "not.python")\n')
    kept = write(tmp_path, "src/ok.py", 'enqueue(t, "kept.type")\n')
    assert find_operation_types([tmp_path]) == [Produced(str(kept), 1, "kept.type")]


def test_missing_path_and_no_paths_fail(tmp_path):
    code, text = run([tmp_path / "missing"])
    assert code == 1 and "no such file or directory" in text
    assert check_command([], out=io.StringIO()) == 1


def test_bad_catalog_file_fails_cleanly(tmp_path):
    write(tmp_path, "a.py", "x = 1\n")
    code, text = run([tmp_path], catalog_files=[str(tmp_path / "nope.toml")])
    assert code == 1 and "cannot load catalog file" in text


def test_cli_entry_point(tmp_path, capsys):
    pytest.importorskip("opsux.cli")
    from opsux.cli import main
    f = write(tmp_path, "jobs.py", 'enqueue(t, "mailbox.migrate")\n')
    try:
        code = main(["catalog", "check", str(f)])
    except SystemExit as e:
        code = e.code
    assert code == 1
    assert f"{f}:1: unregistered operation type 'mailbox.migrate'" in capsys.readouterr().out


def test_queue_enqueue_calls_are_not_types_and_tracked_types_are_checked(tmp_path):
    "Before: `queue.enqueue(func, \"dev-1\")` (RQ's own enqueue) was a finding; `@tracked(ops, \"x\")` was not checked."
    f = write(tmp_path, "tasks.py", """\
        from redis import Redis
        from rq import Queue
        from opsux.rq import tracked
        from reports import render
        queue = Queue(connection=Redis())

        @tracked(ops, "inventory.sync", queue=queue)
        def sync_inventory(r, devices):
            for d in r.iter(devices): pass

        @tracked(ops, "mailbox.migrate", queue=queue)
        def migrate(r, box):
            pass

        def view(tenant):
            queue.enqueue(render, "monthly.report")          # RQ: a function and its argument
            q = queue
            q.enqueue(render, "weekly.report")
            Queue("low").enqueue("reports.render", "daily.report")
            sync_inventory.enqueue(tenant, "laptop-1.contoso")  # a tracked task: job arguments
            ops.runs.enqueue(tenant, "policy.sync")           # the run service: still checked
    """)
    code, text = run([tmp_path])
    assert code == 1, text
    lines = [l for l in text.splitlines() if ": unregistered operation type" in l]
    assert lines == [f"{f}:11: unregistered operation type 'mailbox.migrate'"], text
    assert {p.type for p in find_operation_types([f])} == {"inventory.sync", "mailbox.migrate", "policy.sync"}
