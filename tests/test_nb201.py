import itertools
import random

import torch

from edgenas.spaces.nb201 import OPS, NB201Arch, NB201Net, NB201Space, canonical_cell, live_edges

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"


def params(arch, prune=True):
    return sum(p.numel() for p in NB201Net(arch, 3, 10, c=4, n=1, prune=prune).parameters())


def test_parse_and_print_round_trip():
    a = NB201Arch.parse(BEST)
    assert str(a) == BEST
    assert NB201Space((3, 32, 32), 10).decode(NB201Space((3, 32, 32), 10).encode(a)) == a


def test_swapping_the_intermediate_nodes_is_one_key():
    # node 1 = conv3(x), node 2 = pool(x), output = conv1(node1) + skip(node2)
    a = NB201Arch(("nor_conv_3x3", "avg_pool_3x3", "none", "none", "nor_conv_1x1", "skip_connect"))
    # the same with nodes 1 and 2 exchanged (node 2 may read node 1, so only edges from x move)
    b = NB201Arch(("avg_pool_3x3", "nor_conv_3x3", "none", "none", "skip_connect", "nor_conv_1x1"))
    assert str(a) != str(b)
    assert a.key() == b.key()


def test_dead_edges_and_skip_chains_merge_but_sharing_does_not():
    # conv on an edge from a node nothing feeds is dead; so is an edge into a node the output never reads
    live = NB201Arch(("none", "none", "none", "nor_conv_3x3", "none", "none"))
    dead_in = NB201Arch(("none", "none", "nor_conv_1x1", "nor_conv_3x3", "none", "none"))
    dead_out = NB201Arch(("nor_conv_1x1", "none", "none", "nor_conv_3x3", "none", "none"))
    assert live.key() == dead_in.key() == dead_out.key()
    assert live_edges(dead_out.ops) == [False, False, False, True, False, False]
    # x -> skip -> node1 -> conv -> out equals conv(x) -> out
    chain = NB201Arch(("skip_connect", "none", "none", "none", "nor_conv_3x3", "none"))
    assert chain.key() == live.key()
    # one conv read twice is not two convs
    shared = NB201Arch(("nor_conv_3x3", "none", "none", "none", "avg_pool_3x3", "none"))
    assert canonical_cell(shared.ops) != canonical_cell(
        ("nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "none", "none", "skip_connect")
    )
    assert NB201Arch(("none",) * 6).key() == "nb201|zero"


def test_equal_keys_build_equal_networks():
    groups = {}
    for ops in itertools.product(OPS, repeat=6):
        groups.setdefault(NB201Arch(ops).key(), []).append(ops)
    assert 5000 < len(groups) < 15625  # isomorphic and dead-edge variants merged
    rng = random.Random(0)
    multi = [g for g in groups.values() if len(g) > 1]
    for g in rng.sample(multi, 40):
        a, b = (NB201Arch(o) for o in rng.sample(g, 2))
        assert params(a) == params(b)
        torch.manual_seed(0)
        x = torch.randn(2, 3, 8, 8)
        assert NB201Net(a, 3, 10, c=4, n=1)(x).shape == (2, 10)


def test_unpruned_builder_keeps_dead_edges_like_the_reference():
    dead = NB201Arch(("nor_conv_1x1", "none", "none", "nor_conv_3x3", "none", "none"))
    assert params(dead, prune=False) > params(dead, prune=True)
