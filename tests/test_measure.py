import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

from edgenas.errors import MeasurementError, ProfileError
from edgenas.hardware.cost import count_params, static_cost
from edgenas.hardware.latency import Measurer, graph_hash, quantize_for_timing
from edgenas.hardware.onnx import INPUT_NAME, OUTPUT_NAME, export_onnx
from edgenas.hardware.profiles import load_profile, parse_profile
from edgenas.spaces.layerwise import Layer, LayerwiseArch, LayerwiseSpace


def test_static_cost_exact_params_and_thop_macs():
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False))
    cost = static_cost(conv, (1, 8, 8))
    assert cost.params == 36 == count_params(conv)
    assert cost.macs == 36 * 64  # 4 out channels x 9 taps x 64 positions
    assert cost.flops == 2 * cost.macs
    assert not hasattr(conv[0], "total_ops")  # thop's counting buffers are gone


def test_static_cost_leaves_the_model_as_it_was():
    """Counted in place: same state dict (no thop buffers, no changed running statistics), same
    training flag, no hooks left, and the same MACs as on a deep copy."""
    import copy

    from edgenas.spaces.nb201 import NB201Arch, NB201Space

    space = NB201Space((3, 16, 16), 10, channels=4, cells_per_stage=1)
    model = space.build(
        NB201Arch.parse("|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|")
    )
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reference = static_cost(copy.deepcopy(model), (3, 16, 16))
    cost = static_cost(model, (3, 16, 16))
    assert cost == reference and cost.macs > 0
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training
    assert not any(m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 7, 7)])
def test_export_parity_and_dynamic_batch(shape):
    s = LayerwiseSpace(input_shape=shape, num_classes=5)
    arch = LayerwiseArch((Layer(8, 3, 2, ()), Layer(4, 5, 2, (0,)), Layer(8, 1, 1, (0, 1))))
    torch.manual_seed(0)
    model = s.build(arch).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    blob = export_onnx(model, shape, metadata={"k": "v"})
    proto = onnx.load_from_string(blob)
    assert {p.key: p.value for p in proto.metadata_props} == {"k": "v"}
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [INPUT_NAME]
    assert [o.name for o in sess.get_outputs()] == [OUTPUT_NAME]
    x = torch.randn(7, *shape)
    got = sess.run(None, {INPUT_NAME: x.numpy()})[0]
    assert got.shape == (7, 5)
    assert np.abs(got - model(x).detach().numpy()).max() < 1e-4


def _tiny_onnx(channels: int = 4):
    model = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * channels, 10))
    return export_onnx(model, (1, 8, 8))


def _profile(**changes):
    return parse_profile({**load_profile("cpu-arm-host").settings(), **changes}, "test.toml")


def test_latency_on_a_real_session_in_a_pinned_worker():
    profile = _profile(cpu_cores=[0], sessions=2, timed_runs=15, warmup_runs=3, min_timed_ms=0)
    m = Measurer(use_cache=False)
    try:
        stats = m.measure(_tiny_onnx(), profile)
        assert stats.runs == 2 * 15 == len(stats.samples_ms) and stats.sessions == 2
        assert len(stats.session_medians_ms) == 2
        assert stats.median_ms == pytest.approx(
            sorted(stats.session_medians_ms)[0] / 2 + sorted(stats.session_medians_ms)[1] / 2
        )
        assert 0 < stats.min_ms <= stats.median_ms <= stats.max_ms and stats.p90_ms <= stats.max_ms
        assert stats.provider == "CPUExecutionProvider"
        assert stats.label == "host-measured" and stats.measured_on == "host"
        assert stats.machine["onnxruntime"] == ort.__version__
        assert stats.pinned_cores == (0,)  # timed in the worker process, pinned as the profile says
        assert m.worker.proc is not None and m.worker.proc.pid != os.getpid()
        assert stats.spread >= 0 and stats.unstable == (stats.spread > profile.spread_threshold)
    finally:
        m.close()


def test_sessions_take_turns_until_the_minimum_timed_duration():
    from edgenas.hardware.timing import time_model

    tiny = _tiny_onnx()
    settings = _profile(sessions=3, timed_runs=4, warmup_runs=1, min_timed_ms=0, cpu_cores=[]).settings()
    assert time_model(tiny, settings)["runs"] == 12  # no floor: exactly sessions x timed_runs
    res = time_model(tiny, {**settings, "min_timed_ms": 5.0})
    assert res["runs"] > 12 and res["runs"] % 3 == 0  # whole rounds: every session took its turn
    assert sum(res["samples_ms"]) >= 5.0 or res["runs"] == 3 * 40  # the floor, or the 10 x cap
    capped = time_model(tiny, {**settings, "min_timed_ms": 60_000.0})  # a floor no tiny model reaches
    assert capped["runs"] == 3 * 10 * 4
    with pytest.raises(ProfileError, match="key 'min_timed_ms' = -1.0 is not allowed"):
        _profile(min_timed_ms=-1.0)


def test_batch_size_from_profile_is_used():
    stats = Measurer(use_cache=False).measure(
        _tiny_onnx(), _profile(batch_size=4, timed_runs=3, warmup_runs=0, sessions=1)
    )
    assert stats.batch_size == 4 and stats.runs == 3


def test_missing_execution_provider_is_refused():
    with pytest.raises(MeasurementError, match="NoSuchExecutionProvider"):
        Measurer(use_cache=False).measure(_tiny_onnx(), _profile(execution_providers=["NoSuchExecutionProvider"]))


def test_graph_hash_ignores_weights_not_structure():
    torch.manual_seed(0)
    a = _tiny_onnx()
    torch.manual_seed(1)
    b = _tiny_onnx()
    assert a != b and graph_hash(a) == graph_hash(b)
    assert graph_hash(_tiny_onnx(channels=8)) != graph_hash(a)


def test_cache_measures_a_graph_once_per_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGENAS_CACHE_DIR", str(tmp_path))
    m = Measurer()
    try:
        profile = _profile(timed_runs=5, warmup_runs=1, sessions=1, spread_threshold=100.0)
        first = m.measure(_tiny_onnx(), profile)
        torch.manual_seed(7)
        again = m.measure(_tiny_onnx(), profile)  # other weights, same graph
        assert not first.cached and again.cached and again.median_ms == first.median_ms
        other = m.measure(_tiny_onnx(), _profile(timed_runs=6, warmup_runs=1, sessions=1, spread_threshold=100.0))
        assert not other.cached  # other settings, other fingerprint
        assert m.cache.count() == 2
    finally:
        m.close()


def test_timeout_stops_the_measurement_and_the_next_one_works():
    m = Measurer(use_cache=False)
    try:
        big = _profile(timed_runs=100000, warmup_runs=0, sessions=1)
        with pytest.raises(MeasurementError, match="longer than"):
            m.measure(_tiny_onnx(), big, timeout_s=0.2)
        assert m.measure(_tiny_onnx(), _profile(timed_runs=3, sessions=1)).runs == 3
    finally:
        m.close()


def test_a_crashed_worker_is_replaced():
    m = Measurer(use_cache=False)
    try:
        m.measure(_tiny_onnx(), _profile(timed_runs=2, sessions=1))
        m.worker.proc.kill()  # as if onnxruntime had crashed it
        m.worker.proc.wait()
        assert m.measure(_tiny_onnx(), _profile(timed_runs=2, sessions=1)).runs == 2
        assert m.worker.restarts == 1
    finally:
        m.close()


def test_int8_profile_times_the_quantized_graph():
    stats = Measurer(use_cache=False).measure(_tiny_onnx(), _profile(precision="int8", timed_runs=3, sessions=1))
    assert stats.precision == "int8" and stats.runs == 3
    q = quantize_for_timing(_tiny_onnx())
    assert "QuantizeLinear" in {n.op_type for n in onnx.load_from_string(q).graph.node}


def test_untimed_profile_returns_no_latency():
    assert Measurer(use_cache=False).measure(_tiny_onnx(), load_profile("mcu-m7")) is None
