__version__ = "0.1.0"
"""opsux: background operations made visible and trustworthy.

The rules (`opsux.catalog`, `opsux.status`, `opsux.summary`, `opsux.failures`,
`opsux.urls`, `opsux.presenter`) import nothing from storage or views, so
`import opsux` stays cheap; `opsux.connect` loads the storage layer on first use.
"""

def connect(url=None, read_only=False, **kwargs):
    "Open an opsux database (embedded SQLite by default) and return its `Ops` handle."
    from .db import connect as _connect
    return _connect(url, read_only=read_only, **kwargs)
