"""docs/benchmarks/papers.md quotes the paper reproductions' numbers from their results files: every table
between `<!-- results:NAME -->` markers is rendered again from benchmarks/results/ and must be
what the page holds (a re-run benchmark whose numbers did not reach the page, or a number edited
by hand, fails here). Rerender with `python benchmarks/papers_page.py`."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def page_module():
    spec = importlib.util.spec_from_file_location("papers_page", ROOT / "benchmarks" / "papers_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_table_on_the_page_is_rendered_from_its_results_file(page_module):
    text = page_module.PAGE.read_text()
    tables = page_module.blocks(text)
    assert set(tables) == set(page_module.TABLES)  # no table left out, none unknown
    for name, body in tables.items():
        assert body.strip(), f"table {name} is empty: run python benchmarks/papers_page.py"
        assert body == page_module.TABLES[name](), (
            f"docs/benchmarks/papers.md's table {name} differs from its results file"
        )


def test_the_renderer_notices_an_edited_number(page_module):
    text = page_module.PAGE.read_text()
    body = page_module.blocks(text)["xu-nb201"]
    edited = text.replace(body, body.replace("±", "+-", 1))
    assert page_module.blocks(edited)["xu-nb201"] != page_module.TABLES["xu-nb201"]()
    assert page_module.render(edited) == page_module.render(text)  # rendering restores it


def test_the_cell_table_holds_all_64_cells_with_their_own_parameter_counts():
    """benchmarks/results/cell_small_digits.csv: each of the 64 cells once, its parameters as
    the space builds it (the table was written from real trainings, not typed)."""
    import csv

    from edgenas.spaces.cells import CellSmallSpace

    space = CellSmallSpace((1, 8, 8), 10)
    with (ROOT / "benchmarks" / "results" / "cell_small_digits.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len({r["arch"] for r in rows}) == 64
    for r in rows[::9]:
        model = space.build(space.parse(r["arch"]))
        assert int(float(r["params"])) == sum(p.numel() for p in model.parameters())
        assert 0 < float(r["digits-val"]) <= 100 and 0 < float(r["digits-test"]) <= 100
