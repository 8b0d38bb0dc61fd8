__version__ = "0.1.0"
"""opsux: background operations made visible and trustworthy.

The package is three layers and tools, and imports point downward only (tests/test_layers.py):
`opsux.rules` (pure rules, no I/O) ← `opsux.store` (database, service, viewer, events) ← `opsux.ui` (the
dashboard) ← tools (`opsux.cli`, `opsux.guard`, `opsux.demo`, the queue integrations).

The SPEC's public rule modules keep their short names: `opsux.catalog` *is* `opsux.rules.catalog` (the same
module object), and so on. `opsux.connect` loads the storage layer on first use.
"""
import importlib as _importlib, sys as _sys

PUBLIC_MODULES = {name: f"rules.{name}" for name in ("catalog", "status", "summary", "failures", "urls", "presenter")}
for _short, _real in PUBLIC_MODULES.items():
    _sys.modules[f"{__name__}.{_short}"] = globals()[_short] = _importlib.import_module(f".{_real}", __name__)

def connect(url=None, read_only=False, **kwargs):
    "Open an opsux database (embedded SQLite by default) and return its `Ops` handle."
    from .store.ops import connect as _connect
    return _connect(url, read_only=read_only, **kwargs)
