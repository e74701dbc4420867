import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

from edgenas.errors import MeasurementError
from edgenas.measure.cost import count_params, static_cost
from edgenas.measure.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from edgenas.measure.latency import measure_latency
from edgenas.profiles import load_profile, parse_profile
from edgenas.spaces.layerwise import Layer, LayerwiseArch, LayerwiseSpace


def test_static_cost_exact_params_and_thop_macs():
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False))
    cost = static_cost(conv, (1, 8, 8))
    assert cost.params == 36 == count_params(conv)
    assert cost.macs == 36 * 64  # 4 out channels x 9 taps x 64 positions
    assert cost.flops == 2 * cost.macs
    assert not hasattr(conv[0], "total_ops")  # thop worked on a copy


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


def _tiny_onnx():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
    return export_onnx(model, (1, 8, 8))


def test_latency_on_a_real_session():
    profile = load_profile("cpu-arm")
    stats = measure_latency(_tiny_onnx(), profile)
    assert stats.runs == profile.timed_runs == len(stats.samples_ms)
    assert 0 < stats.min_ms <= stats.median_ms <= stats.p90_ms <= stats.max_ms
    assert stats.provider == "CPUExecutionProvider"
    assert stats.label == "host-measured" and stats.measured_on == "host"
    assert stats.machine["onnxruntime"] == ort.__version__
    assert stats.statistic("p90") == stats.p90_ms


def test_batch_size_from_profile_is_used():
    data = {**load_profile("cpu-arm").settings(), "batch_size": 4, "timed_runs": 3, "warmup_runs": 0}
    stats = measure_latency(_tiny_onnx(), parse_profile(data, "b4"))
    assert stats.batch_size == 4 and stats.runs == 3


def test_missing_execution_provider_is_refused():
    data = {**load_profile("cpu-arm").settings(), "execution_providers": ["NoSuchExecutionProvider"]}
    with pytest.raises(MeasurementError, match="NoSuchExecutionProvider"):
        measure_latency(_tiny_onnx(), parse_profile(data, "x"))
