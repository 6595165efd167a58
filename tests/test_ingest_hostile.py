"""Ingestion of hostile or odd input: decompression bombs, decoder crashes, tiny and multi-page
images, symlinks out of the root, special files, label conflicts, look-alike names, stale reuse."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from data_contracts import IMAGES_SCHEMA, QUARANTINE_SCHEMA, read_table
from deid.ingest import ingest_dataset
from deid.preprocessing import PreprocessConfig

CFG = PreprocessConfig(size=16)


def _png(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def _ferg(root: Path, chars=("aia", "ray"), n=2, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for c in chars:
        for e in ("joy", "anger"):
            for i in range(1, n + 1):
                _png(root / "FERG_DB_256" / c / f"{c}_{e}" / f"{c}_{e}_{i}.png", rng.integers(0, 255, (24, 24), np.uint8))
    return root / "FERG_DB_256"


def _jaffe(root: Path, ids=("KA", "KL")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for ident in ids:
        for k, code in enumerate(("AN", "HA"), start=1):
            ok, buf = cv2.imencode(".tiff", rng.integers(0, 255, (24, 24), np.uint8))
            (root / f"{ident}.{code}{k}.{k}.tiff").write_bytes(buf.tobytes())
    return root


def _quarantine(out: Path) -> dict[str, str]:
    q = read_table(out / "quarantine", QUARANTINE_SCHEMA)
    return dict(zip(q.column("source_path").to_pylist(), q.column("reason").to_pylist()))


def _tiff_header(width: int, height: int) -> bytes:
    """A little-endian 8-bit grayscale TIFF whose header claims ``width × height``, with a 16-byte strip."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
            (273, 4, None), (277, 3, 1), (278, 4, height), (279, 4, 16)]
    strip_at = 8 + 2 + 12 * len(tags) + 4
    out = bytearray(b"II*\x00" + struct.pack("<IH", 8, len(tags)))
    for tag, typ, value in tags:
        value = strip_at if value is None else value
        out += struct.pack("<HHIHH", tag, typ, 1, value, 0) if typ == 3 else struct.pack("<HHII", tag, typ, 1, value)
    return bytes(out + struct.pack("<I", 0) + bytes(16))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.fixture(scope="module")
def png_bomb() -> bytes:
    """A complete, valid 30000×30000 1-bit black PNG of about 110 kB (decoded: 900 MB), made row by row."""
    side = 30000
    row = bytes(1 + side // 8)  # filter byte + 3750 bytes of zero bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


# --- sizes read from the header --------------------------------------------------------------


@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch', case='TIFF header (~140 bytes) claiming 60000×60000',
                         before='whole ingest crashed (cv2.error), nothing written, file not named',
                         after="quarantined 'decode: too many pixels' from the header, batch continues")
def test_tiff_header_claiming_60000_squared_is_quarantined_and_batch_continues(tmp_path):
    root = _jaffe(tmp_path / "jaffe")
    bomb = _tiff_header(60000, 60000)
    assert len(bomb) < 300
    (root / "KA.NE1.9.tiff").write_bytes(bomb)
    s = ingest_dataset("jaffe", root, tmp_path / "out", preprocess=CFG, workers=1)
    assert (s.written, s.quarantined) == (4, 1) and s.reconciles()
    reason = _quarantine(tmp_path / "out")["KA.NE1.9.tiff"]
    assert reason.startswith("too many pixels: KA.NE1.9.tiff")
    assert s.quarantine_reasons == {"decode: too many pixels": 1}


@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch', case='valid PNG of 30000×30000 (~110 kB on disk)',
                         before='accepted at 1.87 GB peak',
                         after='refused from its header, never decoded')
def test_png_bomb_is_refused_from_its_header(tmp_path, png_bomb):
    assert len(png_bomb) < 200_000
    root = _ferg(tmp_path / "raw")
    (root / "aia" / "aia_joy" / "aia_joy_9.png").write_bytes(png_bomb)
    s = ingest_dataset("ferg", root, tmp_path / "out", preprocess=CFG, workers=1)
    reason = _quarantine(tmp_path / "out")["aia/aia_joy/aia_joy_9.png"]
    assert reason == "too many pixels: aia_joy_9.png: 900,000,000 pixels > max_pixels 40,000,000"
    assert s.written == 8 and s.quarantine_reasons == {"decode: too many pixels": 1}


@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch', case='pixel limit set in config (preprocess.max_pixels)',
                         before="no limit but OpenCV's own",
                         after='exactly at the limit passes, one over is quarantined; limits above 150 M refused at load')
def test_pixel_limit_is_configurable(tmp_path):
    root = _ferg(tmp_path / "raw", chars=("aia",), n=1)
    _png(root / "aia" / "aia_joy" / "aia_joy_5.png", np.full((40, 50), 7, np.uint8))
    tight = ingest_dataset("ferg", root, tmp_path / "a", preprocess=CFG.model_copy(update={"max_pixels": 1999}),
                           workers=1)
    assert "2,000 pixels (50×40) > max_pixels 1,999" in _quarantine(tmp_path / "a")["aia/aia_joy/aia_joy_5.png"]
    assert tight.written == 2
    exact = ingest_dataset("ferg", root, tmp_path / "b", preprocess=CFG.model_copy(update={"max_pixels": 2000}),
                           workers=1)
    assert exact.written == 3 and exact.quarantined == 0
    with pytest.raises(ValidationError, match="max_pixels"):
        PreprocessConfig(max_pixels=200_000_000)


@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch', case='1×1 image',
                         before="became a flat 64×64 'face'",
                         after="quarantined 'too small' (min_side, default 16)")
def test_one_by_one_image_is_quarantined_not_stretched(tmp_path):
    root = _ferg(tmp_path / "raw", chars=("aia",), n=1)
    _png(root / "aia" / "aia_joy" / "aia_joy_5.png", np.full((1, 1), 200, np.uint8))
    _png(root / "aia" / "aia_joy" / "aia_joy_6.png", np.full((15, 300), 100, np.uint8))
    s = ingest_dataset("ferg", root, tmp_path / "out", preprocess=CFG, workers=1)
    q = _quarantine(tmp_path / "out")
    assert q["aia/aia_joy/aia_joy_5.png"] == "too small: aia_joy_5.png: 1×1, shorter side below min_side 16"
    assert q["aia/aia_joy/aia_joy_6.png"].startswith("too small: aia_joy_6.png: 300×15")
    assert s.written == 2 and s.quarantine_reasons == {"decode: too small": 2}
    loose = ingest_dataset("ferg", root, tmp_path / "loose", preprocess=CFG.model_copy(update={"min_side": 1}),
                           workers=1)
    assert loose.written == 4


def _multipage_tiff(path: Path, levels=(40, 120, 200)) -> Path:
    from PIL import Image

    pages = [Image.fromarray(np.full((24, 24), v, np.uint8)) for v in levels]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch', case='multi-page TIFF',
                         before='page 1 taken silently',
                         after='quarantined by default; multipage: first keeps page 1 with a note in the summary')
def test_multipage_tiff_is_quarantined_by_default_or_page_one_kept_with_a_note(tmp_path):
    root = _jaffe(tmp_path / "jaffe")
    _multipage_tiff(root / "KA.SU1.7.tiff")
    s = ingest_dataset("jaffe", root, tmp_path / "q", preprocess=CFG, workers=1)
    assert _quarantine(tmp_path / "q")["KA.SU1.7.tiff"].startswith("multi-page: KA.SU1.7.tiff: TIFF file with 3 pages")
    assert s.written == 4 and s.notes == {}
    first = ingest_dataset("jaffe", root, tmp_path / "f", preprocess=CFG.model_copy(update={"multipage": "first"}),
                           workers=1)
    assert first.written == 5 and first.quarantined == 0
    assert first.notes == {"kept page 1 of a multi-page file": 1}
    assert json.loads((tmp_path / "f" / "summary.json").read_text())["notes"] == first.notes
    t = read_table(tmp_path / "f" / "images", IMAGES_SCHEMA)
    row = t.filter(t.column("source_path").to_numpy(zero_copy_only=False) == "KA.SU1.7.tiff")
    page = cv2.imdecode(np.frombuffer(row.column("image")[0]["bytes"].as_py(), np.uint8), cv2.IMREAD_UNCHANGED)
    assert int(page.mean()) == 40  # page 1, not a later one


# --- decoder failures ---------------------------------------------------------------------


@pytest.mark.parametrize("exc", [RuntimeError("decoder blew up"), cv2.error("decoder blew up"),
                                 MemoryError("decoder blew up")], ids=["RuntimeError", "cv2.error", "MemoryError"])
@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch', case='decoder raises (RuntimeError, cv2.error, MemoryError)',
                         before='the batch aborted',
                         after='quarantine row naming the file and the error; batch continues')
def test_any_decoder_exception_quarantines_the_file_by_name(tmp_path, monkeypatch, exc):
    import deid.ingest as ingest

    real = ingest.decode_image

    def flaky(data, *, where="<bytes>"):
        if where == "ray_joy_2.png":
            raise exc
        return real(data, where=where)

    monkeypatch.setattr(ingest, "decode_image", flaky)
    root = _ferg(tmp_path / "raw")
    s = ingest_dataset("ferg", root, tmp_path / "out", preprocess=CFG, workers=1)
    reason = _quarantine(tmp_path / "out")["ray/ray_joy/ray_joy_2.png"]
    assert reason.startswith(f"{type(exc).__name__}: ray_joy_2.png: ") and "decoder blew up" in reason
    assert (s.written, s.quarantined) == (7, 1)


@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch', case='file rewritten between hashing and decoding',
                         before='untracked',
                         after="quarantined 'changed during ingest'")
def test_file_rewritten_during_ingest_is_quarantined(tmp_path, monkeypatch):
    import deid.ingest as ingest

    real = ingest._sha256_file
    monkeypatch.setattr(ingest, "_sha256_file", lambda p, limit=None: "0" * 64 if p.name == "aia_joy_1.png" else real(p, limit))
    root = _ferg(tmp_path / "raw")
    s = ingest_dataset("ferg", root, tmp_path / "out", preprocess=CFG, workers=1)
    assert _quarantine(tmp_path / "out")["aia/aia_joy/aia_joy_1.png"].startswith("changed during ingest")
    assert s.written == 7


# --- what the scan sees --------------------------------------------------------------------


@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch', case='symlink pointing outside the dataset root',
                         before='followed and ingested',
                         after="quarantined 'outside root'; target never read")
def test_symlink_out_of_the_root_is_refused(tmp_path):
    secret = _png(tmp_path / "elsewhere" / "secret.png", np.full((30, 30), 99, np.uint8))
    root = _ferg(tmp_path / "raw")
    (root / "aia" / "aia_joy" / "aia_joy_7.png").symlink_to(secret)
    (root / "ray" / "ray_joy").joinpath("ray_joy_8.png").symlink_to(root / "ray" / "ray_joy" / "ray_joy_1.png")
    (root / "aia" / "aia_fear").symlink_to(secret.parent, target_is_directory=True)
    s = ingest_dataset("ferg", root, tmp_path / "out", preprocess=CFG, workers=1)
    q = _quarantine(tmp_path / "out")
    assert q["aia/aia_joy/aia_joy_7.png"].startswith("outside root")
    assert q["aia/aia_fear"].startswith("outside root")
    assert q["ray/ray_joy/ray_joy_8.png"] == "duplicate of ray/ray_joy/ray_joy_1.png"  # inside the root: followed
    t = read_table(tmp_path / "out" / "images", IMAGES_SCHEMA)
    assert "aia/aia_joy/aia_joy_7.png" not in t.column("source_path").to_pylist()
    assert s.quarantine_reasons == {"dedupe: duplicate of ray/ray_joy/ray_joy_1.png": 1, "scan: outside root": 2}


@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch', case='symlink loop, dangling link, FIFO, folder named x.png, hidden files',
                         before='skipped without being counted',
                         after='counted: seen = written + quarantined + skipped by rule, in summary.json')
def test_every_entry_seen_is_counted_and_the_summary_says_so(tmp_path):
    root = _ferg(tmp_path / "raw")
    d = root / "aia" / "aia_joy"
    (d / ".DS_Store").write_bytes(b"\x00")
    (d / "._aia_joy_1.png").write_bytes(b"\x00")  # an AppleDouble twin
    os.mkfifo(d / "aia_joy_5.png")  # reading it would block forever
    (d / "aia_joy_6.png").mkdir()  # a folder named like an image
    _png(d / "aia_joy_6.png" / "inner.png", np.zeros((20, 20), np.uint8))
    (d / "aia_joy_7.png").symlink_to("aia_joy_7.png")  # a loop
    (d / "aia_joy_8.png").symlink_to("gone.png")  # dangling
    (root / "README.txt").write_text("not in a character folder")
    (root / "ray" / "ray_again").symlink_to(root / "ray", target_is_directory=True)  # a folder cycle
    out = tmp_path / "out"
    s = ingest_dataset("ferg", root, out, preprocess=CFG, workers=1)
    assert s.skipped == {"directory named like an image": 1, "folder already walked (symlink cycle)": 1,
                         "hidden": 2, "not a regular file": 1, "not in a character folder": 1}
    assert s.written == 8 and s.quarantined == 2
    assert s.seen == s.written + s.quarantined + sum(s.skipped.values()) == 16
    assert s.input == s.written + s.quarantined and s.reconciles()
    q = _quarantine(out)
    assert q["aia/aia_joy/aia_joy_7.png"].startswith("broken symlink")
    assert q["aia/aia_joy/aia_joy_8.png"].startswith("broken symlink")
    on_disk = json.loads((out / "summary.json").read_text())
    assert {"input", "written", "quarantined", "identities", "digest", "by_split", "seen", "skipped"} <= set(on_disk)
    assert on_disk["seen"] == 16 and on_disk["skipped"] == s.skipped
    assert s.model_copy(update={"seen": 17}).reconciles() is False


# --- labels ---------------------------------------------------------------------------------


@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch', case='same bytes filed under two identities',
                         before='whichever sorted first was kept',
                         after="every copy quarantined 'label conflict'")
def test_same_bytes_under_two_identities_is_a_label_conflict(tmp_path):
    root = _ferg(tmp_path / "raw")
    same = (root / "aia" / "aia_joy" / "aia_joy_1.png").read_bytes()
    (root / "ray" / "ray_joy" / "ray_joy_9.png").write_bytes(same)  # another identity: a conflict
    (root / "aia" / "aia_joy" / "aia_joy_9.png").write_bytes(same)  # the same identity too
    plain = (root / "ray" / "ray_anger" / "ray_anger_1.png").read_bytes()
    (root / "ray" / "ray_anger" / "ray_anger_9.png").write_bytes(plain)  # a plain duplicate
    out = tmp_path / "out"
    s = ingest_dataset("ferg", root, out, preprocess=CFG, workers=1)
    q = _quarantine(out)
    for p in ("aia/aia_joy/aia_joy_1.png", "aia/aia_joy/aia_joy_9.png", "ray/ray_joy/ray_joy_9.png"):
        assert q[p].startswith("label conflict: the same bytes are filed under 2 identities"), p
    assert "ray/ray_joy/ray_joy_9.png" in q["aia/aia_joy/aia_joy_1.png"]
    assert q["ray/ray_anger/ray_anger_9.png"] == "duplicate of ray/ray_anger/ray_anger_1.png"
    assert s.written == 7 and s.quarantine_reasons["dedupe: label conflict"] == 3
    t = read_table(out / "images", IMAGES_SCHEMA)
    assert "aia/aia_joy/aia_joy_1.png" not in t.column("source_path").to_pylist()


@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch', case='identity names differing by a Unicode look-alike (Kelvin sign)',
                         before='two identities',
                         after='NFKC-normalised: one identity')
def test_lookalike_identity_names_are_one_identity(tmp_path):
    root = _jaffe(tmp_path / "jaffe", ids=("KA",))
    ok, buf = cv2.imencode(".tiff", np.random.default_rng(5).integers(0, 255, (24, 24), np.uint8))
    (root / "\u212aA.NE1.5.tiff").write_bytes(buf.tobytes())  # KELVIN SIGN, not K
    s = ingest_dataset("jaffe", root, tmp_path / "out", preprocess=CFG, workers=1)
    assert s.written == 3 and s.identities == 1
    t = read_table(tmp_path / "out" / "images", IMAGES_SCHEMA)
    assert set(t.column("identity").to_pylist()) == {"KA"}


@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch', case='identities in summary.json',
                         before='counted scanned items (30 reported, 22 written)',
                         after='counts identities of written rows')
def test_identities_count_written_rows_only(tmp_path):
    root = _ferg(tmp_path / "raw", chars=("aia", "ray", "mery"))
    for f in (root / "mery").rglob("*.png"):
        f.write_bytes(b"not an image")
    s = ingest_dataset("ferg", root, tmp_path / "out", preprocess=CFG, workers=1)
    assert (s.written, s.quarantined, s.identities) == (8, 4, 2)


# --- reuse ----------------------------------------------------------------------------------


def _stored_png(path: Path, img: np.ndarray) -> Path:
    """PNG without compression: the file size depends only on the image's shape."""
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 0])
    assert ok
    path.write_bytes(buf.tobytes())
    return path


@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch', case='content changed with the same size and mtime (cp -p, rsync -t)',
                         before='stale ingest reused',
                         after='reuse keyed on content hashes: re-ingested')
def test_rewrite_with_same_size_and_mtime_is_not_reused(tmp_path):
    root = _ferg(tmp_path / "raw")
    f = root / "aia" / "aia_joy" / "aia_joy_1.png"
    img = np.random.default_rng(9).integers(0, 255, (24, 24), np.uint8)
    _stored_png(f, img)
    out = tmp_path / "out"
    first = ingest_dataset("ferg", root, out, preprocess=CFG, workers=1)
    st = f.stat()
    img[3:9, 3:9] = 255 - img[3:9, 3:9]
    _stored_png(f, img)  # what `cp -p` or `rsync -t` leave: new bytes, same size, same mtime
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (f.stat().st_size, f.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    again = ingest_dataset("ferg", root, out, preprocess=CFG, workers=1)
    assert not again.reused and again.written == first.written
    assert again.fingerprint != first.fingerprint and again.digest != first.digest
    unchanged = ingest_dataset("ferg", root, out, preprocess=CFG, workers=1)
    assert unchanged.reused and unchanged.digest == again.digest


@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch', case='a 40 GB sparse file named like an image; a PNG with 1 GB of trailing bytes',
                         before='MemoryError outside the per-file catch after 3.6 min: nothing written, no quarantine row',
                         after="quarantined 'too large' from its size on disk, before a byte is read; the batch goes on")
def test_an_oversized_file_is_quarantined_from_its_size_and_the_batch_goes_on(tmp_path):
    root = _ferg(tmp_path / "raw")
    huge = root / "aia" / "aia_joy" / "aia_joy_9.png"
    with open(huge, "wb") as fh:  # sparse: 40 GB on paper, nothing on disk
        fh.truncate(40 * 2**30)
    cfg = CFG.model_copy(update={"max_file_bytes": 2**20})
    big = root / "ray" / "ray_joy" / "ray_joy_9.png"
    _png(big, np.zeros((20, 20), np.uint8))
    with open(big, "ab") as fh:
        fh.write(b"\0" * (2**20 + 1))  # a real PNG, and a tail past the limit
    s = ingest_dataset("ferg", root, tmp_path / "out", preprocess=cfg, workers=1)
    assert s.reconciles() and s.written == 8
    q = _quarantine(tmp_path / "out")
    assert q["aia/aia_joy/aia_joy_9.png"].startswith("too large") and q["ray/ray_joy/ray_joy_9.png"].startswith("too large")
