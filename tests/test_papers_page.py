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


def test_the_recurrent_cell_table_holds_all_128_cells_with_their_own_parameter_counts():
    """benchmarks/results/rnn_cell_pydoc.csv (Zoph & Le's recurrent cells on Python's documentation
    text): each of the space's 128 cells once, its parameters as the benchmark's space builds it,
    its reward the inverse of its validation perplexity."""
    import csv
    import json
    import sys

    spec = importlib.util.spec_from_file_location("paper_zoph_le", ROOT / "benchmarks" / "paper_zoph_le.py")
    zl = importlib.util.module_from_spec(spec)
    sys.modules["paper_zoph_le"] = zl  # its dataclasses look their module up there
    sys.path.insert(0, str(ROOT / "benchmarks"))  # it imports its neighbour _search_export
    try:
        spec.loader.exec_module(zl)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    # the vocabulary the table was trained with (pydoc_data.topics differs between Python versions)
    vocab = json.loads((ROOT / "benchmarks" / "results" / "paper_zoph_le.json").read_text())["data"]["vocabulary"]
    space = zl.RnnCellSpace((1, zl.BPTT, vocab), vocab)
    with zl.TABLE.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["arch"] for r in rows) == sorted(str(a) for a in zl.all_cells())
    assert len(rows) == 128
    for r in rows[::11]:
        arch = space.parse(r["arch"])
        assert space.decode(space.encode(arch)) == arch
        assert int(r["params"]) == zl.count(space.build(arch))
        assert abs(float(r["text-val"]) - 1 / float(r["val_ppl"])) < 1e-5
        assert 1 < float(r["val_ppl"]) < vocab  # better than guessing uniformly among the characters


def test_the_zoph_le_prose_says_what_its_results_file_says():
    """The papers page's reading of the recurrent-cell results (no number of its own, only the
    comparisons): each statement checked against benchmarks/results/paper_zoph_le.json."""
    import json

    text = " ".join((ROOT / "docs" / "benchmarks" / "papers.md").read_text().split())
    data = json.loads((ROOT / "benchmarks" / "results" / "paper_zoph_le.json").read_text())
    v, s = data["versus"], data["search"]["summary"]
    cell, lstm, elman = v[data["reinforce_pick"]], v["lstm"], v["elman"]
    assert data["reinforce_pick"] == data["table"]["best"]  # "(the best cell of the table)"
    assert "has a lower test perplexity than the LSTM with about as many parameters" in text
    assert cell["test_ppl"][0] < lstm["test_ppl"][0] and abs(cell["params"] / lstm["params"] - 1) < 0.02
    assert "and a fifth of its spread" in text and round(lstm["test_ppl"][1] / cell["test_ppl"][1]) == 5
    assert "with a third fewer parameters, is better than both" in text
    assert elman["test_ppl"][0] < cell["test_ppl"][0] and round(1 - elman["params"] / lstm["params"], 1) == 0.3
    checkpoints = (8, 16, 32, 64)
    assert "differs by at most 0.006 between them at every point" in text
    assert all(
        abs(s["reinforce"][f"test_ppl_of_pick@{n}"][0] - s["random"][f"test_ppl_of_pick@{n}"][0]) <= 0.006
        for n in checkpoints
    )
    assert "lower for REINFORCE only late (after 32 and 64 of the 128 cells)" in text
    lower = [n for n in checkpoints if s["reinforce"][f"top5_val_ppl@{n}"][0] < s["random"][f"top5_val_ppl@{n}"][0]]
    assert lower == [32, 64]
    assert "finds the five best sooner than either (from 16 cells on)" in text
    ahead = [
        n
        for n in checkpoints
        if s["predictor"][f"top5_val_ppl@{n}"][0] < min(s[c][f"top5_val_ppl@{n}"][0] for c in ("reinforce", "random"))
    ]
    assert ahead == [16, 32, 64]


def test_the_mohandoss_dwivedi_prose_says_what_its_results_file_says():
    """The page's reading of the three seeds, checked against
    benchmarks/results/paper_mohandoss_dwivedi.json."""
    import json

    text = " ".join((ROOT / "docs" / "benchmarks" / "papers.md").read_text().split())
    runs = json.loads((ROOT / "benchmarks" / "results" / "paper_mohandoss_dwivedi.json").read_text())["runs"]
    assert len(runs) == 3
    smaller = [r for r in runs if r["params_change"] < 0]
    same = [r for r in runs if r["rows"][0]["architecture"] == r["rows"][1]["architecture"]]
    assert "In two of the three seeds the penalised reward chose a smaller network" in text
    assert len(smaller) == 2 and len(same) == 1
    assert "(a quarter and two fifths fewer parameters)" in text
    assert [round(-4 * smaller[0]["params_change"]), round(-5 * smaller[1]["params_change"])] == [1, 2]
    assert "(three fifths and five sixths fewer FLOPs) and is faster under `cpu-arm`" in text
    assert [round(-5 * smaller[0]["flops_change"]), round(-6 * smaller[1]["flops_change"])] == [3, 5]
    assert all(r["rows"][1]["latency_ms_cpu_arm"] < r["rows"][0]["latency_ms_cpu_arm"] for r in smaller)
    assert "The accuracy it cost (3 to 6 points)" in text
    assert [round(-r["test_points"]) for r in smaller] == [3, 6]
    acc2 = next(r for r in runs if r["seed"] == 2)["rows"][0]
    assert "(237k parameters, 68.4 % against their 240k and 72.5 %)" in text
    assert (round(acc2["params"] / 1000), round(100 * acc2["test_accuracy"], 1)) == (237, 68.4)
