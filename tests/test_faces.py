"""dlib detection, alignment, face policies, the detection cache, EXIF orientation, odd JPEGs, Dask."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from deid import faces
from deid.faces import (
    DetectionCache, FacePolicy, ImageTooSmallError, MultipleFacesError, NoFaceError, SmallFaceError,
    align_face, apply_exif_orientation, detect_faces, exif_orientation, model_dir,
)
from deid.imageio import decode_image
from deid.ingest import Processed, process_file
from deid.preprocessing import PreprocessConfig

BOX = (175, 76, 266, 166)  # the astronaut's face in skimage's photo


@pytest.fixture(scope="module")
def astro() -> np.ndarray:
    from skimage.data import astronaut

    return astronaut()


def _crop(img, cx=220, cy=121, side=250):
    t, l = max(0, cy - side // 2), max(0, cx - side // 2)
    return np.ascontiguousarray(img[t : t + side, l : l + side])


def _jpeg(rgb: np.ndarray, orientation: int | None = None) -> bytes:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    if orientation is None:
        return data
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd
    app1 = b"Exif\x00\x00" + tiff
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


def _cfg(**faces_kw) -> PreprocessConfig:
    return PreprocessConfig(size=64, align="dlib", faces=FacePolicy(**faces_kw))


def test_model_files_found_without_importing_the_package():
    d = model_dir()
    assert (d / "shape_predictor_5_face_landmarks.dat").is_file()
    assert (d / "mmod_human_face_detector.dat").is_file()
    assert "face_recognition_models" not in sys.modules


def test_detects_the_astronaut_with_landmarks(astro):
    found = detect_faces(astro, FacePolicy(upsample=0))
    assert len(found) == 1
    d = found[0]
    inter = max(0, min(d.box[2], BOX[2]) - max(d.box[0], BOX[0])) * max(0, min(d.box[3], BOX[3]) - max(d.box[1], BOX[1]))
    assert inter / d.area > 0.7
    pts = np.array(d.landmarks)
    assert pts.shape == (5, 2)
    assert (pts[:, 0] > d.box[0] - 5).all() and (pts[:, 0] < d.box[2] + 5).all()
    gray = cv2.cvtColor(astro, cv2.COLOR_RGB2GRAY)
    assert len(detect_faces(gray, FacePolicy(upsample=0))) == 1


def test_alignment_undoes_rotation_and_keeps_channels(astro):
    crop = _crop(astro)
    m = cv2.getRotationMatrix2D((125.0, 125.0), 20, 1.0)
    rotated = cv2.warpAffine(crop, m, (250, 250), borderMode=cv2.BORDER_REFLECT)
    cfg = _cfg(upsample=1)
    a = align_face(crop, cfg=cfg).astype(np.float32)
    b = align_face(rotated, cfg=cfg).astype(np.float32)
    assert a.shape == (64, 64, 3) and a.dtype == np.float32
    corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    naive = cv2.resize(rotated[30:190, 40:200], (64, 64)).astype(np.float32)
    naive_ref = cv2.resize(crop[30:190, 40:200], (64, 64)).astype(np.float32)
    assert corr > 0.9 > np.corrcoef(naive.ravel(), naive_ref.ravel())[0, 1] - 0.05
    g = align_face(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cfg=cfg)
    assert g.shape == (64, 64) and g.dtype == np.uint8


def test_several_faces_policy(astro):
    big = _crop(astro)
    small = cv2.resize(big, (150, 150), interpolation=cv2.INTER_AREA)
    pair = np.zeros((250, 420, 3), np.uint8)
    pair[:, :250], pair[50:200, 265:415] = big, small
    events: list[str] = []
    one_pass = {"upsample_first": None}  # the small face (~54 px) is found at upsample 1 only
    chip = align_face(pair, cfg=_cfg(**one_pass), events=events)
    assert "multiple_faces_kept_largest" in events
    ref = align_face(big, cfg=_cfg(**one_pass))
    assert np.abs(chip.astype(int) - ref.astype(int)).mean() < 12  # the big face was kept
    with pytest.raises(MultipleFacesError, match="pair.jpg: 2 faces"):
        align_face(pair, cfg=_cfg(on_multiple="quarantine", **one_pass), where="pair.jpg")
    # staged, upsample 0 finds the big face alone and the retry does not run: the small one is never seen
    events = []
    assert align_face(pair, cfg=_cfg(on_multiple="quarantine"), events=events).shape == (64, 64, 3)
    assert events == ["detected_upsample_0"]
    pair2 = np.zeros((250, 465, 3), np.uint8)
    pair2[:, :250], pair2[25:225, 265:465] = big, cv2.resize(big, (200, 200), interpolation=cv2.INTER_AREA)
    with pytest.raises(MultipleFacesError, match="pair2.jpg: 2 faces"):  # faces both passes see count as before
        align_face(pair2, cfg=_cfg(on_multiple="quarantine"), where="pair2.jpg")


def test_small_face_and_tiny_image_policies(astro):
    small = cv2.resize(_crop(astro), (150, 150), interpolation=cv2.INTER_AREA)  # face ~54 px
    with pytest.raises(SmallFaceError, match="below min_face=70"):
        align_face(small, cfg=_cfg(min_face=70))
    events: list[str] = []
    assert align_face(small, cfg=_cfg(min_face=70, on_small="keep"), events=events).shape == (64, 64, 3)
    assert "small_face_kept" in events
    with pytest.raises(ImageTooSmallError, match="tiny.jpg: image 20×20"):
        align_face(np.zeros((20, 20), np.uint8), cfg=_cfg(), where="tiny.jpg")


def test_no_face_policy():
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.integers(0, 256, (200, 200), dtype=np.uint8), (0, 0), 3)
    with pytest.raises(NoFaceError, match=r"noise.jpg: no face found \(hog detector, upsample 0, then 1\)"):
        align_face(noise, cfg=_cfg(), where="noise.jpg")
    events: list[str] = []
    assert align_face(noise, cfg=_cfg(on_no_face="keep_image"), events=events).shape == (200, 200)
    assert events == ["retried_upsample_1", "no_face_kept_image"]


def test_detection_cache_skips_the_detector(astro, tmp_path, monkeypatch):
    crop = _crop(astro)
    cfg = _cfg(cache_dir=str(tmp_path / "cache"))
    ev1: list[str] = []
    first = align_face(crop, data_sha256="ab" * 32, cfg=cfg, events=ev1)
    assert ev1 == ["detected_upsample_0"]
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 1

    def boom(*a, **k):
        raise AssertionError("the detector ran although the detection was cached")

    monkeypatch.setattr(faces, "_detect_pass", boom)
    ev2: list[str] = []
    again = align_face(crop, data_sha256="ab" * 32, cfg=cfg, events=ev2)
    assert ev2 == ["detection_cached"] and np.array_equal(first, again)
    bigger = align_face(crop, data_sha256="ab" * 32, cfg=cfg.model_copy(update={"size": 96}))
    assert bigger.shape == (96, 96, 3)  # another crop size reuses the detection
    # each pass is cached on its own: a single pass at upsample 0 is the staged policy's first pass
    align_face(crop, data_sha256="ab" * 32, cfg=_cfg(cache_dir=str(tmp_path / "cache"), upsample=0))
    with pytest.raises(AssertionError, match="detector ran"):  # other detector settings do not
        align_face(crop, data_sha256="ab" * 32, cfg=_cfg(cache_dir=str(tmp_path / "cache"), upsample_first=None))
    assert DetectionCache(tmp_path / "cache").get("cd" * 32, FacePolicy().detector_key()) is None


def _small_face(astro, scale=0.55, border=30):
    """The astronaut's face at ~53 px (upsample 1's box) on a grey border: upsample 0 misses it."""
    n = int(250 * scale)
    out = np.full((n + 2 * border, n + 2 * border, 3), 128, np.uint8)
    out[border : border + n, border : border + n] = cv2.resize(_crop(astro), (n, n), interpolation=cv2.INTER_AREA)
    return out


def test_policy_upsamples_and_validation():
    assert FacePolicy().upsamples() == (0, 1)
    assert FacePolicy(upsample=2).upsamples() == (0, 1, 2)
    assert FacePolicy(upsample_first=None).upsamples() == (1,) == FacePolicy(upsample_first=1).upsamples()
    assert FacePolicy(upsample=0).upsamples() == (0,)
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"upsample_first \(2\) is above upsample \(1\)"):
        FacePolicy(upsample_first=2)
    with pytest.raises(ValidationError, match="upsample_first"):
        FacePolicy(upsample_first=4, upsample=3)


def test_staged_detection_retries_only_where_upsample_0_finds_nothing(astro, monkeypatch):
    big, small = _crop(astro), _small_face(astro)
    ev: list[str] = []
    staged = detect_faces(big, FacePolicy(), events=ev)
    assert ev == ["detected_upsample_0"] and staged == detect_faces(big, FacePolicy(upsample=0))
    assert detect_faces(small, FacePolicy(upsample=0)) == []
    ev = []
    found = detect_faces(small, FacePolicy(), events=ev)
    assert ev == ["retried_upsample_1"] and found == detect_faces(small, FacePolicy(upsample_first=None))
    assert len(found) == 1 and found[0].side >= FacePolicy().min_face
    calls: list[int] = []
    real = faces._detect_pass
    monkeypatch.setattr(faces, "_detect_pass", lambda img, pol, u: calls.append(u) or real(img, pol, u))
    ev = []
    detect_faces(big, FacePolicy(upsample_first=None), events=ev)
    detect_faces(big, FacePolicy(), events=ev)
    detect_faces(small, FacePolicy(), events=ev)
    assert calls == [1, 0, 0, 1]
    assert ev == ["detected_upsample_1", "detected_upsample_0", "retried_upsample_1"]


def test_staged_detection_counts_each_path_in_the_ingest_summary(astro, tmp_path):
    from deid.ingest import ingest_dataset

    noise = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8), (0, 0), 3)
    root = tmp_path / "lfw"
    for person, img in {"Big_Face": _crop(astro), "Small_Face": _small_face(astro), "Nobody_Here": noise}.items():
        (root / person).mkdir(parents=True)
        (root / person / f"{person}_0001.jpg").write_bytes(_jpeg(img))
    s = ingest_dataset("lfw", root, tmp_path / "out", preprocess=_cfg(), workers=1)
    assert s.written == 2 and s.reconciles()
    assert s.faces == {"detected_upsample_0": 1, "retried_upsample_1": 1}
    assert s.quarantine_reasons == {"decode: NoFaceError": 1}
    smaller = _cfg().model_copy(update={"size": 32})  # a rebuild, its detections from the cache
    again = ingest_dataset("lfw", root, tmp_path / "out", preprocess=smaller, workers=1)
    assert again.faces == {"detection_cached": 2}
    # one pass at upsample 1 reuses the small face's retry from the cache and runs only for the big one
    single = ingest_dataset("lfw", root, tmp_path / "out", preprocess=_cfg(upsample_first=None), workers=1)
    assert single.faces == {"detected_upsample_1": 1, "detection_cached": 1}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_opencv(orientation):
    rng = np.random.default_rng(orientation)
    img = cv2.resize(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8), (90, 60), interpolation=cv2.INTER_NEAREST)
    data = _jpeg(img, orientation)
    assert exif_orientation(data) == orientation
    ours = apply_exif_orientation(decode_image(data), data)
    theirs = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert ours.shape == theirs.shape and np.array_equal(ours, theirs)


def test_exif_rotated_photo_is_turned_upright(astro, tmp_path):
    sideways = np.ascontiguousarray(np.rot90(_crop(astro), k=1))  # stored turned left, EXIF 6 turns it back
    f = tmp_path / "rotated.jpg"
    f.write_bytes(_jpeg(sideways, 6))
    out = process_file(str(f), _cfg())
    assert isinstance(out, Processed) and out.height == 64
    assert process_file(str(f), _cfg(exif=False)).startswith("NoFaceError")
    assert exif_orientation(b"\x89PNG\r\n\x1a\n") == 1 and exif_orientation(b"\xff\xd8\xff\xe1\x00") == 1


def test_grayscale_cmyk_rgba_and_broken_inputs(astro, tmp_path):
    from PIL import Image

    crop = _crop(astro)
    (tmp_path / "gray.jpg").write_bytes(_jpeg(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)))
    Image.fromarray(crop).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    Image.fromarray(np.dstack([crop, np.full(crop.shape[:2], 255, np.uint8)])).save(tmp_path / "rgba.jpg", format="PNG")
    for name in ("gray.jpg", "cmyk.jpg", "rgba.jpg"):
        out = process_file(str(tmp_path / name), _cfg())
        assert isinstance(out, Processed), (name, out)
        assert (out.height, out.width, out.channels) == (64, 64, 1)
    cmyk = decode_image((tmp_path / "cmyk.jpg").read_bytes())
    assert cmyk.shape == crop.shape and np.abs(cmyk.astype(int) - crop.astype(int)).mean() < 12
    (tmp_path / "trunc.jpg").write_bytes(_jpeg(crop)[:200])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "small.jpg").write_bytes(_jpeg(crop[:24, :24]))
    assert process_file(str(tmp_path / "trunc.jpg"), _cfg()).startswith(("ImageDecodeError", "NoFaceError"))
    assert process_file(str(tmp_path / "empty.jpg"), _cfg()).startswith("ImageDecodeError")
    assert process_file(str(tmp_path / "small.jpg"), _cfg()).startswith("ImageTooSmallError")
    assert process_file(str(tmp_path / "absent.jpg"), _cfg()).startswith("unreadable")


def test_cnn_detector_finds_the_face(astro):
    small = cv2.resize(_crop(astro), (160, 160), interpolation=cv2.INTER_AREA)
    found = detect_faces(small, FacePolicy(detector="cnn", upsample=0))
    assert len(found) == 1 and found[0].score > 0
    l, t, r, b = found[0].box
    expect = (51, 49, 109, 106)  # the face box of the 250 px crop, scaled to 160 px
    inter = max(0, min(r, expect[2]) - max(l, expect[0])) * max(0, min(b, expect[3]) - max(t, expect[1]))
    assert inter / ((expect[2] - expect[0]) * (expect[3] - expect[1])) > 0.8


@pytest.mark.jaffe
def test_jaffe_faces_align(jaffe_dir):
    files = sorted(Path(jaffe_dir).glob("*.tiff"))[::20]
    outs = [process_file(str(f), _cfg(upsample=0)) for f in files]
    assert all(isinstance(o, Processed) for o in outs), [o for o in outs if isinstance(o, str)]


@pytest.mark.jaffe
def test_staged_detection_finds_jaffe_faces_that_upsample_0_misses(jaffe_dir):
    photos = [decode_image(f.read_bytes()) for f in sorted(Path(jaffe_dir).glob("*.tiff"))[::8]]
    for img in photos[:6]:  # faces upsample 0 finds keep exactly its detections
        assert detect_faces(img, FacePolicy()) == detect_faces(img, FacePolicy(upsample=0)) != []
    small = []  # each photo at 30-33 % (faces of ~40 px) at a seeded place on 256 px of blurred noise
    for i, img in enumerate(photos):
        rng = np.random.default_rng(i)
        f = rng.uniform(0.3, 0.33)
        face = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        noise = rng.normal(128, 40, (256, 256) + img.shape[2:]).astype(np.float32)
        canvas = cv2.GaussianBlur(noise, (0, 0), 2).clip(0, 255)
        top, left = rng.integers(0, 256 - face.shape[0]), rng.integers(0, 256 - face.shape[1])
        canvas[top : top + face.shape[0], left : left + face.shape[1]] = face
        small.append(canvas.astype(np.uint8))
    ev: list[str] = []
    staged = [detect_faces(img, FacePolicy(), events=ev) for img in small]
    missed_at_0 = sum(1 for img in small if not detect_faces(img, FacePolicy(upsample=0)))
    assert missed_at_0 >= len(small) - 2
    assert all(staged), "the retry at upsample 1 finds every small face"
    assert ev.count("retried_upsample_1") == missed_at_0


def _square(x):
    return x * x


def test_dask_ingest_matches_the_sequential_one(astro, tmp_path):
    from data_contracts import digest_table
    from deid.faces_dask import DaskConfig, map_ordered, open_client
    from deid.ingest import ingest_dataset

    root = tmp_path / "lfw"
    for k in range(6):
        person = f"Person_{k % 3}"
        img = np.clip(_crop(astro, cx=212 + 3 * k).astype(np.float32) * (0.85 + 0.03 * k), 0, 255).astype(np.uint8)
        (root / person).mkdir(parents=True, exist_ok=True)
        (root / person / f"{person}_{k:04d}.jpg").write_bytes(_jpeg(img))
    cfg = _cfg()
    seq = ingest_dataset("lfw", root, tmp_path / "seq", preprocess=cfg, workers=1)
    dcfg = DaskConfig(n_workers=2, max_in_flight=2, local_directory=str(tmp_path / "dask"))
    par = ingest_dataset("lfw", root, tmp_path / "par", preprocess=cfg, workers=1, chunk=2, dask=dcfg)
    assert par.written == seq.written == 6 and par.reconciles()
    assert digest_table(tmp_path / "par" / "images") == digest_table(tmp_path / "seq" / "images")
    assert par.faces == {"detected_upsample_0": 6}
    with open_client(dcfg) as client:  # a generator of jobs, consumed through a window of 3, in order
        assert list(map_ordered(client, _square, (i for i in range(20)), max_in_flight=3)) == [i * i for i in range(20)]
