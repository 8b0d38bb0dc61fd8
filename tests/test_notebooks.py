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
NOTEBOOKS = sorted(p for p in NBS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(NBS)) for p in NOTEBOOKS])
def test_notebook_runs_all_cells_in_a_real_kernel(path, tmp_path, monkeypatch):
    monkeypatch.setenv("OPSUX_HOME", str(tmp_path))          # the embedded database of examples lands here
    monkeypatch.delenv("OPSUX_DATABASE_URL", raising=False)   # as on a newcomer's machine
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()                                          # raises CellExecutionError with the cell and traceback
