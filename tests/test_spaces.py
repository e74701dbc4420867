import pytest
import torch

from edgenas.controllers import History, RandomController
from edgenas.errors import ConfigError
from edgenas.spaces import create
from edgenas.spaces.layerwise import FILTERS, KERNEL, SKIP, STOP, STRIDE, Layer, LayerwiseArch, LayerwiseSpace


def space(**kw):
    return LayerwiseSpace(input_shape=(1, 8, 8), num_classes=10, **kw)


def test_first_layer_decisions_and_order():
    s = space()
    assert s.next_decision([]).kind == FILTERS
    assert s.next_decision([0]).kind == KERNEL
    assert s.next_decision([0, 0]).kind == STRIDE
    # layer 1 starts with the stop decision, then one skip decision per earlier layer
    assert s.next_decision([0, 0, 0]).kind == STOP
    assert s.next_decision([0, 0, 0, 0]).kind == SKIP
    assert s.next_decision([0, 0, 0, 0, 1]).kind == FILTERS
    # stop ends the sequence
    assert s.next_decision([0, 0, 0, 1]) is None


def test_decode_wires_skips_and_image_fallback():
    s = space()
    # layer0: 16 filters k3 s1 | continue, skip0=no -> image input, 8 filters k1 s2 | continue, skips (yes, yes)
    actions = [2, 1, 0, 0, 0, 1, 0, 1, 0, 1, 1, 3, 1, 0, 1]
    arch = s.decode(actions)
    assert arch.layers[0] == Layer(16, 3, 1, ())
    assert arch.layers[1] == Layer(8, 1, 2, ())
    assert arch.layers[2] == Layer(32, 3, 1, (0, 1))
    assert arch.outputs() == (2,)
    assert s.encode(arch) == actions


def test_stride_and_kernel_masked_when_the_map_is_too_small():
    s = LayerwiseSpace(input_shape=(1, 2, 2), num_classes=3, max_layers=3, skip_connections=False)
    # 2x2 input: kernels 5 and 7 only see padding -> masked; stride 2 allowed
    d = s.next_decision([0])
    assert d.kind == KERNEL and d.mask == (True, True, False, False)
    assert s.next_decision([0, 0]).mask == (True, True)
    # after a stride-2 layer the map is 1x1: stride 2 and every kernel but 1 are masked
    prefix = [0, 0, 1, 0, 0]  # layer0 stride 2, continue, layer1 filters
    assert s.next_decision(prefix).mask == (True, False, False, False)
    assert s.next_decision(prefix + [0]).mask == (True, False)
    with pytest.raises(ValueError):
        s.decode(prefix + [0, 1])  # stride 2 at 1x1 is impossible, not a failure later


def test_random_sequences_decode_build_and_round_trip():
    s = space()
    ctl = RandomController(s, seed=3)
    x = torch.randn(2, 1, 8, 8)
    for actions in ctl.propose(40, History()):
        s.validate(actions)
        arch = s.decode(actions)
        assert s.encode(arch) == actions
        assert s.arch_from_json(arch.to_json()) == arch
        out = s.build(arch).eval()(x)
        assert out.shape == (2, 10)


def test_canonical_key_distinguishes_and_matches():
    a = LayerwiseArch((Layer(8, 3, 1, ()), Layer(8, 3, 1, (0,))))
    b = LayerwiseArch((Layer(8, 3, 1, ()), Layer(8, 3, 1, (0,))))
    c = LayerwiseArch((Layer(8, 3, 1, ()), Layer(8, 3, 1, ())))
    assert a.key() == b.key() and hash(a) == hash(b)
    assert a.key() != c.key()


def test_without_skips_layers_chain():
    s = space(skip_connections=False, max_layers=2)
    arch = s.decode([1, 1, 0, 0, 2, 1, 1])
    assert arch.layers[1].inputs == (0,)
    assert s.next_decision([1, 1, 0, 0, 2, 1, 1]) is None  # max_layers reached: no stop decision


def test_smallest_is_smallest():
    s = space()
    small = sum(p.numel() for p in s.build(s.smallest()).parameters())
    ctl = RandomController(s, seed=0)
    for actions in ctl.propose(30, History()):
        assert sum(p.numel() for p in s.build(s.decode(actions)).parameters()) >= small


def test_registry_errors_are_config_errors():
    with pytest.raises(ConfigError, match="unknown search space"):
        create("nope", input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(ConfigError, match="layerwise"):
        create("layerwise", input_shape=(1, 8, 8), num_classes=10, kernels=[2])
    with pytest.raises(ConfigError):
        create("layerwise", input_shape=(1, 8, 8), num_classes=10, bogus=1)


def test_mobile_space_inverted_residuals_masks_and_keys():
    import random

    from edgenas.hardware.cost import count_params
    from edgenas.spaces.mobile import InvertedResidual, MobileSpace, SqueezeExcite

    space = MobileSpace((3, 32, 32), 10)
    assert space.strides() == [1, 2, 2, 2]
    assert MobileSpace((1, 1, 1), 10).strides() == [1, 1, 1, 1]  # never below one pixel
    smallest = count_params(space.build(space.smallest()))
    rng = random.Random(0)
    seen = set()
    for _ in range(25):
        seq = []
        while (d := space.next_decision(seq)) is not None:
            seq.append(rng.choice([i for i, ok in enumerate(d.mask) if ok]))
        arch = space.decode(seq)
        model = space.build(arch)
        assert count_params(model) >= smallest
        assert space.arch_from_json(arch.to_json()).key() == arch.key()
        blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
        assert len(blocks) == sum(len(s.blocks) for s in arch.stages)
        assert sum(isinstance(m, SqueezeExcite) for m in model.modules()) == sum(
            b.se for s in arch.stages for b in s.blocks
        )
        depthwise = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
        assert len(depthwise) == len(blocks)  # one depthwise convolution per block
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
        seen.add(arch.key())
    assert len(seen) == 25  # distinct networks, distinct keys
    # at 4 x 4 pixels, the last stage's map is 1 pixel wide: only the smallest kernel is offered there
    tiny = MobileSpace((1, 4, 4), 10, kernels=(3, 5, 7))
    seq = []
    while (d := tiny.next_decision(seq)) is not None:
        if d.kind == 2:  # kernel
            last_mask = d.mask
        seq.append(max(i for i, ok in enumerate(d.mask) if ok))
    assert last_mask == (True, False, False)


def test_mobile_head_convolution_is_a_decision_with_keys_that_read_back():
    """`heads` with several options adds one last decision: a 1x1 convolution (BN, ReLU6) to that
    width before pooling, spelled `/h<width>` in the key (absent for 0, so keys of networks without
    a head are as before); one option is fixed, no decision."""
    from edgenas.hardware.cost import count_params
    from edgenas.spaces.mobile import HEAD, MobileSpace
    from edgenas.testing import check_space

    plain = MobileSpace((3, 32, 32), 10)
    space = MobileSpace((3, 32, 32), 10, heads=(0, 128, 256))
    ref = "w16:k3e1/w24:k3e6,k3e6/w32:k3e6,k3e6,k3e6/w64:k3e6,k3e6"
    without, with_head = space.actions_from_text(ref), space.actions_from_text(f"mobile|{ref}/h256")
    assert without == plain.actions_from_text(ref) + [0]  # the stage decisions are unchanged
    assert with_head[:-1] == without[:-1] and with_head[-1] == 2
    assert space.next_decision(without[:-1]).kind == HEAD and plain.next_decision(without[:-1]) is None
    arch = space.decode(with_head)
    assert arch.key() == f"mobile|{ref}/h256" and space.decode(without).key() == f"mobile|{ref}"
    assert space.arch_from_json(arch.to_json()) == arch
    model, base = space.build(arch), plain.build(plain.parse(ref))
    # head: 64 x 256 conv + 2 x 256 BN; classifier 256 x 10 + 10 instead of 64 x 10 + 10
    assert count_params(model) - count_params(base) == 64 * 256 + 2 * 256 + (256 - 64) * 10
    assert model.classifier.in_features == 256 and model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert space.smallest().head == 0
    fixed = MobileSpace((3, 32, 32), 10, heads=(128,))
    assert len(fixed.kinds) == len(plain.kinds) and fixed.decode(without[:-1]).head == 128
    with pytest.raises(ValueError, match="head 256 is not one of"):
        plain.actions_from_text(f"{ref}/h256")
    with pytest.raises(ValueError, match="heads must be"):
        MobileSpace((3, 32, 32), 10, heads=(0, 0))
    report = check_space(MobileSpace, input_shape=(3, 16, 16), heads=(0, 32, 64), widths=(8, 16))
    assert report["distinct_keys"] == report["proposals"]


def test_mobile_networks_are_flagged_outside_the_pi5_calibration():
    """The Pi 5 calibration pairs have no depthwise convolutions: a mobile network's prediction
    must say it is outside the fit, under both calibrations cpu-arm uses, never extrapolate silently."""
    from edgenas.hardware.calibration import Calibration, graph_features
    from edgenas.hardware.onnx import export_onnx
    from edgenas.hardware.profiles import load_profile
    from edgenas.spaces.mobile import MobileSpace

    space = MobileSpace((3, 32, 32), 10)
    feats = graph_features(export_onnx(space.build(space.smallest()), (3, 32, 32)))
    assert feats.get("dwconv_macs", 0) > 0
    arm = load_profile("cpu-arm")
    host = Calibration.load(arm.calibration_path("host_calibration"))
    assert "dwconv" in host.uncovered(feats)
    _, how = host.predict_explained(1.0, feats)
    assert how.startswith("outside the fit") and "dwconv" in how and "host x" in how
    graph = Calibration.load(arm.calibration_path())
    assert not graph.uses_host and "dwconv" in graph.uncovered(feats)
    _, how = graph.predict_explained(None, feats)
    assert how.startswith("outside the fit") and "dwconv as conv3x3" in how
