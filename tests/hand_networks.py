"""Networks whose peak activation memory is worked out by hand in tests/test_memory.py and
checked against TFLite Micro in tests/test_tflite.py."""

import torch
import torch.nn as nn


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1)
        self.b = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.b(torch.relu(self.a(x))) + x)
