"""Every notebook runs top to bottom in a fresh Jupyter kernel ("Run All"), not only under nbdev_test.

nbdev_test skips `#| notest` cells and runs cells in its own shell; a newcomer opens the notebook in Jupyter, where
every cell runs in a real IPython kernel: `SystemExit`, a cell that needs a server the newcomer does not have, or a
thread that keeps the kernel busy shows up only here.
"""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NBS = Path(__file__).resolve().parents[1] / "nbs"
THREADS_LEFT = """
import threading as _t, time as _time
_end = _time.monotonic() + 5   # a thread that is stopping gets a moment to finish
while _time.monotonic() < _end and [t for t in _t.enumerate() if t.name.startswith("opsux-")]: _time.sleep(0.05)
_left = sorted(t.name for t in _t.enumerate() if t.name.startswith("opsux-"))
assert not _left, f"threads left running after the notebook: {_left}"
"""
NOTEBOOKS = sorted(p for p in NBS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(NBS)) for p in NOTEBOOKS])
def test_notebook_runs_all_cells_in_a_real_kernel(path, tmp_path, monkeypatch):
    monkeypatch.setenv("OPSUX_HOME", str(tmp_path))          # the embedded database of examples lands here
    monkeypatch.delenv("OPSUX_DATABASE_URL", raising=False)   # as on a newcomer's machine
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(THREADS_LEFT))  # what "Run All" leaves running, asked in the same kernel
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()                                          # raises CellExecutionError with the cell and traceback
