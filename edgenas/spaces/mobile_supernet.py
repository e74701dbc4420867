"""A weight-sharing supernet of the mobile space (Once-for-All's elastic kernel, expansion, depth
and width): one set of weights at the space's largest choices; a subnetwork uses a prefix of every
channel dimension (the first `width` output channels, the first `c_in x expansion` hidden
channels), the centre k x k of every depthwise kernel, and the first `depth` blocks of each stage.

`ElasticMobileNet(space)(x, arch)` runs subnetwork `arch` with those slices (gradients reach the
shared weights), and `extract(space, arch)` writes them into the stand-alone network
`space.build(arch)`, so a subnetwork is scored, exported and timed as exactly the network a
search would train.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgenas.spaces.mobile import InvertedResidual, MobileArch, MobileBlock, MobileSpace, SqueezeExcite


def _bn(bn: nn.BatchNorm2d, x: torch.Tensor, n: int) -> torch.Tensor:
    """Batch norm over the first `n` channels of `bn` (its running statistics updated in place)."""
    assert bn.running_mean is not None and bn.running_var is not None
    return F.batch_norm(x, bn.running_mean[:n], bn.running_var[:n], bn.weight[:n], bn.bias[:n], bn.training,
                        bn.momentum or 0.1, bn.eps)  # fmt: skip


def _centre(w: torch.Tensor, k: int) -> torch.Tensor:
    off = (w.shape[-1] - k) // 2
    return w[..., off : off + k, off : off + k]


class ElasticBlock(nn.Module):
    """An inverted residual at its largest: `c_in` inputs, `c_out` outputs, `hidden` expanded
    channels, `kernel` x `kernel` depthwise, squeeze-excite weights for every hidden channel."""

    def __init__(self, c_in: int, c_out: int, hidden: int, kernel: int) -> None:
        super().__init__()
        squeezed = max(1, hidden // 4)
        self.expand = nn.Conv2d(c_in, hidden, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(hidden)
        self.dw = nn.Conv2d(hidden, hidden, kernel, groups=hidden, bias=False)
        self.dw_bn = nn.BatchNorm2d(hidden)
        self.se_reduce = nn.Conv2d(hidden, squeezed, 1)
        self.se_expand = nn.Conv2d(squeezed, hidden, 1)
        self.project = nn.Conv2d(hidden, c_out, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, c_in: int, c_out: int, block: MobileBlock, stride: int) -> torch.Tensor:
        h, k = c_in * block.expansion, block.kernel
        y = x
        if block.expansion != 1:
            y = F.relu6(_bn(self.expand_bn, F.conv2d(y, self.expand.weight[:h, :c_in]), h))
        w = _centre(self.dw.weight[:h], k)
        y = F.relu6(_bn(self.dw_bn, F.conv2d(y, w, None, stride, k // 2, 1, h), h))
        if block.se:
            q = max(1, h // 4)
            g = F.adaptive_avg_pool2d(y, 1)
            g = F.relu(F.conv2d(g, self.se_reduce.weight[:q, :h], self.se_reduce.bias[:q]))
            y = y * F.hardsigmoid(F.conv2d(g, self.se_expand.weight[:h, :q], self.se_expand.bias[:h]))
        y = _bn(self.project_bn, F.conv2d(y, self.project.weight[:c_out, :h]), c_out)
        return y + x if stride == 1 and c_in == c_out else y


class ElasticMobileNet(nn.Module):
    def __init__(self, space: MobileSpace) -> None:
        super().__init__()
        self.space = space
        widths, kernels, expansions = (space.kinds[i].options for i in (1, 2, 3))
        self.width, self.kernel, self.expansion = max(widths), max(kernels), max(expansions)
        self.head_width = max(space.heads)
        c_in = space.input_shape[0]
        self.stem = nn.Conv2d(c_in, space.stem, 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(space.stem)
        blocks = []
        for s in range(space.stages):
            for d in range(space.max_depth):
                first = s == 0 and d == 0
                cin = space.stem if first else max(self.width, space.stem)
                blocks.append(ElasticBlock(cin, self.width, cin * self.expansion, self.kernel))
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(self.width, self.head_width, 1, bias=False) if self.head_width else None
        self.head_bn = nn.BatchNorm2d(self.head_width) if self.head_width else None
        self.classifier = nn.Linear(max(self.width, self.head_width), space.num_classes)

    def largest(self) -> MobileArch:
        block = MobileBlock(self.kernel, self.expansion, True)
        from edgenas.spaces.mobile import MobileStage

        stage = MobileStage(self.width, (block,) * self.space.max_depth)
        return MobileArch((stage,) * self.space.stages, self.head_width)

    def forward(self, x: torch.Tensor, arch: MobileArch) -> torch.Tensor:
        space = self.space
        x = F.relu6(self.stem_bn(self.stem(x)))
        c = space.stem
        for s, (stage, stride) in enumerate(zip(arch.stages, space.strides())):
            for d, block in enumerate(stage.blocks):
                x = self.blocks[s * space.max_depth + d](x, c, stage.width, block, stride if d == 0 else 1)
                c = stage.width
        if arch.head:
            assert self.head is not None and self.head_bn is not None
            x = F.relu6(_bn(self.head_bn, F.conv2d(x, self.head.weight[: arch.head, :c]), arch.head))
            c = arch.head
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return F.linear(x, self.classifier.weight[:, :c], self.classifier.bias)


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d) -> None:
    n = dst.num_features
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).data.copy_(getattr(src, name)[:n])


@torch.no_grad()
def extract(supernet: ElasticMobileNet, arch: MobileArch) -> nn.Module:
    """The stand-alone network `supernet.space.build(arch)` with the supernet's (sliced) weights."""
    space = supernet.space
    net = space.build(arch)
    feats = list(net.features)
    feats[0].weight.copy_(supernet.stem.weight)
    _copy_bn(feats[1], supernet.stem_bn)
    residuals = [m for m in feats if isinstance(m, InvertedResidual)]
    i = 0
    c = space.stem
    for s, stage in enumerate(arch.stages):
        for d, block in enumerate(stage.blocks):
            src, dst = supernet.blocks[s * space.max_depth + d], residuals[i]
            h = c * block.expansion
            convs = [m for m in dst.body if isinstance(m, nn.Conv2d)]
            bns = [m for m in dst.body if isinstance(m, nn.BatchNorm2d)]
            if block.expansion != 1:
                convs.pop(0).weight.copy_(src.expand.weight[:h, :c])
                _copy_bn(bns.pop(0), src.expand_bn)
            convs[0].weight.copy_(_centre(src.dw.weight[:h], block.kernel))
            _copy_bn(bns[0], src.dw_bn)
            if block.se:
                se = next(m for m in dst.body if isinstance(m, SqueezeExcite))
                q = max(1, h // 4)
                se.gate[1].weight.copy_(src.se_reduce.weight[:q, :h])
                se.gate[1].bias.copy_(src.se_reduce.bias[:q])
                se.gate[3].weight.copy_(src.se_expand.weight[:h, :q])
                se.gate[3].bias.copy_(src.se_expand.bias[:h])
            convs[1].weight.copy_(src.project.weight[: stage.width, :h])
            _copy_bn(bns[1], src.project_bn)
            i += 1
            c = stage.width
    if arch.head:
        assert supernet.head is not None and supernet.head_bn is not None
        head = [m for m in feats[3 + len(residuals) :] if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
        head[0].weight.copy_(supernet.head.weight[: arch.head, :c])
        _copy_bn(head[1], supernet.head_bn)
        c = arch.head
    net.classifier.weight.copy_(supernet.classifier.weight[:, :c])
    net.classifier.bias.copy_(supernet.classifier.bias)
    return net
