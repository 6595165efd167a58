"""CNNClassifier's step budget: a small set gets enough updates to learn."""

import numpy as np
import pytest
import torch

from deid.models import CNNClassifier
from deid.models.classifier import epochs_for


@pytest.mark.parametrize("epochs,n,batch,min_steps,expected", [
    (15, 1000, 64, 0, 15),      # no floor: the epoch budget
    (15, 1000, 64, 200, 15),    # 16 steps per epoch × 15 = 240 ≥ 200
    (15, 129, 64, 200, 67),     # 3 steps per epoch: raised to reach 200 steps
    (2, 10, 32, 5, 5),          # one (short) batch per epoch
])
def test_epochs_for_reaches_the_step_floor(epochs, n, batch, min_steps, expected):
    assert epochs_for(epochs, n, batch, min_steps) == expected


def test_a_small_set_learns_only_with_the_step_floor():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 10)
    X = rng.normal(0.5, 0.05, (40, 1, 16, 16)).astype(np.float32)
    for k in range(4):  # a bright quadrant per class
        X[y == k, :, (k // 2) * 8:(k // 2) * 8 + 8, (k % 2) * 8:(k % 2) * 8 + 8] += 0.4
    short = CNNClassifier(epochs=1, width=4, batch_size=32, augment=False, early_stopping=0).fit(X, y)
    floor = CNNClassifier(epochs=1, width=4, batch_size=32, augment=False, early_stopping=0, min_steps=120).fit(X, y)
    assert len(short.history_) == 1 and len(floor.history_) == 60
    assert floor.score(X, y) == 1.0 and short.score(X, y) < 1.0


def test_augmentation_flips_only_when_asked_and_keeps_the_old_draws():
    from deid.models.classifier import _augment

    x = torch.full((64, 1, 8, 8), 0.2)
    x[:, :, :, 0] = 0.8  # a bright left column
    plain = _augment(x, torch.Generator().manual_seed(0), shift=0, flip=False)
    flipped = _augment(x, torch.Generator().manual_seed(0), shift=0, flip=True)
    assert plain.shape == flipped.shape == x.shape
    assert (plain[:, 0, 0].argmax(1) == 0).all()  # no flips without flip=True
    right = flipped[:, 0, 0].argmax(1) == 7
    assert 10 < int(right.sum()) < 54  # about half the batch mirrored, the rest as it was
    assert torch.equal(flipped[~right], plain[~right])  # same shift and brightness draws as without flips
    g = torch.Generator().manual_seed(3)
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
    gain = 1.0 + 0.1 * (torch.rand(64, 1, 1, 1, generator=g) - 0.5)
    expected = (torch.roll(x, shifts=(dy, dx), dims=(2, 3)) * gain).clamp(0, 1)
    assert torch.equal(_augment(x, torch.Generator().manual_seed(3)), expected)  # the defaults: as before
