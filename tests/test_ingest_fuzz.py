"""Property-based fuzz of every dataset loader through ``ingest_dataset``.

Each registered loader has a strategy that writes a small hostile tree: its own layout with odd
names, image bytes that are valid, truncated, random, empty or whose header claims a huge size,
symlinks (out of the root, dangling, looping), FIFOs, annotation and metadata files with junk
lines, manifest and Hugging Face tables with missing cells and wrong types. Next to the root sits
a folder of "secret" files the tree points at (``../``, absolute paths, symlinks). On every case:

* ingest either returns a summary that reconciles (``seen = written + quarantined + skipped``,
  and the tables hold exactly that many rows), or raises a :class:`~deid.errors.DeidError` of one
  line, for a layout that cannot be read at all; no other exception escapes;
* no secret file is opened, listed or read (Python's ``open``/``scandir`` audit events, the files'
  access times, which C++ readers such as pyarrow also bump, and their hashes in the tables).

A few hundred cases run in the suite; ``DEID_FUZZ_EXAMPLES=<n>`` runs ``n`` per loader.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import sys
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from data_contracts import IMAGES_SCHEMA, QUARANTINE_SCHEMA, read_table
from deid.datasets.base import BUILTIN_LOADERS
from deid.errors import DeidError
from deid.ingest import ingest_dataset
from deid.preprocessing import PreprocessConfig

CFG = PreprocessConfig(size=32)
EXAMPLES = int(os.environ.get("DEID_FUZZ_EXAMPLES", "60"))  # per loader
VERBOSE = bool(os.environ.get("DEID_FUZZ_VERBOSE"))  # print each error a case ends in
HANG_SECONDS = 20  # one case of a handful of tiny files; longer is a read that blocks (a FIFO opened)

FUZZ = settings(derandomize=True, max_examples=EXAMPLES, deadline=None, database=None,
                phases=(Phase.explicit, Phase.generate),  # no shrinking: a failure prints its whole tree
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])

def rare(n: int):
    """True one time in ``n + 1``; False is the simple value, the one Hypothesis tries first."""
    return st.integers(0, n).map(lambda x: x == n)


# --- image bytes ---------------------------------------------------------------------------------


def _encode(ext: str, seed: int, h: int, w: int, color: bool) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (h, w, 3) if color else (h, w), np.uint8)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_claiming(w: int, h: int, tail: bytes) -> bytes:
    """A PNG signature and a valid IHDR claiming ``w × h``, then whatever ``tail`` is."""
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + tail


@st.composite
def valid_image(draw, exts=(".png", ".jpg", ".tiff")) -> bytes:
    return _encode(draw(st.sampled_from(exts)), draw(st.integers(0, 2**16)), draw(st.integers(16, 40)),
                   draw(st.integers(16, 40)), draw(st.booleans()))


@st.composite
def image_bytes(draw, exts=(".png", ".jpg", ".tiff")) -> bytes:
    """Bytes a file named like an image may hold: mostly valid, otherwise hostile."""
    kind = draw(st.sampled_from(["valid"] * 6 + ["truncated", "random", "empty", "huge", "tiny", "text",
                                                 "jpeg-junk", "gif-huge", "png-zero"]))
    if kind == "valid":
        return draw(valid_image(exts))
    if kind == "truncated":
        data = draw(valid_image(exts))
        return data[: draw(st.integers(1, len(data) - 1))]
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=300))
    if kind == "empty":
        return b""
    if kind == "huge":
        w, h = draw(st.sampled_from([(2**31 - 1, 2**31 - 1), (60000, 60000), (1, 2**31 - 1), (100000, 3)]))
        return _png_claiming(w, h, draw(st.sampled_from([b"", _png_chunk(b"IEND", b""), b"\x00" * 64])))
    if kind == "png-zero":
        return _png_claiming(0, 0, _png_chunk(b"IEND", b""))
    if kind == "tiny":
        return _encode(".png", 0, draw(st.integers(1, 3)), draw(st.integers(1, 3)), False)
    if kind == "text":
        return draw(st.text(max_size=60)).encode("utf-8", "surrogatepass")
    if kind == "gif-huge":
        return b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00" * 20
    return b"\xff\xd8\xff\xe0" + draw(st.binary(max_size=100))  # jpeg-junk


# --- what a tree holds ---------------------------------------------------------------------------

#: names where a loader expects a person, label, file stem...: unicode, look-alikes, spreadsheet
#: "missing" spellings, control characters, names that look like paths or like images
ODD_NAMES = ["nan", "NaN", "None", "null", "N/A", "#N/A", " ", " lead", "trail ", "-", "x.png", "a.b.c",
             "a\nb", "tab\there", "\u212aA", "ｊｏｙ", "日本語", "emoji😀", "e\u0301", "\u200b", "CON", "a\\b",
             "..a", "*", "?", "'\"", "%s{}", "-1", "0", "1e309", "true", "_", "__", "a" * 120]
odd_name = st.one_of(st.sampled_from(ODD_NAMES),
                     st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
                             min_size=1, max_size=12)).filter(lambda s: s not in (".", "..")
                                                              and len(s.encode()) < 200)


@dataclass
class Tree:
    """Files to write under the root: ``entries`` are (relative path, content) with content one of
    ``bytes``, ``("link", target)``, ``("fifo",)`` or ``("dir",)``; ``options`` the loader options."""

    entries: list[tuple[str, object]] = field(default_factory=list)
    options: dict = field(default_factory=dict)

    def add(self, rel: str, content) -> None:
        self.entries.append((rel, content))


#: link targets: a secret file or folder outside the root (by ../ or absolutely), a file inside,
#: nothing (dangling), the link itself or its folder (loops)
LINK_TARGETS = ["secret-file", "secret-file-abs", "secret-dir", "dangling", "self", "parent", "root"]


def _with_image(exts=(".png", ".jpg", ".tiff")):
    """Content of a file named like an image: valid bytes half the time, else hostile bytes, a link,
    a FIFO or a folder."""
    return st.sampled_from(["valid"] * 10 + ["bytes"] * 6 + ["link"] * 2 + ["fifo", "dir"]).flatmap(
        lambda kind: {"valid": valid_image(exts), "bytes": image_bytes(exts),
                      "link": st.tuples(st.just("link"), st.sampled_from(LINK_TARGETS)),
                      "fifo": st.just(("fifo",)), "dir": st.just(("dir",))}[kind])


@st.composite
def hostile_extras(draw, folders: list[str]) -> list[tuple[str, object]]:
    """Hidden files, FIFOs, image-named folders and links out of the root, in the layout's folders."""
    out = []
    for _ in range(draw(st.integers(0, 3))):
        d = draw(st.sampled_from(folders))
        name = draw(st.sampled_from([".hidden.png", "fifo.png", "folder.jpg", "out.png", "outdir", "loop",
                                     "README.md", "notes.txt", "empty.png", "abs.jpg"]))
        rel = f"{d}/{name}" if d else name
        content = {".hidden.png": draw(valid_image()), "fifo.png": ("fifo",), "folder.jpg": ("dir",),
                   "out.png": ("link", "secret-file"), "outdir": ("link", "secret-dir"), "loop": ("link", "parent"),
                   "README.md": b"# a dataset\n", "notes.txt": b"", "empty.png": b"",
                   "abs.jpg": ("link", "secret-file-abs")}[name]
        out.append((rel, content))
    return out


# --- one strategy per loader ---------------------------------------------------------------------


@st.composite
def ferg_tree(draw) -> Tree:
    from deid.datasets.ferg import FERG_CHARACTERS, FERG_EXPRESSIONS

    t = Tree()
    top = draw(st.sampled_from(["FERG_DB_256/", ""]))
    char = st.one_of(st.sampled_from(FERG_CHARACTERS), odd_name)
    expr = st.one_of(st.sampled_from(FERG_EXPRESSIONS), st.sampled_from(["contempt", "Joy", "joy1"]), odd_name)
    folders = [top.rstrip("/")]
    for _ in range(draw(st.integers(1, 6))):
        c, e, n = draw(char), draw(expr), draw(st.integers(0, 9999))
        c2, e2 = (c, e) if not draw(rare(4)) else (draw(char), draw(expr))
        stem = f"{c2}_{e2}_{n}" if not draw(rare(4)) else draw(odd_name)
        ext = draw(st.sampled_from([".png", ".png", ".jpg", ".PNG", ".jpeg", ".gif", ".txt", ""]))
        folder = f"{top}{c}/{c}_{e}" if not draw(rare(5)) else f"{top}{c}"
        folders.append(folder)
        t.add(f"{folder}/{stem}{ext}", draw(_with_image((".png", ".jpg"))))
    if draw(st.booleans()):
        keys = [rel[len(top):] for rel, _ in t.entries] + [draw(odd_name)]
        header = "file,pose_bin,light" if not draw(rare(4)) else draw(st.sampled_from(
            ["file,pose_bin,pose_bin", "file", "path,x", "", "file,\u212a"]))
        lines = [header]
        for k in draw(st.lists(st.sampled_from(keys), max_size=6, unique=not draw(rare(4)))):
            vals = (["1", "0.5"] if not draw(rare(4)) else
                    draw(st.lists(st.sampled_from(["1", "-2", "nan", "inf", "x", "", "1e400"]), max_size=3)))
            lines.append(",".join([k, *vals]))
        t.add(f"{top}attributes.csv", "\n".join(lines).encode())
    t.entries += draw(hostile_extras(folders))
    t.options = draw(st.sampled_from([{}, {"expressions": None}, {"attributes": False}, {"characters": ["aia"]},
                                      {"allow_unknown_characters": False}]))
    return t


@st.composite
def jaffe_tree(draw) -> Tree:
    t = Tree()
    for _ in range(draw(st.integers(1, 6))):
        ident = draw(st.sampled_from(["KA", "KL", "ka", "K\u212a", "XYZ", "1A"]))
        code = draw(st.sampled_from(["AN", "HA", "SU", "ne", "XX", "A"]))
        name = (f"{ident}.{code}{draw(st.integers(0, 9))}.{draw(st.integers(0, 999))}"
                f"{draw(st.sampled_from(['.tiff', '.tiff', '.tif', '.TIFF', '.png', '']))}")
        if draw(rare(5)):
            name = draw(odd_name)
        t.add(name, draw(_with_image((".tiff", ".png", ".jpg"))))
    if draw(st.booleans()):
        t.add(f"{draw(odd_name)}/KA.AN1.1.tiff", draw(valid_image((".tiff",))))
    t.entries += draw(hostile_extras([""]))
    return t


@st.composite
def lfw_tree(draw) -> Tree:
    t = Tree()
    top = draw(st.sampled_from(["lfw/", "lfw-deepfunneled/", ""]))
    people = draw(st.lists(st.one_of(st.sampled_from(["Jane_Doe", "John_Roe", "Kate_Moss", "\u212aate_Moss"]),
                                     odd_name), min_size=1, max_size=4))
    folders = [top.rstrip("/")]
    for _ in range(draw(st.integers(1, 6))):
        p = draw(st.sampled_from(people))
        q = p if not draw(rare(4)) else draw(st.sampled_from(people))
        stem = f"{q}_{draw(st.integers(0, 99999)):04d}" if not draw(rare(4)) else draw(odd_name)
        ext = draw(st.sampled_from([".jpg", ".jpg", ".png", ".JPEG", ".bmp", ""]))
        sub = "" if not draw(rare(5)) else "deeper/"
        folders.append(f"{top}{p}")
        t.add(f"{top}{p}/{sub}{stem}{ext}", draw(_with_image((".jpg", ".png"))))
    if draw(st.booleans()):
        lines = [draw(st.sampled_from(["# comment", ""]))]
        lines.append(draw(st.sampled_from(["#\tperson\timagenum\tMale\tSmiling", "#\tperson\timagenum",
                                           "person\timagenum\tMale", "#\tperson\timagenum\tMale\tMale"])))
        for _ in range(draw(st.integers(0, 5))):
            cells = [draw(st.sampled_from([*people, "Jane Doe", ""])), draw(st.sampled_from(["1", "0001", "x", "-1"]))]
            cells += draw(st.lists(st.sampled_from(["0.5", "-1.2", "nan", "inf", "x", ""]), max_size=3))
            lines.append("\t".join(cells))
        t.add(f"{top}lfw_attributes.txt", "\n".join(lines).encode())
    t.entries += draw(hostile_extras(folders))
    t.options = draw(st.sampled_from([{}, {"min_images_per_person": 2}, {"attributes": False}]))
    return t


@st.composite
def celeba_tree(draw) -> Tree:
    t = Tree()
    folder = draw(st.sampled_from(["img_align_celeba", "Img/img_align_celeba", "img_celeba",
                                   "img_align_celeba/img_align_celeba"]))
    stems = [f"{n:06d}" for n in draw(st.lists(st.integers(1, 30), min_size=1, max_size=6, unique=True))]
    for s in stems:
        ext = draw(st.sampled_from([".jpg", ".jpg", ".png", ".JPG", ".txt"]))
        t.add(f"{folder}/{s}{ext}", draw(_with_image((".jpg", ".png"))))
    keys = stems + [draw(odd_name), "999999"]
    anno = draw(st.sampled_from(["", "Anno/"]))

    def lines(good, bad) -> bytes:
        """One good line per image (some left out, some repeated), and now and then a bad one."""
        out = [good(k) for k in stems]
        if draw(rare(3)):  # an image left out, or another listed (twice, or not on disk)
            out[draw(st.integers(0, len(out) - 1))] = good(draw(st.sampled_from(keys)))
        if draw(rare(4)):
            out.insert(draw(st.integers(0, len(out))), draw(st.sampled_from(bad)))
        return "\n".join(out).encode()

    if not draw(rare(9)):
        t.add(f"{anno}identity_CelebA.txt", lines(lambda k: f"{k}.jpg {int(k) % 3 if k.isdigit() else 5}",
                                                  ["x.jpg", "1.jpg x", "1.jpg 1 2", "", "\t", "\ufeff1.jpg 1"]))
    if draw(st.booleans()):
        head = (draw(st.sampled_from([f"{len(stems)}\nSmiling Male", "Smiling Male"])) if not draw(rare(4))
                else draw(st.sampled_from(["3\nSmiling Male", "", "2", "Smiling 5_o_Clock Male"])))
        t.add(f"{anno}list_attr_celeba.txt",
              head.encode() + b"\n" + lines(lambda k: f"{k}.jpg  {draw(st.sampled_from(['1', '-1']))} -1",
                                             ["1.jpg 1", "1.jpg 0 1", "1.jpg x 1", "Smiling Male"]))
    if draw(st.booleans()):
        t.add(f"{draw(st.sampled_from(['', 'Eval/', 'Anno/']))}list_eval_partition.txt",
              lines(lambda k: f"{k}.jpg {draw(st.sampled_from(['0', '1', '2']))}", ["1.jpg 3", "1.jpg", "x"]))
    t.entries += draw(hostile_extras([folder]))
    t.options = draw(st.sampled_from([{}, {"missing_images": "ignore"}, {"missing_images": "error"},
                                      {"attributes": False, "partition": False}, {"images": "wild"}]))
    return t


@st.composite
def rafd_tree(draw) -> Tree:
    t = Tree()
    folders = [""]
    for _ in range(draw(st.integers(1, 6))):
        cam = draw(st.sampled_from(["090", "090", "045", "091", "9"]))
        ident = draw(st.sampled_from(["01", "1", "001", "x"]))
        eth = draw(st.sampled_from(["Caucasian", "Kid", "Moroccan", "Kid1"]))
        gender = draw(st.sampled_from(["female", "male", "other"]))
        expr = draw(st.sampled_from(["angry", "happy", "contemptuous", "bored"]))
        gaze = draw(st.sampled_from(["frontal", "left", "up"]))
        stem = f"Rafd{cam}_{ident}_{eth}_{gender}_{expr}_{gaze}" if not draw(rare(5)) else draw(odd_name)
        ext = draw(st.sampled_from([".jpg", ".jpg", ".png", ".JPG", ".csv", ""]))
        d = draw(st.sampled_from(["", "", "sub", "a/b"]))
        folders.append(d)
        t.add(f"{d}/{stem}{ext}" if d else f"{stem}{ext}", draw(_with_image((".jpg", ".png"))))
    t.entries += draw(hostile_extras(folders))
    t.options = draw(st.sampled_from([{}, {"cameras": None}, {"adults_only": True}, {"gazes": ["left"]}]))
    return t


# table cells: (arrow type, values) with missing cells, NaN-like strings and wrong types
_TEXT = st.one_of(st.sampled_from(["p0", "p1", "joy", "anger", "", " ", "nan", "NaN", "None", "null", "N/A",
                                   "#N/A", "\u212aA", "ｊｏｙ", "train", "test", "validation", "holdout"]), odd_name)


@st.composite
def column(draw, n: int, good: tuple[str, ...] = ("p0", "p1")):
    """A table column of ``n`` cells: mostly ``good`` names, else a column of any type with missing
    cells, NaN-like strings, nested values and wrong types."""
    if not draw(rare(3)):
        return pa.array([draw(st.sampled_from(good)) if not draw(rare(9)) else draw(_TEXT) for _ in range(n)],
                        pa.string())
    kind = draw(st.sampled_from(["string"] * 3 + ["int", "float", "bool", "list", "struct", "binary", "null"]))
    cell = {"string": _TEXT, "int": st.integers(-2, 3), "bool": st.booleans(),
            "float": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0, 2.0])),
            "list": st.lists(st.integers(0, 3), max_size=2), "struct": st.fixed_dictionaries({"a": st.integers(0, 3)}),
            "binary": st.binary(max_size=4), "null": st.none()}[kind]
    values = [draw(st.one_of(cell, st.none())) if draw(rare(4)) else draw(cell) for _ in range(n)]
    typ = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
           "list": pa.list_(pa.int64()), "struct": pa.struct([("a", pa.int64())]), "binary": pa.binary(),
           "null": pa.null()}[kind]
    return pa.array(values, type=typ)


def _csv_cell(v) -> str:
    text = "" if v is None else str(v)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text


def _table_bytes(table: pa.Table, fmt: str) -> bytes:
    import io

    buf = io.BytesIO()
    if fmt == "parquet":
        pq.write_table(table, buf)
    elif fmt == "csv":
        cols = table.column_names
        lines = [",".join(_csv_cell(c) for c in cols)]
        for r in table.to_pylist():
            lines.append(",".join(_csv_cell(r[c]) for c in cols))
        return "\n".join(lines).encode()
    elif fmt == "arrow-stream":
        with pa.ipc.new_stream(buf, table.schema) as w:
            w.write_table(table)
    else:
        with pa.ipc.new_file(buf, table.schema) as w:
            w.write_table(table)
    return buf.getvalue()


@st.composite
def manifest_tree(draw) -> Tree:
    t = Tree()
    names = []
    for _ in range(draw(st.integers(1, 5))):
        d = draw(st.sampled_from(["", "img", "img/sub", draw(odd_name)]))
        name = f"{draw(st.sampled_from(['a', 'b', 'c', 'ｃ', 'd e']))}{draw(st.integers(0, 9))}" \
               f"{draw(st.sampled_from(['.png', '.png', '.jpg', '.txt', '']))}"
        rel = f"{d}/{name}" if d else name
        t.add(rel, draw(_with_image((".png", ".jpg"))))
        names.append(rel)
    hostile = st.one_of(st.sampled_from(["../outside/secret.png", "SECRET_ABS", "./" + names[0], names[0].upper(),
                                         "img/../" + names[0], "img//" + names[0].split("/")[-1], "img\\x.png",
                                         "missing.png", "", "nan", "img", "manifest.csv", "../root/" + names[0],
                                         "~/x.png", "file:///etc/passwd", "C:\\x.png", "../outside/inner/secret.png",
                                         "../outside", "/", "."]), _TEXT)
    path_values = list(names) + (draw(st.lists(hostile, min_size=1, max_size=4)) if draw(rare(2)) else [])
    path_values = draw(st.permutations(path_values))
    n = len(path_values)
    if not draw(rare(9)):
        path_col = pa.array(path_values, type=pa.string())
    else:
        path_col = draw(column(n))
    cols = {"path": path_col, "identity": draw(column(n)), "label": draw(column(n, ("joy", "anger")))}
    if draw(st.booleans()):
        cols["score"] = draw(column(n, ("1", "0.5", "-2")))
    if draw(st.booleans()):
        cols["split"] = draw(column(n, ("train", "test", "validation")))
    table = pa.table(cols)
    if draw(rare(3)):  # a duplicate row
        table = pa.concat_tables([table, table.slice(0, 1)])
    fmt = draw(st.sampled_from(["csv", "csv", "parquet"]))
    data = _table_bytes(table, fmt)
    if fmt == "csv" and draw(rare(4)):  # a line of junk: quotes, too many cells, bytes
        data += b"\n" + draw(st.sampled_from([b'"unclosed,quote', b"a,b,c,d,e,f,g", b"\xff\xfe\x00", b",,,"]))
    if draw(rare(9)):
        data = data[: draw(st.integers(0, len(data)))]
    t.add(f"manifest.{fmt}", data)
    t.entries += draw(hostile_extras(["", "img"]))
    opts = {}
    if "score" in cols and draw(st.booleans()):
        opts["attribute_columns"] = ["score"]
    if "split" in cols and draw(st.booleans()):
        opts["split_column"] = "split"
    if draw(rare(5)):
        opts["labels"] = draw(st.sampled_from([["joy", "anger"], ["joy"], ["nan"]]))
    if draw(rare(5)):
        opts["label_column"] = draw(st.sampled_from([["label", "identity"], ["label", "score"], "nope"]))
    t.options = opts
    return t


@st.composite
def folder_tree(draw) -> Tree:
    t = Tree()
    ident = st.one_of(st.sampled_from(["p0", "p1", "P0"]), odd_name)
    label = st.one_of(st.sampled_from(["joy", "anger", "ｊｏｙ"]), odd_name)
    rels = []
    folders = [""]
    for _ in range(draw(st.integers(1, 6))):
        depth = draw(st.sampled_from([2, 2, 2, 1, 0, 3]))
        parts = [draw(ident), draw(label), "deeper"][: depth]
        name = f"{draw(st.sampled_from(['img', 'x', draw(odd_name)]))}{draw(st.integers(0, 99))}" \
               f"{draw(st.sampled_from(['.png', '.png', '.jpg', '.bmp', '.txt', '.md', '']))}"
        rel = "/".join([*parts, name])
        t.add(rel, draw(_with_image((".png", ".jpg"))))
        rels.append(rel)
        folders.append("/".join(parts))
    mode = draw(st.sampled_from(["levels", "levels", "levels", "label_file", "path_pattern"]))
    if mode == "label_file":
        n = draw(st.integers(1, 6))
        paths = [draw(st.one_of(st.sampled_from(rels), st.sampled_from(["../outside/secret.png", "gone/x.png",
                                                                          ""]), _TEXT)) for _ in range(n)]
        table = pa.table({"path": pa.array(paths, pa.string()), "label": draw(column(n))})
        t.add("labels.csv", _table_bytes(table, "csv"))
        t.options = {"label_file": "labels.csv" if not draw(rare(6)) else "missing.csv"}
    elif mode == "path_pattern":
        t.options = {"path_pattern": draw(st.sampled_from([
            r"(?P<identity>[^/]+)/(?P<label>[^/]+)/", r"^(?P<identity>[^/]+)/(?P<label>[^/]+)/(?P<group>[^/.]+)",
            r"(?P<identity>.)(?P<label>.)(?P<split>[a-z]*)", r"(?P<identity>[^/]*)/(?P<label>[^/]*)(?P<age>\d*)"]))}
    if draw(rare(5)):
        t.options["labels"] = ["joy", "anger"]
    t.entries += draw(hostile_extras(folders))
    return t


_IMAGE_CELL_TYPES = {
    "struct": pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
    "struct-text": pa.struct([("bytes", pa.string()), ("path", pa.string())]),
    "path": pa.string(), "binary": pa.binary(), "int": pa.int64(),
}


@st.composite
def hf_image_column(draw, n: int, names: list[str]) -> pa.Array:
    kind = draw(st.sampled_from(["struct", "struct", "struct", "path", "binary", "struct-text", "int"]))
    path = st.one_of(st.sampled_from(names or ["x.png"]),
                     st.sampled_from(["../outside/secret.png", "SECRET_ABS", "missing.png", "", "img"]))
    values = []
    for _ in range(n):
        if draw(rare(6)):
            values.append(None)
        elif kind == "struct":
            b = draw(valid_image((".png", ".jpg"))) if not draw(rare(3)) else draw(
                st.one_of(image_bytes((".png", ".jpg")), st.none()))
            values.append({"bytes": b, "path": draw(st.one_of(st.none(), path))})
        elif kind == "struct-text":
            values.append({"bytes": draw(st.text(max_size=5)), "path": draw(st.one_of(st.none(), path))})
        elif kind == "path":
            values.append(draw(path))
        elif kind == "binary":
            values.append(draw(image_bytes((".png", ".jpg"))))
        else:
            values.append(draw(st.integers(-1, 3)))
    return pa.array(values, type=_IMAGE_CELL_TYPES[kind])


_FEATURES = st.one_of(
    st.just({"label": {"_type": "ClassLabel", "names": ["joy", "anger"]}}),
    st.just({"label": {"_type": "ClassLabel", "names": "joy"}}),
    st.just({"label": {"_type": "ClassLabel", "names": 3}}),
    st.just({"label": {"_type": "ClassLabel", "names": None}}),
    st.just({"label": {"_type": "ClassLabel", "names": [{"a": 1}, None]}}),
    st.just({"label": {"_type": "ClassLabel"}}), st.just({"label": "ClassLabel"}),
    st.just(["label"]), st.just("features"), st.just(None), st.just(7),
)


@st.composite
def hf_table(draw, names: list[str]) -> pa.Table:
    n = draw(st.integers(1, 6))
    cols = {"image": draw(hf_image_column(n, names)), "identity": draw(column(n))}
    cols["label"] = (pa.array([draw(st.integers(-1, 3)) for _ in range(n)], pa.int64())
                     if draw(st.booleans()) else draw(column(n, ("joy", "anger"))))
    if draw(rare(4)):
        del cols[draw(st.sampled_from(sorted(cols)))]
    table = pa.table(cols) if cols else pa.table({"x": pa.array([], pa.int64())})
    if draw(st.booleans()):
        meta = draw(st.one_of(st.just(json.dumps({"info": {"features": {"label": {
                                  "_type": "ClassLabel", "names": ["joy", "anger"]}}}})),
                              st.builds(lambda f: json.dumps({"info": {"features": f}}), _FEATURES),
                              st.sampled_from(["{", "[]", '{"info": 3}', '{"info": {"features": {"label": []}}}'])))
        table = table.replace_schema_metadata({"huggingface": meta})
    return table


def _json_or_junk(draw, doc) -> bytes:
    if draw(rare(6)):
        return draw(st.sampled_from([b"{", b"[]", b"null", b"7", b'"x"', b"\xff\xfe", b""]))
    return json.dumps(doc).encode()


@st.composite
def hf_tree(draw) -> Tree:
    t = Tree()
    names = []
    for _ in range(draw(st.integers(1, 4))):
        rel = f"{draw(st.sampled_from(['', 'train/', 'test/', 'img/joy/', draw(odd_name) + '/']))}" \
              f"{draw(st.sampled_from(['a', 'b', 'c']))}{draw(st.integers(0, 9))}" \
              f"{draw(st.sampled_from(['.png', '.png', '.jpg', '.txt']))}"
        t.add(rel, draw(_with_image((".png", ".jpg"))))
        names.append(rel)
    form = draw(st.sampled_from(["imagefolder", "parquet", "save_to_disk", "dataset_dict"]))
    if form == "imagefolder":
        meta = draw(st.sampled_from(["metadata.jsonl", "metadata.jsonl", "metadata.csv", "img/metadata.jsonl"]))
        base = meta.rsplit("/", 1)[0] + "/" if "/" in meta else ""
        file_names = [n[len(base):] if n.startswith(base) else "../" + n for n in names] or ["x.png"]
        value = st.one_of(_TEXT, st.integers(), st.floats(), st.booleans(), st.none(),
                          st.lists(st.integers(), max_size=2), st.fixed_dictionaries({"a": _TEXT}))
        hostile = st.one_of(st.sampled_from(["../outside/secret.png", "SECRET_ABS", "./" + file_names[0],
                                             "../outside/inner/secret.png", "missing.png", ""]), value)
        rows = []
        for fname in [*file_names, *(draw(st.lists(hostile, min_size=1, max_size=3)) if draw(rare(2)) else [])]:
            row = {"file_name": fname, "identity": draw(st.sampled_from(["p0", "p1"])), "label": "joy"}
            if draw(rare(4)):  # a cell of another type, a missing key
                row[draw(st.sampled_from(sorted(row)))] = draw(value)
                for k in draw(st.lists(st.sampled_from(sorted(row)), max_size=2, unique=True)):
                    del row[k]
            rows.append(row)
        if meta.endswith(".jsonl"):
            lines = [json.dumps(r) for r in rows]
            if draw(rare(4)):
                lines.insert(draw(st.integers(0, len(lines))),
                             draw(st.sampled_from(["{", "[1, 2]", "7", "null", '"text"', "{'a': 1}", "\ufeff{}",
                                                   '{"file_name": {"nested": [1]}}', "   "])))
            t.add(meta, "\n".join(lines).encode())
        else:
            table = pa.table({k: pa.array([str(r.get(k, "")) for r in rows], pa.string())
                              for k in ("file_name", "identity", "label")})
            t.add(meta, _table_bytes(table, "csv"))
    elif form == "parquet":
        for _ in range(draw(st.integers(1, 3))):
            rel = draw(st.sampled_from(["data/train-00000-of-00001.parquet", "data/test-0.parquet",
                                        "validation/x.parquet", "holdout-0.parquet", "x.parquet"]))
            data = _table_bytes(draw(hf_table(names)), "parquet")
            if draw(rare(5)):
                data = draw(st.sampled_from([b"", b"PAR1", data[: len(data) // 2], b"PAR1" + data[4:-4] + b"XXXX"]))
            t.add(rel, data)
    else:
        splits = ["."] if form == "save_to_disk" else draw(st.lists(st.sampled_from(["train", "test", "dev",
                                                                                      "holdout"]),
                                                                     min_size=1, max_size=2, unique=True))
        if form == "dataset_dict":
            doc = draw(st.sampled_from([{"splits": splits}, {"splits": splits + ["../outside"]}, {"splits": "train"},
                                        {"splits": [1, None]}, {"splits": None}, {}, ["train"],
                                        {"splits": splits + ["/abs"]}]))
            t.add("dataset_dict.json", _json_or_junk(draw, doc))
        for s in splits:
            d = "" if s == "." else f"{s}/"
            arrow = "data-00000-of-00001.arrow"
            data = _table_bytes(draw(hf_table(names)), draw(st.sampled_from(["arrow-stream", "arrow-file"])))
            if draw(rare(5)):
                data = draw(st.sampled_from([b"", b"ARROW1", data[: len(data) // 2], b"\xff" * 16, b"PAR1"]))
            t.add(d + arrow, data)
            files = draw(st.sampled_from([[{"filename": arrow}], [{"filename": arrow}], [{"filename": arrow}] * 2,
                                          [{"filename": "../outside/secret.arrow"}], [{"filename": "SECRET_ARROW"}],
                                          [{"filename": 7}], [{"filename": None}], [{}], [arrow], [7],
                                          [{"filename": "missing.arrow"}], [{"filename": "."}]]))
            state = draw(st.sampled_from([{"_data_files": files}, {"_data_files": files}, {"_data_files": arrow},
                                          {"_data_files": 7}, {"_data_files": None}, {"_data_files": {"a": 1}}, {},
                                          []]))
            t.add(d + "state.json", draw(st.sampled_from([("fifo",), ("link", "secret-state")])) if draw(rare(9))
                  else _json_or_junk(draw, state))
            if draw(st.booleans()):
                info = draw(st.one_of(st.builds(lambda f: {"features": f}, _FEATURES), st.just([]), st.just({})))
                t.add(d + "dataset_info.json", _json_or_junk(draw, info))
    t.entries += draw(hostile_extras(["", "img"]))
    if draw(rare(5)):
        t.options = draw(st.sampled_from([{"split_column": "identity"}, {"labels": ["joy", "anger"]},
                                          {"label_column": ["label", "identity"]}, {"image_column": "identity"}]))
    return t


STRATEGIES = {"celeba": celeba_tree(), "ferg": ferg_tree(), "folder": folder_tree(), "hf": hf_tree(),
              "jaffe": jaffe_tree(), "lfw": lfw_tree(), "manifest": manifest_tree(), "rafd": rafd_tree()}


# --- writing a tree next to its secrets ----------------------------------------------------------

SECRET_IMAGE = _encode(".png", 424242, 24, 24, True)
SECRET_SHA = hashlib.sha256(SECRET_IMAGE).hexdigest()


def _plant_secrets(outside: Path) -> list[Path]:
    """Files outside the root that a hostile tree points at; their access times are set in the past."""
    outside.mkdir()
    (outside / "inner").mkdir()
    secret_rows = pa.table({"image": pa.array([{"bytes": SECRET_IMAGE, "path": None}], _IMAGE_CELL_TYPES["struct"]),
                            "identity": ["SECRET"], "label": ["joy"]})
    files = {"secret.png": SECRET_IMAGE, "secret.jpg": SECRET_IMAGE, "inner/secret.png": SECRET_IMAGE,
             "secret.csv": b"path,label\nsecret.png,joy\n", "secret.arrow": _table_bytes(secret_rows, "arrow-stream"),
             "secret.parquet": _table_bytes(secret_rows, "parquet"), "state.json": b'{"_data_files": []}'}
    out = []
    for rel, data in files.items():
        (outside / rel).write_bytes(data)
        os.utime(outside / rel, (1_000_000, 2_000_000_000))  # atime well before mtime: a read bumps it (relatime)
        out.append(outside / rel)
    return out


def _resolve_placeholders(data: bytes, outside: Path) -> bytes:
    return (data.replace(b"SECRET_ARROW", str(outside / "secret.arrow").encode())
            .replace(b"SECRET_ABS", str(outside / "secret.png").encode()))


def _write_tree(tree: Tree, root: Path, outside: Path) -> None:
    root.mkdir()
    for rel, content in tree.entries:
        p = root / rel
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.exists() or p.is_symlink():
                continue  # the first entry of a name wins
            if isinstance(content, bytes):
                p.write_bytes(_resolve_placeholders(content, outside))
            elif content[0] == "fifo":
                os.mkfifo(p)
            elif content[0] == "dir":
                p.mkdir()
            else:
                target = {"secret-file": Path(os.path.relpath(outside / "secret.png", p.parent)),
                          "secret-file-abs": outside / "secret.png", "secret-dir": outside,
                          "dangling": Path("no-such-file.png"), "self": Path(p.name), "parent": Path("."),
                          "root": root, "secret-state": outside / "state.json"}[content[1]]
                p.symlink_to(target)
        except OSError:  # a name the layout made impossible (a file where a folder must be, too long): left out
            continue


# --- watching for reads outside the root ---------------------------------------------------------

_WATCH: dict = {"dir": None, "hits": []}


def _audit(event: str, args: tuple) -> None:
    d = _WATCH["dir"]
    if d is None or event not in ("open", "os.scandir", "os.listdir"):
        return
    target = args[0] if args else None
    if isinstance(target, (str, bytes, os.PathLike)):
        try:
            p = os.path.realpath(os.fsdecode(target))
        except (ValueError, OSError):
            return
        if p == d or p.startswith(d + os.sep):
            _WATCH["hits"].append((event, p))


sys.addaudithook(_audit)


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang(f"one fuzz case ran over {HANG_SECONDS} s: a read blocked (a FIFO opened?)")


def _check_case(dataset: str, tree: Tree, base: Path) -> str:
    outside, root, out = base / "outside", base / "root", base / "out"
    secrets = _plant_secrets(outside)
    _write_tree(tree, root, outside)
    atimes = {f: os.stat(f).st_atime for f in secrets}
    _WATCH["dir"], _WATCH["hits"] = os.path.realpath(outside), []
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_SECONDS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = ingest_dataset(dataset, root, out, preprocess=CFG, workers=1, loader_options=tree.options)
    except DeidError as exc:
        summary, error = None, exc
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        _WATCH["dir"] = None
    assert not _WATCH["hits"], f"read outside the root: {_WATCH['hits'][:3]}"
    bumped = [f.name for f in secrets if os.stat(f).st_atime != atimes[f]]
    assert not bumped, f"read outside the root (access time changed): {bumped}"
    if summary is None:
        msg = str(error)
        assert msg.strip() and "\n" not in msg.strip(), f"a deid error of more than one line: {msg!r}"
        if VERBOSE:
            print(f"  {dataset}: {type(error).__name__}: {msg[:160]}")
        return f"error {type(error).__name__}"
    assert summary.reconciles(), summary
    assert summary.seen is not None
    assert summary.seen == summary.written + summary.quarantined + sum(summary.skipped.values()), summary
    images = read_table(out / "images", IMAGES_SCHEMA, columns=["source_path", "source_sha256"])
    quarantine = read_table(out / "quarantine", QUARANTINE_SCHEMA)
    assert (images.num_rows, quarantine.num_rows) == (summary.written, summary.quarantined)
    hashes = set(images.column("source_sha256").to_pylist()) | set(quarantine.column("source_sha256").to_pylist())
    assert SECRET_SHA not in hashes, "a secret file outside the root was read"
    return "summary"


def test_every_builtin_loader_has_a_fuzz_strategy():
    assert sorted(STRATEGIES) == sorted(BUILTIN_LOADERS), "a new loader needs a strategy in STRATEGIES"


@pytest.mark.parametrize("dataset", sorted(STRATEGIES), ids=lambda d: f"{d}-fuzz")  # a bare "jaffe" id is a marker
def test_hostile_trees_never_escape_the_batch_nor_the_root(dataset, tmp_path):
    outcomes: dict[str, int] = {}

    @FUZZ
    @given(tree=STRATEGIES[dataset])
    def case(tree: Tree) -> None:
        base = Path(tempfile.mkdtemp(dir=tmp_path))
        try:
            kind = _check_case(dataset, tree, base)
            outcomes[kind] = outcomes.get(kind, 0) + 1
        finally:
            shutil.rmtree(base, ignore_errors=True)

    case()
    print(f"{dataset}: {sum(outcomes.values())} cases: {dict(sorted(outcomes.items()))}")
    assert outcomes.get("summary", 0) > 0, f"no case of {dataset} got as far as a summary: {outcomes}"


# --- what the fuzz found, kept as plain cases ----------------------------------------------------

_ARROW = "data-00000-of-00001.arrow"
_STATE = json.dumps({"_data_files": [{"filename": _ARROW}]}).encode()


def _hf_rows(fmt: str, seed: int, label="joy", names=None, image=None, struct=_IMAGE_CELL_TYPES["struct"]) -> bytes:
    """One row (a PNG, identity p0, ``label``) as an Arrow stream or Parquet file; ``names``: a
    ClassLabel's ``names`` in the schema's huggingface metadata."""
    image = image or [{"bytes": _encode(".png", seed, 20, 20, False), "path": None}]
    table = pa.table({"image": pa.array(image, struct), "identity": ["p0"] * len(image), "label": [label] * len(image)})
    if names is not None:
        features = {"label": {"_type": "ClassLabel", "names": names}}
        table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    return _table_bytes(table, fmt)


def _jsonl(*rows: dict) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


#: hf inputs whose metadata broke the ingest with an exception of Python's or pyarrow's own (or
#: read a file outside the root, or blocked), and what each gives now: an error (DeidError, one
#: line) or a summary with the bad file or row quarantined
HF_FOUND = {
    "dataset_dict-splits-null": ([("dataset_dict.json", b'{"splits": null}')], "error"),
    "dataset_dict-a-list": ([("dataset_dict.json", b'["train"]')], "error"),
    "dataset_dict-not-utf8": ([("dataset_dict.json", b"\xff\xfe")], "error"),
    "state-data-files-null": ([(_ARROW, _hf_rows("arrow-stream", 1)), ("state.json", b'{"_data_files": null}')],
                              "error"),
    "state-a-fifo": ([("dataset_dict.json", b'{"splits": ["train"]}'), (f"train/{_ARROW}", _hf_rows("arrow-stream", 1)),
                      ("train/state.json", ("fifo",))], "error"),
    "state-linked-out-of-the-root": ([(_ARROW, _hf_rows("arrow-stream", 1)), ("state.json", ("link", "secret-state"))],
                                     "error"),
    "arrow-file-not-arrow": ([(_ARROW, b"\xff" * 16), ("state.json", _STATE)], "error"),
    "parquet-file-not-parquet": ([("x.parquet", b"PAR1"), ("train-0.parquet", _hf_rows("parquet", 2))], "summary"),
    "image-struct-bytes-as-text": ([("x.parquet", _hf_rows("parquet", 0, image=[{"bytes": "abc", "path": None},
                                                                                  {"bytes": None, "path": "a.png"}],
                                                           struct=_IMAGE_CELL_TYPES["struct-text"])),
                                    ("a.png", _encode(".png", 4, 20, 20, False))], "summary"),
    "classlabel-names-a-number": ([(_ARROW, _hf_rows("arrow-stream", 6, label=0, names=3)), ("state.json", _STATE),
                                   ("dataset_info.json", b'{"features": ["label"]}')], "summary"),
    "classlabel-in-a-later-file-only": ([("data/a-train.parquet", _hf_rows("parquet", 7, label="anger")),
                                         ("data/b-train.parquet", _hf_rows("parquet", 8, label=0, names=["joy"]))],
                                        "summary"),
    "metadata-key-of-two-types": ([("a.png", _encode(".png", 9, 20, 20, False)),
                                   ("b.png", _encode(".png", 10, 20, 20, False)),
                                   ("metadata.jsonl", _jsonl(
                                       {"file_name": "a.png", "identity": "p0", "label": "joy"},
                                       {"file_name": "b.png", "identity": True, "label": "joy"}))], "error"),
    "metadata-row-names-a-symlink-loop": ([("a.png", _encode(".png", 3, 20, 20, False)), ("b.png", ("link", "self")),
                                           ("metadata.jsonl", _jsonl(
                                               {"file_name": "a.png", "identity": "p0", "label": "joy"},
                                               {"file_name": "b.png", "identity": "p1", "label": "joy"}))], "summary"),
}

#: every case the fuzz found, by loader: (tree, what ingest must end in)
FOUND = {**{("hf", k): (Tree(entries), outcome) for k, (entries, outcome) in HF_FOUND.items()},
         ("ferg", "folder-name-with-a-newline"): (
             Tree([("a\nb/a\nb_joy/a\nb_joy_1.png", _encode(".png", 5, 20, 20, False))],
                  {"allow_unknown_characters": False}), "error")}


@pytest.mark.parametrize("dataset,case", sorted(FOUND), ids=lambda v: str(v).replace("\n", "-"))
@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch',
                         case="found by the fuzz: hf dataset_dict.json 'splits' null or not an object, state.json "
                              "'_data_files' null, a FIFO or a link out of the root, a broken Arrow or Parquet file, "
                              "an image struct whose bytes are text, ClassLabel names that are a number or come only "
                              "in a later file, imagefolder rows naming a symlink loop or whose key holds text and a "
                              "boolean; a FERG character folder with a newline in its name",
                         before='TypeError, AttributeError, UnicodeDecodeError, OSError, RuntimeError, ArrowTypeError '
                                'or ContractError escaped the ingest; a FIFO state.json blocked it; a state.json '
                                'linked out of the root was read; the FERG error ran over two lines',
                         after='a one-line DatasetLayoutError naming the file; a broken Parquet file, text bytes, a '
                               'label outside a later ClassLabel and a row naming a loop are quarantined, the rest '
                               'ingested')
def test_cases_found_by_the_fuzz(dataset, case, tmp_path):
    tree, expected = FOUND[dataset, case]
    assert _check_case(dataset, tree, tmp_path) == ("summary" if expected == "summary" else "error DatasetLayoutError")
