"""Images on disk read a chunk at a time: views read nothing, reads give the library's float images."""

from __future__ import annotations

import numpy as np
import pytest

from deid.data import load_image_set, open_image_set
from deid.pixels import Pixels, chunks, map_pixels, write_pixels


@pytest.fixture
def stored(tmp_path):
    u = np.random.default_rng(0).integers(0, 256, size=(37, 1, 5, 4), dtype=np.uint8)
    return u, write_pixels(tmp_path / "x.npy", u.shape, (u[s:s + 10] for s in range(0, len(u), 10)))


def test_views_index_like_arrays_and_read_float_images(stored):
    u, X = stored
    f = u.astype(np.float32) / 255
    assert X.shape == f.shape and len(X) == 37
    np.testing.assert_array_equal(np.asarray(X), f)
    mask = (np.arange(37) % 3) == 0
    idx = np.array([5, 1, 30, 1])
    for key in (slice(3, 20, 2), mask, idx, slice(None, None, -1)):
        np.testing.assert_array_equal(np.asarray(X[key]), f[key])
    np.testing.assert_array_equal(np.asarray(X[mask][np.array([2, 0])]), f[mask][np.array([2, 0])])
    np.testing.assert_array_equal(X[4], f[4])
    assert isinstance(X[mask], Pixels)  # a view: nothing read until asked
    with pytest.raises(IndexError):
        X[37]
    with pytest.raises(IndexError):
        X[np.ones(5, bool)]


def test_chunks_cover_every_row_once(stored):
    u, X = stored
    got = np.concatenate([c for _, c in chunks(X[::2], rows=4)])
    np.testing.assert_array_equal(got, u[::2].astype(np.float32) / 255)


def test_a_short_write_leaves_no_file(tmp_path):
    u = np.zeros((4, 1, 2, 2), np.uint8)
    with pytest.raises(ValueError, match="3 rows written"):
        write_pixels(tmp_path / "x.npy", u.shape, [u[:3]])
    assert list(tmp_path.iterdir()) == []


def test_map_pixels_applies_a_function_chunk_by_chunk(stored, tmp_path):
    u, X = stored
    Y = map_pixels(lambda c: 1.0 - c, X, tmp_path / "y.npy")
    np.testing.assert_array_equal(Y.read_uint8(), 255 - u)


def test_an_opened_table_equals_the_loaded_one_and_is_decoded_once(ferg_images, tmp_path):
    mem = load_image_set(ferg_images)
    disk = open_image_set(ferg_images, tmp_path / "cache")
    assert isinstance(disk.X, Pixels)
    np.testing.assert_array_equal(np.asarray(disk.X), mem.X)
    for k in ("image_id", "split", "identity", "label"):
        assert list(getattr(disk, k)) == list(getattr(mem, k))
    assert disk.attributes.keys() == mem.attributes.keys()
    stores = list((tmp_path / "cache").glob("pixels-*.npy"))
    assert len(stores) == 1
    before = stores[0].stat().st_mtime_ns
    test = open_image_set(ferg_images, tmp_path / "cache").of_split("test")
    assert stores[0].stat().st_mtime_ns == before  # reused, not decoded again
    np.testing.assert_array_equal(np.asarray(test.X), mem.of_split("test").X)
