"""The tree shows the architecture: rules ← store ← ui ← tools, imports point downward only, and no module imports
another that (directly or through others) imports it back — deferred imports inside functions included."""
import ast, importlib, pkgutil
from pathlib import Path

import pytest

import opsux

PKG = Path(opsux.__file__).parent
LAYERS = {"rules": 0, "store": 1, "ui": 2}      # anything else in opsux/ is a tool (cli, guard, demo, integrations)
TOOL = 3
IO_PACKAGES = {"sqlalchemy", "panel", "param", "bokeh", "tornado", "psycopg", "alembic", "argon2"}


def modules() -> dict[str, Path]:
    "Every module of the package (dotted name → file), migrations excluded (Alembic loads those by path)."
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG.parent).with_suffix("")
        if "migrations" in rel.parts: continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = p
    return out


def layer(name: str) -> int:
    parts = name.split(".")
    return LAYERS.get(parts[1], TOOL) if len(parts) > 1 else TOOL


def imports(name: str, path: Path) -> set[str]:
    "Every module named by an import statement anywhere in the file (absolute names; relative ones resolved)."
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import): found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}     # `from opsux.store import ops` names a module
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    alias = {f"opsux.{k}": f"opsux.{v}" for k, v in opsux.PUBLIC_MODULES.items()}
    return {m: {alias.get(i, i) for i in imports(m, p)} & (set(mods) | set(alias.values())) - {m}
            for m, p in mods.items()}


TOOLS = {"opsux.cli", "opsux.guard", "opsux.demo", "opsux.celery", "opsux.rq", "opsux._modidx"}

def test_every_module_is_in_a_layer_folder_or_a_tool():
    flat = sorted(m for m in modules() if layer(m) == TOOL and m != "opsux")
    assert set(flat) <= TOOLS, f"put {sorted(set(flat) - TOOLS)} in rules/, store/ or ui/ (or name it a tool here)"


def test_imports_point_downward_only():
    upward = [f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
              for m, targets in graph().items() for t in sorted(targets) if layer(t) > layer(m)]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    g = graph()
    cycles, state = [], {}
    def visit(m, stack):
        state[m] = "open"
        for t in sorted(g.get(m, ())):
            if state.get(t) == "open": cycles.append(" → ".join(stack[stack.index(t):] + [t]))
            elif t not in state: visit(t, stack + [t])
        state[m] = "done"
    for m in sorted(g):
        if m not in state: visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_rules_do_no_io():
    mods = modules()
    bad = [f"{m} imports {i}" for m, p in mods.items() if layer(m) == 0
           for i in sorted(imports(m, p)) if i.split(".")[0] in IO_PACKAGES]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("short", sorted(opsux.PUBLIC_MODULES))
def test_public_module_names_of_the_spec_still_import(short):
    "`from opsux.catalog import …` and friends keep working: the short name is the very module of the rules layer."
    mod = importlib.import_module(f"opsux.{short}")
    assert mod is importlib.import_module(f"opsux.rules.{short}")
    assert getattr(opsux, short) is mod


def test_every_module_imports():
    for m in sorted(modules()):
        importlib.import_module(m)
    names = {n for _, n, _ in pkgutil.walk_packages([str(PKG)], "opsux.") if ".migrations" not in n}
    assert names <= set(modules()) | {"opsux"}
