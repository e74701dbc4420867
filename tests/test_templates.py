"""Known-good starting points: each space's reference networks, scaled to the largest variant
inside the search's limits, evaluated first; the answer is never worse than the best of them."""

import json

import pytest

from edgenas import api, spaces
from edgenas.constraints import Constraints
from edgenas.hardware.cost import count_params
from edgenas.hardware.profiles import load_profile
from edgenas.loop.templates import DEPTHS, WIDTHS, templates
from edgenas.reward import RewardConfig


def _params(space, actions):
    return count_params(space.build(space.decode(actions)))


@pytest.mark.parametrize("budget", [300_000, 50_000, 20_000])
def test_mobile_templates_are_the_largest_variant_under_the_budget(budget):
    space = spaces.create("mobile", input_shape=(3, 32, 32), num_classes=10)
    chosen = templates(space, Constraints.build(RewardConfig(budget_params=budget), load_profile("cpu-x86")))
    names = [t.name.split(" (")[0] for t in chosen]
    assert names == ["MobileNetV2-style", "MCUNet-like"][: len(names)] and names
    for t in chosen:
        assert _params(space, t.actions) <= budget
        ref = space.references()[t.name.split(" (")[0]]
        # every variant that is larger in the multipliers' order and different is over the budget
        scale = [(w, d) for w in WIDTHS for d in DEPTHS]
        scale.sort(key=lambda wd: (-(wd[0] ** 2) * wd[1], -wd[0]))
        for w, d in scale:
            variant = space.scaled(ref, w, d)
            key = space.decode(space.encode(variant)).key()
            if key == t.key:
                break
            assert _params(space, space.encode(variant)) > budget
    full = templates(space, Constraints.build(RewardConfig(budget_params=None), load_profile("cpu-x86")))
    assert [t.name for t in full] == ["MobileNetV2-style", "MCUNet-like"]  # no limit: the references as they are


def test_a_reference_far_inside_the_limits_is_scaled_up_to_fill_them():
    """MCUNet-like (75,938 params) under a 130,570 budget, as the plain photos command gives it
    with MobileNetV2-style's size as the limit: grown (depth x1.5: each stage repeats its last
    block) to a larger network that still fits; MobileNetV2-style fits exactly and stays itself."""
    space = spaces.create("mobile", input_shape=(3, 32, 32), num_classes=10)
    refs = space.references()
    chosen = {t.name: t for t in templates(space, Constraints.build(RewardConfig(budget_params=130_570),
                                                                    load_profile("cpu-x86")))}  # fmt: skip
    assert "MobileNetV2-style" in chosen and _params(space, chosen["MobileNetV2-style"].actions) == 130_570
    grown = chosen["MCUNet-like (depth x1.5)"]
    arch = space.decode(grown.actions)
    assert [len(s.blocks) for s in arch.stages] == [2, 3, 3, 3]
    assert [s.blocks[-1] for s in arch.stages] == [s.blocks[-1] for s in refs["MCUNet-like"].stages]
    assert _params(space, space.encode(refs["MCUNet-like"])) < _params(space, grown.actions) <= 130_570


def test_a_microcontrollers_memory_limits_scale_the_templates_down():
    space = spaces.create("mobile", input_shape=(3, 32, 32), num_classes=10)
    profile = load_profile("stm32f746")
    tight = Constraints.build(RewardConfig(budget_params=None, max_ram_kb=96), profile)
    chosen = templates(space, tight, profile)
    assert chosen and all("width x" in t.name for t in chosen)  # smaller than the references
    assert not templates(space, Constraints.build(RewardConfig(budget_params=None, max_ram_kb=48), profile), profile)
    from edgenas.hardware.memory import memory_estimate
    from edgenas.hardware.onnx import export_onnx

    for t in chosen:
        est = memory_estimate(export_onnx(space.build(space.decode(t.actions)), (3, 32, 32)), profile.precision)
        assert est.peak_ram_bytes <= 96 * 1024


def test_a_search_evaluates_its_templates_first_and_never_answers_worse(tmp_path):
    run = api.search(
        budget=20_000, children=8, architectures_per_update=4, epochs=1, runs_dir=tmp_path, name="t", seed=0,
        device="cpu",
    )  # fmt: skip
    manifest = json.loads((run.path / "manifest.json").read_text())
    made = manifest["templates"]
    assert [t["name"].split(" (")[0] for t in made] == ["VGG-style"] and made[0]["trial_id"] == 1
    assert made[0]["params"] <= 20_000
    best_template = max(t["reward"] for t in made if t["reward"] is not None)
    assert manifest["winner"]["reward"] >= best_template
    with_start = api.search(
        budget=20_000, children=4, architectures_per_update=4, epochs=1, runs_dir=tmp_path, name="start", seed=0,
        device="cpu", start=["layerwise|0:c8k3s1<in"],
    )  # fmt: skip
    first = [t.arch_key for t in sorted(with_start.trials(), key=lambda t: t.id)][:2]
    assert first == [made[0]["key"], "layerwise|0:c8k3s1<in"]  # templates first, then the --start networks
    off = api.search(
        budget=20_000, children=4, architectures_per_update=4, epochs=1, runs_dir=tmp_path, name="off", seed=0,
        device="cpu", templates=False,
    )  # fmt: skip
    assert json.loads((off.path / "manifest.json").read_text())["templates"] == []


def test_a_latency_limit_the_profile_cannot_predict_scales_the_templates_by_measuring_them():
    """cpu-x86 times every network on this host (nothing predicts its latency from the graph): the
    templates are measured as the gate measures them, so a limit at half the reference's latency
    gives scaled-down templates inside it rather than the references, which the gate would reject."""
    from edgenas.hardware.latency import measure_latency
    from edgenas.hardware.onnx import export_onnx

    space = spaces.create("mobile", input_shape=(3, 32, 32), num_classes=10)
    profile = load_profile("cpu-x86")

    def ms(arch):
        return measure_latency(export_onnx(space.build(arch), (3, 32, 32)), profile).statistic(profile.statistic)

    from edgenas.evaluate import feasibility

    refs = {name: ms(arch) for name, arch in space.references().items()}
    limit = refs["MobileNetV2-style"] / 2
    tight = Constraints.build(RewardConfig(budget_params=None, max_latency_ms=limit), profile)
    assert feasibility(space, tight, profile) is None  # the controller's check cannot know this latency
    chosen = templates(space, tight, profile)
    assert chosen and all("width x" in t.name or "depth x" in t.name for t in chosen)
    for t in chosen:
        # measured again (a busy host's timings are not cached, and vary by tens of percent): a
        # scaled-down network, well below its reference
        assert ms(space.decode(t.actions)) < refs[t.name.split(" (")[0]]
