"""The chapters stay readable the way fastcore's are: short code cells (one function or patched method each,
followed by its example), and `#| notest` only where an example needs what a notebook run cannot have."""
import json, re, statistics
from pathlib import Path

import pytest

NBS = Path(__file__).resolve().parents[1] / "nbs"
NOTEBOOKS = sorted(p for p in NBS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
LONGEST, MEDIAN = 40, 5


def code_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"]
            if c["cell_type"] == "code"]


def lines(source: str) -> int: return len(source.strip("\n").splitlines())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(NBS)) for p in NOTEBOOKS])
def test_no_code_cell_is_longer_than_40_lines(path):
    long = [(lines(s), s.strip().splitlines()[1 if s.startswith("#|") else 0][:60])
            for s in code_cells(path) if lines(s) > LONGEST]
    assert not long, f"split these cells (one function or patched method per cell): {long}"


def test_the_median_code_cell_is_at_most_5_lines():
    sizes = [lines(s) for p in NOTEBOOKS for s in code_cells(p)]
    assert statistics.median(sizes) <= MEDIAN, statistics.median(sizes)


def test_notest_cells_say_why_in_the_markdown_before_them():
    "A `#| notest` example needs PostgreSQL, a browser or a server; the prose before it says which."
    unexplained = []
    for p in NOTEBOOKS:
        cells = json.loads(p.read_text(encoding="utf-8"))["cells"]
        for i, c in enumerate(cells):
            if c["cell_type"] == "code" and re.search(r"^#\|\s*notest", "".join(c["source"]), re.M):
                prose = " ".join("".join(x["source"]) for x in cells[max(0, i - 3):i] if x["cell_type"] == "markdown")
                if not re.search(r"PostgreSQL|browser|Chromium|server|Redis", prose):
                    unexplained.append(f"{p.relative_to(NBS)} cell {i}")
    assert not unexplained, unexplained
