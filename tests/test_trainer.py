"""The trainer on the pattern that crashes torch 2.14's CPU backward: a 1x1 stride-2 convolution
in channels_last at CIFAR-like sizes. Run in a subprocess, many steps: a crash or a hang fails the
test instead of taking the suite down."""

import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from edgenas.config import TrainRecipe
from edgenas.training.trainer import channels_last_safe

CRASHER = """
import sys, torch, torch.nn as nn
from edgenas.config import TrainRecipe
from edgenas.training.trainer import train_child
size = int(sys.argv[1])
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 16, 1, 2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
x, y = torch.randn(13 * 100, 3, size, size), torch.randint(0, 10, (13 * 100,))
recipe = TrainRecipe(epochs=3, batch_size=13, channels_last=True)  # 300 forward + backward steps
res = train_child(model, x, y, x[:64], y[:64], recipe, seed=0, device=torch.device("cpu"))
print("ok", res.epochs)
"""


@pytest.mark.parametrize("size", [16, 32])
def test_1x1_stride_2_conv_trains_without_crashing(size):
    res = subprocess.run([sys.executable, "-c", CRASHER, str(size)], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])
    assert res.stdout.strip() == "ok 3"


def test_only_the_crashing_pattern_loses_channels_last():
    cpu = torch.device("cpu")
    assert not channels_last_safe(nn.Sequential(nn.Conv2d(3, 8, 1, stride=2)), cpu)
    assert not channels_last_safe(nn.Sequential(nn.Conv2d(3, 8, 1, stride=(2, 1))), cpu)
    assert channels_last_safe(nn.Sequential(nn.Conv2d(3, 8, 1, stride=1), nn.Conv2d(8, 8, 3, stride=2)), cpu)
    assert channels_last_safe(nn.Sequential(nn.Conv2d(3, 8, 1, stride=2)), torch.device("cuda"))
    assert TrainRecipe().channels_last  # still the default where it is safe
