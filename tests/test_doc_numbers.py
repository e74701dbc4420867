"""Every measured number the documentation (README and docs/) states is owned by a results file,
a shipped file or a test.

The pages quote benchmark results (`benchmarks/results/*`, each written by the benchmark named
in its first line), the shipped calibration (`hardware_profiles/cpu-arm*.calibration.json`), the
shipped profiles and the reference data in ../shared. These tests read the pages' tables (found
by their header, rows by their first cell) and the numbers their prose quotes (`sentence`: the
numbers in order within one paragraph, the words around them free to change), and check each
against its owner, so a re-run benchmark whose results were not carried into the pages, or an
edited number no measurement backs, fails here. Numbers no file here can own (measured on a GPU
machine, hours-long benchmarks) are listed with their owner and date in CONTRIBUTING.md's claims
ledger; `test_every_results_file_is_claimed` keeps that list and the results folder in step.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import statistics
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The README and the documentation pages, read as one text: each number is checked wherever the
# pages state it (the benchmark pages under docs/benchmarks/ hold most of them).
DOC_FILES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
# (CONTRIBUTING.md's claims ledger restates numbers to say who owns them: not where they are quoted)
README = "\n\n".join(p.read_text().split("### The claims ledger")[0] for p in DOC_FILES)
RESULTS = ROOT / "benchmarks" / "results"
PROFILES = ROOT / "hardware_profiles"
PI5_CSV = ROOT.parent / "shared" / "data" / "pi5-onnxruntime-latency-calibration.csv"


def table(header_start: str, after: str | None = None) -> list[dict[str, str]]:
    """The README's markdown table whose header row starts with `header_start`, as dicts: the
    first such table, or the first after the line that starts with `after`."""
    lines = README.splitlines()
    start = 0 if after is None else next(i for i, line in enumerate(lines) if line.startswith(after))
    for i, line in enumerate(lines[start:], start):
        if line.startswith("| " + header_start):
            head = [c.strip() for c in line.strip().strip("|").split("|")]
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                cells = [c.strip() for c in row.strip().strip("|").split("|")]
                rows.append(dict(zip(head, cells, strict=True)))
            return rows
    raise AssertionError(f"no documentation page has a table starting with {header_start!r}")


def rows_named(header_start: str, column: str, names: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """The table's rows as (owner's name, row): `names` maps how the README starts a row's
    `column` to the name the results file gives it."""
    rows = table(header_start)
    assert len(rows) == len(names), rows
    return [(next(v for k, v in names.items() if row[column].startswith(k)), row) for row in rows]


def _first_number(text: str) -> re.Match[str]:
    m = re.search(r"-?\d[\d,]*(?:\.(\d+))?", text.replace("**", ""))
    assert m, f"no number in {text!r}"
    return m


def num(text: str) -> float:
    """The first number in a cell: bold, thousands separators, '~' and units stripped."""
    return float(_first_number(text).group(0).replace(",", ""))


def shown(text: str, value: float) -> bool:
    """The README cell shows `value` to the decimals it prints."""
    return num(text) == round(value, len(_first_number(text).group(1) or ""))


NUMBER = re.compile(r"(?<![A-Za-z\d.,])\d[\d,]*(?:\.\d+)?")  # not a name's digit (MobileNetV2)


def _numbers(text: str) -> list[str]:
    return [n.rstrip(",") for n in NUMBER.findall(text.replace("**", ""))]


def sentence(pattern: str) -> None:
    """The numbers `pattern` quotes (its literal numbers, formatted as the pages print them), in
    that order, within one paragraph of the pages: each number is owned by what the test computes
    it from, the words around it are free to change. A pattern with no number is matched as a
    whitespace-insensitive regex (a dot between digits is a decimal point, not "any character")."""
    literal = re.sub(r"\\[a-zA-Z]|\(\?<?[!=][^)]*\)|\[[^\]]*\]|\{\d+(,\d*)?\}", " ", pattern)
    wanted = _numbers(literal.replace("\\", ""))
    paragraphs = [p for p in re.split(r"\n\s*\n", README) if p.strip()]  # README may be patched by a test
    if not wanted:
        regex = re.sub(r"(?<=\d)\.(?=\d)", r"\\.", pattern).replace(" ", r"\s+")
        assert re.search(regex, README), f"the documentation no longer says {pattern!r}"
        return
    for paragraph in paragraphs:
        found = iter(_numbers(paragraph))
        if all(any(n == f for f in found) for n in wanted):  # a subsequence, in order
            return
    raise AssertionError(f"no paragraph of the documentation quotes {wanted} in this order (from {pattern!r})")


def results_text(name: str) -> str:
    return (RESULTS / name).read_text()


# --- real photos: benchmarks/cifar_quality.py -> benchmarks/results/cifar_quality.json ---------------


def test_cifar_quality_table_is_the_results_file():
    res = json.loads(results_text("cifar_quality.json"))
    names = {"MobileNetV2-style": "MobileNetV2-style", "edgenas winner": "edgenas winner"}
    names |= {"ResNet-8": "ResNet-8 (MLPerf Tiny)", "VGG-style": "VGG-style 4-layer"}
    assert set(names.values()) == set(res["rows"])
    for key, row in rows_named("network | test % |", "network", names):
        r = res["rows"][key]
        assert num(row["test %"]) == pytest.approx(100 * r["test_accuracy"], abs=0.005), key
        assert num(row["int8 test %"]) == pytest.approx(100 * r["int8_test_accuracy"], abs=0.005), key
        assert num(row["params"]) == r["params"], key
        assert num(row["MACs"]) == pytest.approx(r["macs"] / 1e6, abs=0.05), key
        assert num(row["cpu-arm ms"]) == pytest.approx(r["latency_ms"], abs=0.005), key
        assert row["cpu-arm ms"].startswith("~") == r["latency_outside_fit"], key
        assert num(row["int8 KiB"]) == round(r["int8_bytes"] / 1024), key
        assert num(row["CPU min"]) == round(r["cpu_minutes"]), key
    ds = res["dataset"]
    sentence(
        rf"a stratified {ds['max_images']:,}-image subset: {ds['train']:,} train / {ds['val']:,} val / "
        rf"{ds['test']:,} test"
    )
    win = res["rows"]["edgenas winner"]
    sentence(rf"{win['counts']['trained'] + win['counts']['rejected']} sampled, {win['counts']['trained']} trained")
    sentence(rf"{round(win['search_seconds']):,} s of search command wall time")
    best_ref = max((r for r in res["rows"].values() if r["kind"] == "reference"), key=lambda r: r["test_accuracy"])
    gap = 100 * (best_ref["test_accuracy"] - win["test_accuracy"])
    sentence(rf"\({gap:.1f} points below it")
    rows = res["rows"]
    resnet, vgg, mnv2 = rows["ResNet-8 (MLPerf Tiny)"], rows["VGG-style 4-layer"], rows["MobileNetV2-style"]
    ahead = [100 * (win["test_accuracy"] - r["test_accuracy"]) for r in (resnet, vgg)]
    sentence(rf"beats ResNet-8 by {ahead[0]:.1f} points and the VGG-style network by {ahead[1]:.1f}")
    fewer = round(100 * (1 - win["params"] / mnv2["params"]))
    less = round(100 * (1 - win["latency_ms"] / mnv2["latency_ms"]))
    sentence(rf"with {fewer} % fewer parameters and {less} % less latency")
    pct = [f"{100 * r['test_accuracy']:.1f}" for r in (mnv2, resnet, vgg)]
    sentence(
        rf"point of this space reached {pct[0]} % test where ResNet-8 reached {pct[1]} % and the layer-wise space's VGG-style network {pct[2]} %"
    )


# --- ranking on photos: benchmarks/supernet_ranking.py -> benchmarks/results/supernet_ranking_cifar5k.json ---


def test_the_photos_ranking_table_is_the_results_file():
    res = json.loads(results_text("supernet_ranking_cifar5k.json"))
    assert res["networks"] == 30 and res["standalone_epochs"] == 18
    taus = {f"rule {rule}": r["kendall_tau_inherited"] for rule, r in res["rules"].items()}
    taus |= {k: res[k] for k in ("kendall_tau_epoch_1", "kendall_tau_epoch_2", "kendall_tau_params")}
    names = {
        "inherited weights, sandwich rule": "rule sandwich",
        "inherited weights, progressive shrinking": "rule progressive",
        "1-epoch score": "kendall_tau_epoch_1",
        "2-epoch score": "kendall_tau_epoch_2",
        "parameter count": "kendall_tau_params",
    }
    zero = json.loads(results_text("zero_cost_ranking_cifar5k.json"))
    assert zero["ranking"].endswith("supernet_ranking_cifar5k.json") and zero["networks"] == res["networks"]
    taus |= {f"zero-cost {k}": v for k, v in zero["kendall_tau"].items()}
    names |= {"synflow at initialisation": "zero-cost synflow", "NASWOT at initialisation": "zero-cost naswot"}
    names = {k: v for k, v in names.items() if v in taus}  # the progressive row where that supernet was ranked
    for key, row in rows_named("cheap score | Kendall tau", "cheap score", names):
        assert shown(row["Kendall tau"], taus[key]), key
    by_epoch = [f"{res['kendall_tau_by_epoch'][e - 1]:.2f}" for e in (6, 9, 12)]
    sentence(rf"after epoch 6, 9 and 12 of the 18 .* ranks them at {by_epoch[0]}, {by_epoch[1]} and {by_epoch[2]}")
    if "progressive" in res["rules"]:
        pr, sw = res["rules"]["progressive"], res["rules"]["sandwich"]
        mean = [f"{100 * sum(r['inherited']) / len(r['inherited']):.1f}" for r in (pr, sw)]
        sentence(
            rf"ranks them at {pr['kendall_tau_inherited']:.2f} against the sandwich rule's "
            rf"{sw['kendall_tau_inherited']:.2f} .* \({mean[0]} % on average against {mean[1]} %"
        )
    z = {k: f"{v:.2f}" for k, v in zero["kendall_tau"].items()}
    sentence(rf"synflow {z['synflow']}, NASWOT {z['naswot']}, SNIP {z['snip']}, gradient norm {z['grad_norm']}")
    sentence(rf"{round(zero['cpu_seconds'])} s for the four zero-cost scores")
    # the limitations page quotes the sandwich supernet's and the parameter count's tau
    sentence(
        rf"Kendall's tau {res['kendall_tau_inherited']:.2f} on 5,000 CIFAR-10 photos .* count \({res['kendall_tau_params']:.2f}\)"
    )


def test_the_plain_command_seeds_are_their_results_file():
    """The photos page's table of the plain command's search seeds restates cifar_quality_plain.json."""
    res = json.loads(results_text("cifar_quality_plain.json"))
    refs = json.loads(results_text("cifar_quality.json"))["rows"]
    mnv2 = res["rows"]["MobileNetV2-style"]
    assert mnv2["test_accuracy"] == refs["MobileNetV2-style"]["test_accuracy"]  # the same reference rows
    searches = {name: r for name, r in res["rows"].items() if r["kind"] == "search"}
    seeds = {str(r["seed"]): name for name, r in searches.items() if r["path"] == "plain"}
    earlier = {  # seed 0 as first run, before the templates scaled up (a label "0, before ..." starts with "0")
        f"{r['seed']}, before": name for name, r in searches.items() if r["path"] == "plain, templates scaled down only"
    }
    finalists = [name for name, r in searches.items() if r["path"] == "plain, with finalists"]
    assert sorted(seeds) == ["0", "1", "2"] and list(earlier) == ["0, before"] and len(finalists) == 1
    assert len(searches) == 5
    for key, row in rows_named("search seed | trained in 60 min", "search seed", earlier | seeds):
        r = res["rows"][key]
        assert num(row["trained in 60 min"]) == r["counts"]["trained"], key
        assert num(row["params"]) == r["params"], key
        assert num(row["cpu-arm ms"]) == pytest.approx(r["latency_ms"], abs=0.005), key
        assert num(row["test %"]) == pytest.approx(100 * r["test_accuracy"], abs=0.005), key
        assert num(row["int8 test %"]) == pytest.approx(100 * r["int8_test_accuracy"], abs=0.005), key
        assert num(row["CPU min"]) == round(r["cpu_minutes"]), key
    first = res["rows"][earlier["0, before"]]
    sentence(rf"trained {first['counts']['trained']} children in 60 minutes and came level with it")  # limitations
    (template,) = [r for r in res["replicates"].values() if r["params"] == 75_938]  # MCUNet-like, unchanged
    sentence(
        rf"The MCUNet-like template itself, trained the same way .* scores {100 * template['test_accuracy']:.2f} %"
    )
    for s in ("0", "1", "2"):  # run with the templates scaled up to the limits
        r = res["rows"][seeds[s]]
        gap = 100 * (r["test_accuracy"] - mnv2["test_accuracy"])
        sentence(
            rf"{100 * r['test_accuracy']:.2f} %,? (exported, )?{abs(gap):.2f} points {'above' if gap > 0 else 'below'} "
            rf"the reference with {r['params'] / mnv2['params']:.2f}x its parameters and "
            rf"{r['latency_ratio_to_mobilenetv2']:.2f}x its latency"
        )
    tests = [100 * res["rows"][n]["test_accuracy"] for n in seeds.values()]
    sentence(
        rf"Over the three seeds: .*{statistics.mean(tests):.2f} % ± {statistics.stdev(tests):.2f}.* test "
        rf"\({min(tests):.2f}-{max(tests):.2f}\)"
    )
    fin = res["rows"][finalists[0]]  # the photos setup with --finalists 1
    (child, template) = fin["finalists"]
    sentence(
        rf"{fin['counts']['trained']} children trained in {round(fin['search_seconds']):,} s.* "
        rf"{child['params']:,} params\) scored {100 * child['val_accuracy_12_epochs']:.2f} % validation against the "
        rf"{template['template']} template's {100 * template['val_accuracy_12_epochs']:.2f} %; trained for 24 epochs "
        rf"they scored {100 * child['val_accuracy_24_epochs']:.2f} % and {100 * template['val_accuracy_24_epochs']:.2f} %"
    )
    assert fin["architecture"] == template["architecture"]  # the answer is the template
    sentence(
        rf"Exported: \*\*{100 * fin['test_accuracy']:.2f} %\*\* test \(int8 {100 * fin['int8_test_accuracy']:.2f} %\), "
        rf"{fin['params']:,} params, {round(fin['cpu_minutes'])} CPU minutes"
    )
    sentence(rf"the {100 * (fin['test_accuracy'] - mnv2['test_accuracy']):.2f} points over its row")
    (grown,) = [r for r in res["replicates"].values() if r["params"] == 96_634]  # MCUNet-like, depth x1.5
    sentence(rf"which trained the same way scores {100 * grown['test_accuracy']:.2f} %")
    gap = 100 * (mnv2["test_accuracy"] - first["test_accuracy"])
    sentence(
        rf"in {round(first['search_seconds']):,} s; .* scores {abs(gap):.2f} points {'below' if gap > 0 else 'above'} "
        rf"the MobileNetV2-style network \({100 * mnv2['test_accuracy']:.2f} %\) with "
        rf"{first['params'] / mnv2['params']:.2f}x its parameters and "
        rf"{first['latency_ratio_to_mobilenetv2']:.2f}x its latency \({len(first['latency_side_by_side_ms'])} rounds"
    )


# --- Pareto search: benchmarks/pareto_nb201.py -> benchmarks/results/pareto_nb201.txt ------------------


def test_pareto_table_is_the_results_file():
    text = results_text("pareto_nb201.txt")
    first = text.split("\n\n")[0]  # the latest run; older ones follow for the record
    measured = {}
    for line in first.splitlines():
        m = re.match(r"(predictor|optuna-motpe|optuna-nsga2|random)\s+(.*?)\s+([\d.]+) % \(", line)
        if m:
            cells = re.findall(r"[\d.]+ \+- [\d.]+", m.group(2))
            measured[m.group(1)] = ([tuple(map(float, c.split(" +- "))) for c in cells], float(m.group(3)))
    names = {"predictor": "predictor", "Optuna multi-objective TPE": "optuna-motpe"}
    names |= {"Optuna NSGA-II": "optuna-nsga2", "random": "random"}
    for key, row in rows_named("strategy | HV at 50", "strategy", names):
        hv, share = measured[key]
        for col, (mean, sd) in zip(("HV at 50", "HV at 100", "HV at 200"), hv, strict=True):
            assert num(row[col]) == mean and row[col].replace("**", "").endswith(f"+- {sd:.4f}"), (key, col)
        assert num(row["true front found at 200"]) == share, key
    front_hv = re.search(r"hypervolume ([\d.]+)", first).group(1)
    sentence(rf"the table's own front scores {front_hv}")
    sentence(r"50 repetitions, one run, " + str(round(num(re.search(r"wall (\d+) s", first).group(1)) / 60)))


# --- microcontroller memory: benchmarks/tflite_memory.py -> benchmarks/results/tflite_memory.txt ------


def test_tflite_memory_claims_are_the_results_file():
    rows = []
    for line in results_text("tflite_memory.txt").splitlines():
        m = re.match(r"(.+?)\s+([\d,]+) \|\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+) \|.*\|.*\s([\d.]+)$", line)
        if m:
            rows.append((m.group(1).strip(), *(int(g.replace(",", "")) for g in m.group(2, 3, 4, 5)),
                         float(m.group(6)), float(m.group(7))))  # fmt: skip
    assert len(rows) == 20
    equal = [r for r in rows if r[2] == r[4]]
    below = [r for r in rows if r[2] < r[4]]
    worst = max(1 - r[2] / r[4] for r in below)
    sentence(rf"On {len(rows)} networks of every space")
    sentence(
        rf"equals TFLite Micro's planned activations on {len(equal)} and is at most {round(100 * worst)} % below on {len(below)}"
    )
    resnet = next(r for r in rows if r[0].startswith("ResNet-8"))
    sentence(rf"ResNet-8: {resnet[2]:,} vs {resnet[4]:,} bytes")
    flash = [r[6] for r in rows]
    sentence(rf"the flash estimate is {min(flash):.2f}-{max(flash):.2f} of the `.tflite` file")
    mnv2 = next(r for r in rows if r[0].startswith("torchvision MNv2"))
    sentence(rf"gives {mnv2[2]:,} bytes int8 peak")
    sentence(rf"TFLite Micro plans exactly {mnv2[4]:,}")


# --- the Pi 5 predictor: the shipped calibration files and the reference data -------------------------


def _cal(name: str) -> dict:
    return json.loads((PROFILES / name).read_text())


def test_calibration_table_is_the_shipped_calibration():
    graph, host = _cal("cpu-arm.calibration.json"), _cal("cpu-arm.host-calibration.json")
    rows = table("model | Spearman")
    by = {r["model"].split(" (")[0]: r for r in rows}
    for name, cv in (
        ("host x one factor", graph["baseline_cv"]),
        ("graph only", graph["cv"]),
        ("host timing + graph", host["cv"]),
    ):
        r = by[name]
        assert shown(r["Spearman"], cv["spearman"]), name
        assert shown(r["MAPE"], cv["mape_pct"]), name
        assert shown(r["within 10 %"], 100 * cv["within_10pct"]), name
        assert shown(r["within 5 %"], 100 * cv["within_5pct"]), name
    # the profile table quotes the same figures, and the best single factor
    arm = next(r for r in table("profile | the latency it reports") if r["profile"] == "`cpu-arm` (default)")
    assert f"Spearman {graph['cv']['spearman']:.4f}, MAPE {graph['cv']['mape_pct']:.2f} %" in arm["accuracy, measured"]
    host_row = next(r for r in table("profile | the latency it reports") if r["profile"] == "`cpu-arm-host`")
    assert f"(x {host['baseline_scale']:.2f} here)" in host_row["accuracy, measured"]
    assert f"{graph['baseline_cv']['mape_pct']:.2f} % MAPE" in host_row["accuracy, measured"]


def test_calibration_weights_and_range_are_the_shipped_ones():
    cal = _cal("cpu-arm.calibration.json")  # weights in ms per unit of each feature
    w = dict(zip(cal["features"], cal["weights"], strict=True))
    sentence(rf"{w['conv1x1_macs'] * 1e6:.3f} ns per 1x1 MAC, {w['conv3x3_macs'] * 1e6:.3f} ns per 3x3 MAC")
    sentence(rf"{w['pool_elements'] * 1e6:.1f} ns per pooled element")
    sentence(rf"{w['act_elements'] * 1e6:.2f} / {w['eltwise_elements'] * 1e6:.2f} ns per activation / elementwise")
    sentence(rf"{w['other_count'] * 1e3:.2f} us per \"other\" node")
    lo, hi = cal["device_ms_range"]
    sentence(rf"fastest \({lo:.2f} ms\) or slowest \({hi:.1f} ms\) Pi 5 network")
    assert cal["pairs"] == len(_pi5_rows())
    sentence(rf"\({cal['pairs']:,} Pi 5 networks")


def _pi5_rows() -> list[dict[str, str]]:
    if not PI5_CSV.exists():
        pytest.skip("../shared/data is not beside this checkout")
    with PI5_CSV.open() as f:
        return list(csv.DictReader(f))


def test_pi5_range_is_the_reference_data():
    rows = _pi5_rows()
    ms = [float(r["lat_ms_median"]) for r in rows]
    assert _cal("cpu-arm.calibration.json")["device_ms_range"] == [min(ms), max(ms)]


# --- facts of the code the README states as numbers --------------------------------------------------


def test_nb201_cell_and_key_counts():
    from edgenas.spaces.nb201 import OPS, NB201Arch

    cells = list(itertools.product(OPS, repeat=6))
    keys = {NB201Arch(ops).key() for ops in cells}
    sentence(rf"{len(cells):,} cells, {len(keys):,} keys")


def test_mnas_default_and_what_twice_the_target_costs():
    from edgenas.reward import RewardConfig

    w = RewardConfig().mnas_weight
    sentence(rf"`--mnas-weight`, {w} by default: twice the target costs about {round(100 * (1 - 2**w))} %")


def test_default_pipeline_and_calibration_counts():
    from edgenas import evaluate
    from edgenas.settings.pipeline import ExportSettings

    pipe = tomllib.loads((ROOT / "pipelines" / "default.toml").read_text())
    sentence(rf"no download; {pipe['search']['children']} children trained")
    n_export = ExportSettings().calibration_images
    sentence(rf"calibrated on {n_export} training images")
    sentence(
        rf"calibrated on {evaluate.INT8_CALIBRATION_IMAGES} training images, the implementation `export --int8` uses"
    )


def test_microcontroller_profile_limits():
    def kb(name: str, key: str) -> int:
        return tomllib.loads((PROFILES / f"{name}.toml").read_text())[key] // 1024

    f746, nrf = "stm32f746", "nrf52840"
    sentence(rf"`{f746}` \({kb(f746, 'max_peak_ram_bytes')} KB SRAM, {kb(f746, 'max_flash_bytes') // 1024} MB flash\)")
    sentence(rf"`{nrf}` \({kb(nrf, 'max_peak_ram_bytes')} KB, {kb(nrf, 'max_flash_bytes') // 1024} MB\)")
    sentence(
        rf"the {kb('stm32h743', 'max_peak_ram_bytes')} KB AXI SRAM; {kb('stm32h743', 'max_flash_bytes') // 1024} MB flash"
    )
    sentence(
        rf"`esp32-s3` \({kb('esp32-s3', 'max_peak_ram_bytes')} KB SRAM, {kb('esp32-s3', 'max_flash_bytes') // 1024} MB flash"
    )
    for name in ("stm32f746", "stm32h743", "nrf52840", "esp32-s3"):
        p = tomllib.loads((PROFILES / f"{name}.toml").read_text())
        sentence(
            rf"keep {p['ram_headroom_bytes'] // 1024} KiB of RAM and {p['flash_headroom_bytes'] // 1024} KiB of flash"
        )
    m7 = tomllib.loads((PROFILES / "mcu-m7.toml").read_text())
    sentence(rf"at most {m7['max_params']:,} parameters and {m7['max_model_bytes']:,} model bytes")


# --- the default search and its bundle: benchmarks/default_search.py -------------------------------


def test_default_search_numbers_are_the_results_file():
    text = results_text("default_search.txt")
    m = re.search(r"command wall (\d+) s \(search loop (\d+) s\); (\d+) sampled, (\d+) trained", text)
    wall, loop, _, trained = map(int, m.groups())
    params, test = re.search(r"winner ([\d,]+) params, val [\d.]+ %, test ([\d.]+) %", text).groups()
    sentence(
        rf"re-measured by `python benchmarks/default_search.py( --export)?`: {wall} s for the whole command, {loop} s of search"
    )
    sentence(rf"{trained} children trained, about {wall / 60:.1f} minutes on an idle 2-core CPU")
    sentence(rf"winner {params} parameters at {test} % test accuracy")
    ratio = float(re.search(r"int8 / fp32: size 1/([\d.]+)", text).group(1))
    sentence(rf"the int8 model was {ratio:.1f}x smaller than fp32")


# --- timing benchmarks on this build machine --------------------------------------------------------


def test_train_throughput_row_is_the_results_file():
    text = results_text("train_throughput.txt")
    ratios = re.findall(r"(torchvision ImageFolder|DataLoader\(TensorDataset\)):.*edgenas / this = ([\d.]+)x", text)
    assert len(ratios) == 4, text
    folder = [float(r) for k, r in ratios if k.startswith("torchvision")]
    tensor = [float(r) for k, r in ratios if k.startswith("DataLoader")]
    row = next(r for r in table("benchmark | result") if "train_throughput.py" in r["benchmark"])
    assert f"**{folder[0]:.2f}x** (" in row["result"] and f"**{folder[1]:.2f}x** (" in row["result"]
    assert f"{tensor[0]:.2f}x and {tensor[1]:.2f}x" in row["result"]


def test_scaling_row_is_the_results_file():
    text = results_text("scaling.txt")
    per_hour = dict(re.findall(r"^\s*(local|process1|process2|ray)\s+[\d.]+\s+(\d+)\s", text, re.M))
    assert len(per_hour) == 4, text
    row = next(r for r in table("benchmark | result") if "scaling.py --children 32" in r["benchmark"])
    for name, label in (
        ("local", "local "),
        ("process1", "1 worker "),
        ("process2", "2 workers "),
        ("ray", "at once "),
    ):
        assert f"{label}{int(per_hour[name]):,}" in row["result"].replace("**", ""), name


def test_a_decimal_point_is_not_a_wildcard(monkeypatch):
    monkeypatch.setattr(f"{__name__}.README", "MAPE 0x55 %")
    with pytest.raises(AssertionError):
        sentence(r"MAPE 0.55 %")
    monkeypatch.setattr(f"{__name__}.README", "MAPE 0.55 %")
    sentence(r"MAPE 0.55 %")


def test_quoted_numbers_are_checked_not_the_words_around_them(monkeypatch):
    """Rewording a sentence keeps the test passing; a changed or reordered number fails it."""
    monkeypatch.setattr(f"{__name__}.README", "First para.\n\nThe search took 524 s (513 s searching).\n")
    sentence(r"524 s for the whole command, 513 s of search")
    for wrong in ("525 s for the whole command, 513 s", "513 s of search, 524 s for the whole command"):
        with pytest.raises(AssertionError):
            sentence(wrong)
    with pytest.raises(AssertionError):  # the numbers must share a paragraph
        monkeypatch.setattr(f"{__name__}.README", "took 524 s.\n\nthen 513 s.\n")
        sentence(r"524 s for the whole command, 513 s of search")


@pytest.mark.parametrize(
    "name", ["cifar_quality_attempt_w16.json", "cifar_quality_attempt_tunas.json", "cifar_quality_attempt_head.json"]
)
def test_photos_attempts_are_their_results_files(name):
    """The README's paragraphs on the searches run on the Intel VM restate their results files."""
    res = json.loads(results_text(name))
    win, rungs = res["rows"]["edgenas winner"], res["measured"]["rungs"]
    mnv2 = json.loads(results_text("cifar_quality.json"))["rows"]["MobileNetV2-style"]
    sentence(rf"{win['counts']['trained']} trained, {win['counts']['rejected']} rejected")
    sentence(" / ".join(str(n) for n in rungs["children"]))
    sentence(rf"{res['measured']['search_wall_s_of_search_command']:,} s of search command wall time")
    params_ratio = win["params"] / mnv2["params"]
    latency_ratio = win["latency_ms"] / res["measured"]["reference_latency_ms_here"]
    sentence(
        rf"\*\*{100 * win['test_accuracy']:.2f} % test\*\* \(int8 {100 * win['int8_test_accuracy']:.2f} %\) "
        rf"with {win['params']:,} params \({params_ratio:.2f}x\), {win['macs'] / 1e6:.1f}M MACs, "
        rf"{win['latency_ms']:.2f} ms \({latency_ratio:.2f}x\)"
    )
    gap = 100 * (mnv2["test_accuracy"] - win["test_accuracy"])
    side = "below" if gap > 0 else "above"
    sentence(rf"{abs(gap):.2f} {side} (the MobileNetV2-style network|the MobileNetV2-style)")
    for rep in res.get("replicates", {}).values():  # trained again with another training seed
        sentence(rf"{100 * rep['test_accuracy']:.2f} % with training seed {rep['train_seed']}")


def test_every_results_file_is_claimed():
    """Each results file is cited by the documentation or CONTRIBUTING.md's claims ledger, and each
    ledger row names a file or test that exists."""
    claims = (ROOT / "CONTRIBUTING.md").read_text()
    for f in RESULTS.iterdir():
        if f.suffix == ".tmp":  # a benchmark writing its results right now
            continue
        assert f.name in README or f.name in claims, f"{f.name} is cited nowhere"
    for owner in re.findall(r"`((?:benchmarks|tests)/[\w/]+\.(?:py|txt|json))", claims):
        assert (ROOT / owner).exists(), owner


def test_install_sizes_are_the_results_file():
    text = results_text("install_size.txt")
    torch_gb = float(re.search(r"torch \+ torchvision .*: ([\d.]+) GB", text).group(1))
    extra_gb = float(re.search(r"the tflite extra adds \d+ distributions: ([\d.]+) GB", text).group(1))
    sentence(rf"the CUDA builds, about {torch_gb:.1f} GB")
    sentence(rf"the optional TFLite Micro extra, about {round(extra_gb)} GB")


def test_changelog_restates_current_numbers_as_their_owners_say():
    """Where a CHANGELOG entry restates a current number, it is the owner's number too."""
    log = re.sub(r"\s+", " ", (ROOT / "CHANGELOG.md").read_text())
    cal = _cal("cpu-arm.calibration.json")
    cv, base = cal["cv"], cal["baseline_cv"]
    assert (
        f"fitted on the {cal['pairs']:,} Pi 5 networks; cross-validated, no host timing at all: Spearman "
        f"{cv['spearman']:.4f}, MAPE {cv['mape_pct']:.2f} %, {100 * cv['within_10pct']:.2f} % of predictions within "
        f"+-10 %; host x one factor: {base['spearman']:.4f}, {base['mape_pct']:.2f} %, {100 * base['within_10pct']:.1f} %"
    ) in log
    readme = re.sub(r"\s+", " ", README)
    m = re.search(r"equals TFLite Micro's planned activations on (\d+) and is at most (\d+) % below on (\d+)", readme)
    assert f"RAM equal on {m.group(1)}, at most {m.group(2)} % below on {m.group(3)}" in log
    flash = re.search(r"the flash estimate is ([\d.]+-[\d.]+) of the", readme).group(1)
    assert f"flash {flash}." in log
    res = json.loads(results_text("cifar_quality.json"))["rows"]
    pct = {k: f"{100 * r['test_accuracy']:.1f} %" for k, r in res.items()}
    assert (
        f"reached {pct['MobileNetV2-style']} test against {pct['ResNet-8 (MLPerf Tiny)']} for ResNet-8 and "
        f"{pct['VGG-style 4-layer']} for the layer-wise VGG-style network"
    ) in log


CV_LINE = r"Spearman ([\d.]+)\s+MAPE ([\d.]+) %\s+within 10 %: ([\d.]+) %"  # calibration.py's metrics


def _families() -> dict[str, tuple[float, float, float]]:
    text = results_text("calibration.txt")
    rows = re.findall(r"^\s+(.+?)\s*: " + CV_LINE, text, re.M)
    return {name: (float(s), float(m), float(w)) for name, s, m, w in rows}


def test_model_families_are_the_calibration_benchmark():
    fam = _families()
    assert len(fam) == 4, fam

    def triple(name: str) -> str:
        s, m, w = fam[name]
        return rf"{s:.4f} / {m:.2f} % / {w:.2f} %"

    sentence(rf"non-negative linear \(shipped\) {triple('non-negative linear (shipped)')} within 10 %")
    signed = (
        "the same"
        if fam["signed least squares"] == fam["non-negative linear (shipped)"]
        else triple("signed least squares")
    )
    sentence(rf"signed least squares {signed}")
    sentence(rf"gradient-boosted trees on log latency {triple('boosted trees, log latency')}")
    sentence(rf"the linear model with a boosted residual {triple('linear + boosted residual')}")


def test_the_shipped_graph_only_predictor_is_what_the_benchmark_refits():
    """The graph-only fit needs no host timing: re-running the benchmark gives the shipped model's figures."""
    text = results_text("calibration.txt")
    m = re.search(r"graph only \(any host\)\s*: " + CV_LINE, text)
    cv = _cal("cpu-arm.calibration.json")["cv"]
    assert (float(m.group(1)), float(m.group(2))) == (round(cv["spearman"], 4), round(cv["mape_pct"], 2))
    assert float(m.group(3)) == round(100 * cv["within_10pct"], 1)
    shipped = (round(cv["spearman"], 4), round(cv["mape_pct"], 2), round(100 * cv["within_10pct"], 2))
    assert _families()["non-negative linear (shipped)"] == shipped


def test_the_network_over_ten_percent_is_the_calibration_benchmarks():
    text = results_text("calibration.txt").split("more than 10 % off (out of fold):")[1]
    off = re.findall(r"^\s+(\|\S+\|)\s+measured ([\d.]+) ms, predicted [\d.]+ ms \(([-+][\d.]+) %\)", text, re.M)
    assert len(off) == 1, off  # the README speaks of one network
    cell, ms, err = off[0]
    sentence(rf"The one network over 10 % \({abs(float(err)):.1f} %, `{re.escape(cell)}`, {ms} ms measured\)")


def test_the_calibration_rerun_is_the_results_file():
    text = results_text("calibration.txt")
    rows = dict(re.findall(r"^(baseline host x factor|host timing \+ graph)\s*: (.+)$", text, re.M))
    s, m, w = re.match(CV_LINE, rows["baseline host x factor"]).groups()
    sentence(rf"one-factor baseline Spearman {s}, MAPE {m} %, {w} % within 10 %")
    s, m, _ = re.match(CV_LINE, rows["host timing + graph"]).groups()
    sentence(rf"host timing \+ graph Spearman {s}, MAPE {m} %")


def test_latency_repeatability_prose_is_the_results_file():
    text = results_text("latency_repeatability.txt")
    probes = [
        tuple(float(v) for v in m)
        for m in re.findall(
            r"host probe run2/run1: matmul-64 \(L1\) ([\d.]+), stream 1 MiB ([\d.]+), stream 32 MiB ([\d.]+)", text
        )
    ]
    passed, pairs = map(
        int, re.search(r"pairs with every child above 0.2 ms within \+-2 %: (\d+)/(\d+)", text).groups()
    )
    assert len(probes) == pairs
    moved = sum(max(abs(r - 1) for r in p) > 0.02 for p in probes)
    matmul = max(abs(p[0] - 1) for p in probes)
    stream = max(abs(p[2] - 1) for p in probes)
    sentence(
        rf"the probe itself moved by more than 2 % between two runs a few seconds apart in {moved} of {pairs} pairs "
        rf"\(an L1-resident 64x64 matmul by up to {round(100 * matmul)} %, a 32 MiB streaming sum by up to "
        rf"{round(100 * stream)} %\)"
    )
    kept = "no pair" if passed == 0 else f"{passed} of {pairs} pairs"
    sentence(rf"{kept} kept every child above 0.2 ms within \+-2 %")


def test_the_calibration_run_time_is_the_results_file():
    text = results_text("calibration.txt")
    wall = float(re.search(r"^# wall ([\d.]+) s", text, re.M).group(1))
    m = re.search(r"^.*\(([\d.]+) s\)$", text.split("MAPE ratio")[1], re.M)
    sentence(
        rf"about {round(wall / 60)} minutes here when the host timings come from the latency cache \({m.group(1)} s"
    )


def test_the_side_by_side_latency_is_the_results_file():
    import statistics

    rows = json.loads(results_text("cifar_quality.json"))["rows"]
    mnv2, win = rows["MobileNetV2-style"], rows["edgenas winner"]
    reps = len(mnv2["latency_side_by_side_ms"])
    sentence(rf"--latency-reps {reps}`: {reps} rounds, no cache")

    def spread(r: dict) -> str:
        ms = r["latency_side_by_side_ms"]
        return rf"{statistics.median(ms):.2f} ms \({min(ms):.2f}-{max(ms):.2f}\)"

    sentence(rf"MobileNetV2-style median {spread(mnv2)}, the winner {spread(win)}")
    sentence(rf"a median ratio of {win['latency_ratio_to_mobilenetv2']:.2f} per round")
    sentence(r"within 0.1 % across the rounds")
    for name in ("ResNet-8 (MLPerf Tiny)", "VGG-style 4-layer"):  # inside the fit: the graph sets the number
        ms = rows[name]["latency_side_by_side_ms"]
        assert max(ms) / min(ms) - 1 < 0.001, name


# --- sample efficiency: benchmarks/sample_efficiency.py -> benchmarks/results/sample_efficiency.json ---

SE_BUDGETS = (25, 50, 100, 200, 400)
SE_NAMES = {"`predictor` (default)": "predictor", "Optuna TPE": "optuna-tpe", "`evolution`": "evolution"}
SE_NAMES |= {"`ppo`": "ppo", "`reinforce`": "reinforce", "`random`": "random"}


def _se_reps(constrained: bool, told: bool = True) -> dict[str, list[dict]]:
    """The results file's repetitions of one setting, by strategy (each seed once)."""
    res = json.loads(results_text("sample_efficiency.json"))
    out: dict[str, dict[int, dict]] = {}
    for rec in res["repetitions"]:
        if rec["constrained"] == constrained and rec["told"] == told and ":" not in rec["strategy"]:
            # (a strategy with options, such as REINFORCE with replay, is docs/benchmarks/papers.md's)
            out.setdefault(rec["strategy"].removesuffix("-untold"), {})[rec["seed"]] = rec
    return {s: list(by_seed.values()) for s, by_seed in out.items()}


def _reached(rec: dict, budget: int) -> bool:
    value = rec["accs"][SE_BUDGETS.index(budget)]
    return value == value  # NaN: the repetition stopped short of that many distinct networks


def _se_mean(reps: list[dict], field: str, budget: int) -> float:
    """The mean over the repetitions that reached `budget`, as the benchmark prints it."""
    col = [r[field][SE_BUDGETS.index(budget)] for r in reps if _reached(r, budget)]
    return sum(col) / len(col)


def test_sample_efficiency_table_is_the_results_file():
    reps = _se_reps(constrained=False)
    assert set(reps) == set(SE_NAMES.values())
    (n,) = {len(v) for v in reps.values()}
    sentence(rf"`python benchmarks/sample_efficiency.py --reps {n}`")
    for key, row in rows_named("strategy | 25 |", "strategy", SE_NAMES):
        for b in SE_BUDGETS:
            assert shown(row[str(b)], _se_mean(reps[key], "accs", b)), (key, b)
    text = results_text("sample_efficiency.txt")
    best = float(re.search(r"unconstrained; best reachable \(test of best-val network\): ([\d.]+)", text).group(1))
    sentence(rf"\(best reachable: {best:.2f}\)")
    assert all(r["accs"][SE_BUDGETS.index(200)] == best for r in reps["predictor"])
    sentence(rf"within 200 evaluations in all {n} repetitions \(std 0.00 at 200\)")
    assert all(_reached(r, 400) for rs in reps.values() for r in rs)
    sentence(r"Every repetition of every strategy reached 400 distinct networks")
    secs = {s: sum(r["seconds"] for r in rs) / len(rs) for s, rs in reps.items()}
    sentence(
        rf"took {secs['predictor']:.1f} s with the predictor, {secs['optuna-tpe']:.1f} s TPE, "
        rf"{secs['reinforce']:.1f} s `reinforce`, {secs['ppo']:.1f} s `ppo`, {secs['evolution']:.1f} s "
        rf"`evolution`, {secs['random']:.1f} s random"
    )
    wall = int(re.search(r"wall (\d+) s", text).group(1))  # the unconstrained run comes first
    sentence(rf"the whole unconstrained table {round(wall / 60)} minutes")


def test_constrained_sample_efficiency_table_is_the_results_file():
    """The rows re-measured in full (as many repetitions as the predictor's) are checked cell by
    cell; the README names every other row as the earlier measurement."""
    told, untold = _se_reps(constrained=True), _se_reps(constrained=True, told=False)
    n = len(told["predictor"])
    assert len(untold["predictor"]) == n
    full = {"untold": untold["predictor"]} | {s: reps for s, reps in told.items() if len(reps) == n}
    labels = {"predictor": "the predictor told", "untold": "not told", "evolution": "`evolution`"}
    labels |= {"random": "random", "ppo": "`ppo`", "reinforce": "`reinforce`", "optuna-tpe": "TPE"}
    names = {"`predictor` (default), told": "predictor", "`predictor`, not told": "untold"}
    names |= {k: v for k, v in SE_NAMES.items() if v != "predictor"}
    rows = table("strategy | 25 |", after="With `--constrained`")
    assert len(rows) == len(names)
    short = {}
    for row in rows:
        key = next(v for k, v in names.items() if row["strategy"].startswith(k))
        if key not in full:
            assert re.search(rf"Not yet re-run: [^.]*{re.escape(labels[key])}", README), key
            continue
        for b in SE_BUDGETS:
            cell = row[str(b)]
            pick, network = cell.split("(")
            assert shown(pick, _se_mean(full[key], "accs", b)), (key, b)
            assert shown(network, _se_mean(full[key], "network_accs", b)), (key, b)
            reached = sum(_reached(r, b) for r in full[key])
            assert cell.endswith("*") == (reached < n), (key, b)
            if reached < n:
                short[key] = reached
    secs = {k: sum(r["seconds"] for r in reps) / n for k, reps in full.items()}
    sentence(
        rf"a repetition took {secs['predictor']:.1f} s told, {secs['untold']:.1f} s not told, "
        rf"{secs['evolution']:.1f} s `evolution`, {secs['random']:.1f} s random"
    )
    for key in ("optuna-tpe", "reinforce", "ppo"):
        if key in full:
            sentence(rf"(?<![\d.]){secs[key]:.1f} s {labels[key]}")
    partial = {k: sum(r["seconds"] for r in reps) / len(reps) for k, reps in told.items() if k not in full}
    for key, sec in partial.items():  # the time that kept those rows out of this round
        sentence(rf"{sec:.0f} s with {labels[key]}")
    text = results_text("sample_efficiency.txt").split("params <= median", 1)[1]
    limit = re.match(r" ([\d,]+);", text).group(1)
    sentence(rf"`python benchmarks/sample_efficiency.py --reps {n} --constrained` \(at most {limit} parameters\)")
    twins = re.search(
        r"(\d+) isomorphic strings in the table, trained separately: test ([\d.]+)-([\d.]+), mean ([\d.]+)", text
    )
    count, low, high, mean = twins.groups()
    sentence(
        rf"the best network has {count} isomorphic strings, each trained on its own \(test {low}-{high} %, mean {mean} %\)"
    )
    for key, reached in short.items():
        sentence(rf"Only [^.]*\b{reached} \({labels[key]}\)[^.]* of the {n} repetitions reached 400 distinct networks")
    worse = {
        k: [r["network_accs"][-1] for r in full[k] if abs(r["network_accs"][-1] - float(mean)) > 0.005]
        for k in ("predictor", "optuna-tpe", "random")
    }
    low, high = min(min(w) for w in worse.values()), max(max(w) for w in worse.values())
    sentence(
        rf"at 400, {len(worse['predictor'])} of the predictor's {n} repetitions, {len(worse['optuna-tpe'])} of TPE's "
        rf"and {len(worse['random'])} of random search's ended on a slightly worse network, "
        rf"{low:.2f}-{high:.2f} by network\)"
    )
    mine, tpe = ({b: _se_mean(full[k], "accs", b) for b in SE_BUDGETS} for k in ("predictor", "optuna-tpe"))
    assert mine[25] > tpe[25] and mine[50] > tpe[50]
    sentence(
        rf"ahead at 25 and 50 evaluations \({mine[25]:.2f} vs TPE's {tpe[25]:.2f}, {mine[50]:.2f} vs {tpe[50]:.2f}\)"
    )
    assert all(abs(mine[b] - tpe[b]) < 0.05 for b in (100, 200, 400))
    sentence(r"level with TPE from 100 on")
