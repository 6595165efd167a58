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
