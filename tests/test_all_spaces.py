"""Every registered search space: valid random proposals decode, build, export to a checked ONNX
model that onnxruntime runs like torch, and train for one batch of real digits."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from edgenas import controllers, spaces
from edgenas.errors import ConfigError
from edgenas.hardware.onnx import INPUT_NAME, export_onnx
from edgenas.training.data import load_dataset

SMALL = {
    "nb201": {"channels": 4, "cells_per_stage": 1},
    "cell-small": {"channels": 4},
    "cell-large": {"channels": 4, "blocks": 2},
}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", 0.15, 0.2, 0)


@pytest.mark.parametrize("name", ["layerwise", "nb201", "cell-small", "cell-large", "blocks", "transform", "mobile"])
def test_every_space_of_the_literature_is_created_by_its_name(name, digits):
    """The factory builds each space by name: a space of that name whose smallest network builds
    and answers the digits' input; an unknown name is one error listing every registered name."""
    space = spaces.create(name, input_shape=digits.input_shape, num_classes=digits.num_classes, **SMALL.get(name, {}))
    assert space.name == name
    model = space.build(space.smallest())
    assert model(digits.x_train[:2]).shape == (2, digits.num_classes)
    with pytest.raises(ConfigError, match=f"unknown search space 'nope'; available: .*{name}"):
        spaces.create("nope", input_shape=digits.input_shape, num_classes=digits.num_classes)


@pytest.mark.parametrize("name", spaces.names())
def test_space_builds_exports_and_trains_one_batch(name, digits):
    space = spaces.create(name, input_shape=digits.input_shape, num_classes=digits.num_classes, **SMALL.get(name, {}))
    seqs = controllers.create("random", space, seed=0).propose(3, controllers.History())
    x, y = digits.x_train[:32], digits.y_train[:32]
    for seq in seqs:
        arch = space.decode(seq)
        assert space.arch_from_json(arch.to_json()) == arch
        assert arch.key() == space.decode(list(seq)).key()
        torch.manual_seed(0)
        model = space.build(arch)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        before = [p.detach().clone() for p in model.parameters()]
        model.train()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
        if before:
            assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
        model.eval()
        graph = export_onnx(model, digits.input_shape)
        sess = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        got = sess.run(None, {INPUT_NAME: x[:4].numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, model(x[:4]).numpy(), atol=1e-4)
    smallest = space.build(space.smallest())
    assert smallest(x[:2]).shape == (2, digits.num_classes)


def test_cell_small_has_64_networks_and_cell_large_masks_future_inputs():
    s = spaces.create("cell-small", input_shape=(1, 8, 8), num_classes=10)
    keys = {s.decode([a, b]).key() for a in range(8) for b in range(8)}
    assert len(keys) == 64
    large = spaces.create("cell-large", input_shape=(1, 8, 8), num_classes=10, blocks=3)
    assert large.next_decision([]).mask == (True, False, False)  # block 0 reads only the cell input
    assert large.next_decision([0, 0, 1, 1]).mask == (True, True, False)  # block 1: input or block 0
    a = large.decode([0, 0, 1, 2, 1, 0, 3, 3, 0, 2, 7, 7])
    b = large.decode([0, 0, 2, 1, 0, 1, 3, 3, 2, 0, 7, 7])  # each block's two terms swapped
    assert a.key() == b.key()


def test_blocks_prefixes_are_networks_and_pooling_is_masked_at_one_pixel():
    s = spaces.create("blocks", input_shape=(1, 4, 4), num_classes=10, max_layers=4)
    pool = 2
    seq = [pool, 0, pool]  # 4 -> 2 -> 1 pixel
    assert s.next_decision(seq) is not None
    assert s.next_decision(seq + [0]).mask[pool] is False  # a third pool is not offered
    assert s.decode(seq + [1]).key() == "blocks|pool2-pool2"


def test_transform_inserts_rewire_and_scale():
    s = spaces.create("transform", input_shape=(1, 8, 8), num_classes=10, steps=3)
    # insert a conv after layer 0: the old layer 1 now reads the new layer
    arch = s.decode([1, 0, 0])
    assert [(l.filters, l.inputs) for l in arch.layers] == [(8, ()), (8, (0,)), (16, (1,))]
    # then a skip into layer 2 from layer 0, then scale layer 2's channels
    arch = s.decode([1, 0, 2, 2, 3, 2])
    assert arch.layers[2].inputs == (0, 1) and arch.layers[2].filters == 32
    # a two-layer chain has no skip to add; after an insert only layer 2 can take one (from layer 0)
    assert s.next_decision([]).mask[2] is False
    assert s.next_decision([1, 0, 2]).mask == (False, False, True, False, False)


@pytest.mark.parametrize("name", ["mobile", "layerwise", "nb201"])
def test_a_network_is_read_back_from_its_key(name):
    """--start takes networks as reports print them: key -> actions -> the same network, for
    random networks of each space that reads text (NB201 reads its standard cell string)."""
    space = spaces.create(name, input_shape=(3, 32, 32), num_classes=10)
    ctl = controllers.create("random", space, seed=3)
    for actions in ctl.propose(20, controllers.History()):
        arch = space.decode(actions)
        text = str(arch) if name == "nb201" else arch.key()
        back = space.actions_from_text(text)
        assert space.decode(back) == arch
    with pytest.raises(ValueError):
        space.actions_from_text(f"{name}|not a network")
