"""proxy-morph's draws: reproducible with a draw seed, never replayed from batch to batch."""

from __future__ import annotations

import numpy as np

from deid.data import load_image_set
from deid.methods import get_method
from deid.methods.base import draw_stream


def _drawn(ferg_images, draw_seed, batches):
    """The proxy rows drawn for each batch of the test split (recorded at the method's own draw)."""
    s = load_image_set(ferg_images)
    tr, te = s.split == "train", np.flatnonzero(s.split == "test")
    m = get_method("proxy-morph", k=2, max_weight=0.9, draw_seed=draw_seed).fit(s.X[tr], s.identity[tr], s.label[tr])
    seen: list[list[tuple[int, ...]]] = []
    real = m._proxies

    def record(label, own, rng):
        rows, w = real(label, own, rng)
        seen[-1].append(tuple(rows))
        return rows, w

    m._proxies = record
    for b in batches(te):
        seen.append([])
        m.transform(s.X[b], s.identity[b], s.label[b])
    return seen


def test_a_draw_seed_reproduces_each_batch_and_two_batches_draw_apart(ferg_images):
    """With one draw seed the i-th images of two batches (same labels, in a table sorted by label) drew
    the same proxies; each batch now has its own stream, and a rerun draws the same."""
    def two_halves_of_one_label(te):
        s = load_image_set(ferg_images)
        lab = s.label[te]
        one = te[lab == lab[0]]
        half = len(one) // 2
        return [one[:half], one[half:2 * half]]

    a, b = _drawn(ferg_images, 0, two_halves_of_one_label)
    assert a != b  # two batches of one label do not replay one stream
    again = _drawn(ferg_images, 0, two_halves_of_one_label)
    assert again == [a, b]  # the same seed and pixels: the same draws, in any process


def test_without_a_draw_seed_every_call_draws_afresh():
    X = np.zeros((2, 1, 4, 4), np.float32)
    assert draw_stream(None, X).integers(1 << 62) != draw_stream(None, X).integers(1 << 62)
    assert draw_stream(3, X).integers(1 << 62) == draw_stream(3, X).integers(1 << 62)
    assert draw_stream(3, X).integers(1 << 62) != draw_stream(3, X + 1).integers(1 << 62)
