"""The trainer on the pattern that crashes torch 2.14's CPU backward: a 1x1 stride-2 convolution
in channels_last at CIFAR-like sizes. Run in a subprocess, many steps: a crash or a hang fails the
test instead of taking the suite down."""

import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from edgenas.settings.pipeline import TrainRecipe
from edgenas.training.trainer import channels_last_safe

CRASHER = """
import sys, torch, torch.nn as nn
from edgenas.settings.pipeline import TrainRecipe
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
@pytest.mark.slow
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


def _one_pixel(n=6, size=8):
    x = torch.zeros(n, 1, size, size)
    x[:, 0, 2, 1] = 1.0  # one bright pixel at row 2, column 1
    return x


def test_augmentation_is_seeded_and_on_the_batch_device():
    from edgenas.training.trainer import augment_batch

    x = torch.randn(16, 3, 8, 8)
    a = augment_batch(x, 2, True, torch.Generator().manual_seed(1))
    b = augment_batch(x, 2, True, torch.Generator().manual_seed(1))
    c = augment_batch(x, 2, True, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.device == x.device
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_crops_shift_and_flips_mirror_the_image():
    from edgenas.training.trainer import augment_batch

    x = _one_pixel(n=64)
    shifted = augment_batch(x, 2, False, torch.Generator().manual_seed(0))
    seen = set()
    for img in shifted[:, 0]:
        where = (img == 1.0).nonzero().tolist()
        assert len(where) <= 1 and img.sum() <= 1.0  # moved or cropped away, never duplicated
        if where:
            r, c = where[0]
            assert abs(r - 2) <= 2 and abs(c - 1) <= 2
            seen.add((r, c))
    assert len(seen) > 3  # the offsets vary from image to image
    flipped = augment_batch(x, 0, True, torch.Generator().manual_seed(0))
    cols = {int((img == 1.0).nonzero()[0][1]) for img in flipped[:, 0]}
    assert cols == {1, 6}  # unchanged or mirrored (8 - 1 - 1)


def test_photo_recipe_is_off_for_digits_and_on_for_photos():
    from edgenas.settings.pipeline import load_pipeline

    digits = load_pipeline("default")
    assert digits.training.crop_padding == 0 and not digits.training.horizontal_flip
    photos = load_pipeline("photos")
    for recipe in (photos.training, photos.final_training):
        assert recipe.crop_padding == 4 and recipe.horizontal_flip and recipe.label_smoothing == 0.1


def test_training_with_augmentation_and_ema():
    from edgenas.training.trainer import train_child

    torch.manual_seed(0)
    y = torch.randint(0, 2, (256,))
    x = torch.randn(256, 3, 8, 8) + (2.0 * y - 1.0)[:, None, None, None]  # brightness: shift- and flip-proof

    def run(**kw):
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)
        )
        recipe = TrainRecipe(epochs=3, batch_size=32, **kw)
        res = train_child(model, x, y, x[:64], y[:64], recipe, seed=0, device=torch.device("cpu"))
        return res, torch.cat([p.detach().flatten() for p in model.parameters()])

    plain, w_plain = run()
    aug, w_aug = run(crop_padding=2, horizontal_flip=True)
    again, w_again = run(crop_padding=2, horizontal_flip=True)
    ema, w_ema = run(crop_padding=2, horizontal_flip=True, ema_decay=0.9)
    assert torch.equal(w_aug, w_again)  # seeded: the same child trains the same way
    assert not torch.equal(w_plain, w_aug) and not torch.equal(w_aug, w_ema)
    assert aug.val_accuracy > 0.6 and ema.val_accuracy > 0.6


def test_grad_clip_norm_scales_a_step_down_to_the_clipped_gradient():
    """training.grad_clip_norm: one training step (one batch) moves the weights in proportion to
    the gradient, so with the gradient's norm clipped from |g| to c the step is c / |g| of the
    unclipped one, in the same direction; 0 leaves it alone."""
    from edgenas.errors import ConfigError
    from edgenas.training.trainer import train_child

    torch.manual_seed(0)
    start = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.randn(8, 1, 2, 2) * 10, torch.randint(0, 3, (8,))
    nn.functional.cross_entropy(start(x), y).backward()
    grad_norm = float(torch.sqrt(sum((p.grad**2).sum() for p in start.parameters())))
    clip = grad_norm / 4

    def step(clip_norm: float) -> torch.Tensor:
        model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        model.load_state_dict(start.state_dict())
        # one step of a one-cycle schedule runs at max_lr / 250,000: a large max_lr gives a visible step
        recipe = TrainRecipe(epochs=1, batch_size=8, learning_rate=1e4, weight_decay=0.0, grad_clip_norm=clip_norm)
        train_child(model, x, y, None, None, recipe, seed=0, device=torch.device("cpu"))
        return torch.cat([(p.detach() - q.detach()).flatten() for p, q in zip(model.parameters(), start.parameters())])

    free, clipped = step(0.0), step(clip)
    assert free.norm() > 0
    assert torch.allclose(clipped, free * (clip / grad_norm), rtol=1e-4, atol=1e-12)
    with pytest.raises(ConfigError, match="training.grad_clip_norm must be >= 0"):
        TrainRecipe(grad_clip_norm=-1.0)


def test_adam_takes_adam_steps_at_a_constant_rate_and_resumes_exactly():
    """training.optimizer = "adam": Adam's first step moves every weight with a non-zero gradient
    by about learning_rate (its normalised step), whatever the gradient's size; the rate stays
    constant (no one-cycle warm-up); pausing after one epoch and resuming gives the same weights
    as training straight through."""
    from edgenas.training.trainer import train_child

    torch.manual_seed(0)
    start = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.randn(8, 1, 2, 2) * 10, torch.randint(0, 3, (8,))
    cpu = torch.device("cpu")

    def model():
        m = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        m.load_state_dict(start.state_dict())
        return m

    recipe = TrainRecipe(epochs=1, batch_size=8, optimizer="adam", learning_rate=0.01, weight_decay=0.0)
    m = model()
    train_child(m, x, y, None, None, recipe, seed=0, device=cpu)
    step = torch.cat([(p.detach() - q.detach()).flatten() for p, q in zip(m.parameters(), start.parameters())])
    assert torch.allclose(step.abs(), torch.full_like(step, 0.01), rtol=1e-3)  # SGD's one-cycle start is ~1e-6

    recipe3 = TrainRecipe(epochs=3, batch_size=4, optimizer="adam", learning_rate=0.01, weight_decay=0.0)
    straight = model()
    train_child(straight, x, y, None, None, recipe3, seed=0, device=cpu)
    paused = model()
    first = train_child(paused, x, y, None, None, recipe3, seed=0, device=cpu, stop_epoch=1)
    train_child(paused, x, y, None, None, recipe3, seed=0, device=cpu, resume=first.state)
    for a, b in zip(straight.parameters(), paused.parameters()):
        assert torch.equal(a, b)


def test_an_unknown_optimizer_is_refused_with_the_choices():
    from edgenas.errors import ConfigError

    with pytest.raises(ConfigError, match="sgd.*adam"):
        TrainRecipe(optimizer="rmsprop")
