"""LFW loader (Huang, Ramesh, Berg, Learned-Miller: "Labeled Faces in the Wild", UMass TR 07-49, 2007).

Layout: ``lfw/<First_Last>/<First_Last>_<NNNN>.jpg`` (250×250), also the funneled
(``lfw_funneled``, ``lfw-funneled``) and deep-funneled (``lfw-deepfunneled``) copies. The root may
be the image folder itself or its parent. The optional ``lfw_attributes.txt`` (Kumar et al.,
"Attribute and Simile Classifiers", ICCV 2009) is joined on (person, image number).

Names are identity-bearing: they go only to the private ``identity`` and path columns.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from deid.datasets.base import (
    Loader,
    Rejected,
    ScanResult,
    SourceItem,
    label_text,
    list_dir,
    register_loader,
    require_dir,
    walk_files,
)
from deid.errors import DatasetLayoutError

__all__ = ["LFW_VARIANTS", "ATTRIBUTES_FILE", "read_lfw_attributes", "scan_lfw"]

LFW_VARIANTS = ("lfw", "lfw_funneled", "lfw-funneled", "lfw-deepfunneled", "lfw_deepfunneled")
ATTRIBUTES_FILE = "lfw_attributes.txt"
_IMAGE_EXT = {".jpg", ".jpeg", ".png"}
_NAME = re.compile(r"^(?P<person>.+)_(?P<num>\d{4})$")


def read_lfw_attributes(path: str | Path) -> tuple[list[str], dict[tuple[str, int], dict[str, float]]]:
    """Parse ``lfw_attributes.txt``: attribute names and ``{(First_Last, n): {name: score}}``.

    Line 1 is a comment, line 2 the tab-separated header ``#, person, imagenum, <names...>``;
    every further line is ``person<TAB>imagenum<TAB>score...``. Raises
    :class:`DatasetLayoutError` naming the file and line on a wrong header, a wrong column count,
    a non-integer image number, a non-finite score or a repeated (person, image) pair.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="strict").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetLayoutError(f"LFW attributes: cannot read {path}: {exc}") from exc
    if len(lines) < 2:
        raise DatasetLayoutError(f"LFW attributes: {path} has {len(lines)} lines; expected a comment line and a header")
    header = lines[1].rstrip("\r\n").split("\t")
    if len(header) < 4 or [h.strip() for h in header[:3]] != ["#", "person", "imagenum"]:
        raise DatasetLayoutError(
            f"LFW attributes: {path} line 2 is not the header '#<TAB>person<TAB>imagenum<TAB><attributes...>' "
            f"(got {header[:3]})"
        )
    names = [h.strip() for h in header[3:]]
    if len(set(names)) != len(names) or any(not n for n in names):
        raise DatasetLayoutError(f"LFW attributes: {path} line 2 has empty or repeated attribute names")
    width = 2 + len(names)
    table: dict[tuple[str, int], dict[str, float]] = {}
    for lineno, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        cols = line.rstrip("\r\n").split("\t")
        if len(cols) != width:
            raise DatasetLayoutError(
                f"LFW attributes: {path} line {lineno} has {len(cols)} tab-separated columns, expected {width} "
                f"(person, imagenum and {len(names)} scores)"
            )
        person = label_text(cols[0].strip().replace(" ", "_"))
        try:
            num = int(cols[1])
            scores = [float(c) for c in cols[2:]]
        except ValueError as exc:
            raise DatasetLayoutError(f"LFW attributes: {path} line {lineno}: {exc}") from None
        if not all(math.isfinite(s) for s in scores):
            raise DatasetLayoutError(f"LFW attributes: {path} line {lineno} has a non-finite score")
        key = (person, num)
        if key in table:
            raise DatasetLayoutError(f"LFW attributes: {path} line {lineno} repeats {person} image {num}")
        table[key] = dict(zip(names, scores))
    return names, table


def _image_root(root: Path, variant: str | None) -> Path:
    if variant is not None:
        if variant not in LFW_VARIANTS:
            raise DatasetLayoutError(f"LFW: unknown variant '{variant}'; known: {list(LFW_VARIANTS)}")
        if root.name == variant:
            return root
        if (root / variant).is_dir():
            return root / variant
        raise DatasetLayoutError(f"LFW: variant folder {root / variant} does not exist")
    if root.name in LFW_VARIANTS:
        return root
    present = [v for v in LFW_VARIANTS if (root / v).is_dir()]
    if len(present) == 1:
        return root / present[0]
    if len(present) > 1:
        raise DatasetLayoutError(f"LFW: {root} holds several variants {present}; choose one with variant=...")
    return root  # a folder of person folders under another name


def scan_lfw(root: str | Path, *, variant: str | None = None, attributes: str | Path | bool | None = None,
             min_images_per_person: int = 1) -> ScanResult:
    """Label every image of an LFW tree; identity is the person folder name.

    ``attributes``: a path to ``lfw_attributes.txt``, ``False`` to ignore it, or ``None`` to use
    one found next to the images (in the image folder or its parent). Images the attribute file
    does not cover keep ``attributes=None`` (the published file covers ~13k of the 13,233).
    ``min_images_per_person`` drops people with fewer images (not counted as input).
    """
    root = require_dir(root, "LFW")
    img_root = _image_root(root, variant)
    result = ScanResult()
    roots = (root, img_root)
    people, loose = list_dir(img_root, result, base=img_root, roots=roots)
    if not people:
        raise DatasetLayoutError(f"LFW: {img_root} has no person folders; expected lfw/<First_Last>/<First_Last>_0001.jpg")
    attr_table: dict[tuple[str, int], dict[str, float]] = {}
    if attributes is not False:
        if attributes is None or attributes is True:
            cands = [img_root / ATTRIBUTES_FILE, img_root.parent / ATTRIBUTES_FILE, root / ATTRIBUTES_FILE]
            found = next((c for c in cands if c.is_file()), None)
            if attributes is True and found is None:
                raise DatasetLayoutError(f"LFW: attributes requested but no {ATTRIBUTES_FILE} in {img_root} or its parent")
        else:
            found = Path(attributes)
            if not found.is_file():
                raise DatasetLayoutError(f"LFW: attributes file {found} does not exist")
        if found is not None:
            _, attr_table = read_lfw_attributes(found)
    result.skip("not in a person folder", len(loose))  # e.g. lfw_attributes.txt next to the person folders
    for pdir in people:
        person = label_text(pdir.name)
        files = walk_files(pdir, result, base=img_root, roots=roots)
        if len(files) < min_images_per_person:
            result.skip("fewer than min_images_per_person", len(files))
            continue
        for f in files:
            rel = f.relative_to(img_root).as_posix()
            if f.suffix.lower() not in _IMAGE_EXT:
                result.rejected.append(Rejected(rel, f"not an image file name (suffix '{f.suffix}')"))
                continue
            m = _NAME.match(label_text(f.stem))
            if not m:
                result.rejected.append(Rejected(rel, "file name does not match <First_Last>_<NNNN>"))
                continue
            if m["person"] != person or f.parent != pdir:
                result.rejected.append(Rejected(rel, "file is not in its person folder (name and folder differ)"))
                continue
            attrs = attr_table.get((person, int(m["num"])))
            result.items.append(SourceItem(path=f, relpath=rel, identity=person,
                                           attributes=dict(attrs) if attrs else None))
    if not result.items and not result.rejected:
        raise DatasetLayoutError(f"LFW: no image files under {img_root}")
    return result


register_loader(Loader("lfw", scan_lfw, needs_alignment=True, utility_label="attributes",
                       description="Labeled Faces in the Wild (original, funneled or deep-funneled)"))
