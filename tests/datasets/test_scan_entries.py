"""Every loader's scan: symlinks stay inside the dataset root, and every entry seen is accounted for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deid.datasets import get_loader
from deid.datasets.base import ScanResult, SourceItem, label_text, walk_files

JPEG = b"\xff\xd8\xff\xe0 not decoded by a scan"


def _jaffe(root: Path) -> tuple[Path, str, str]:
    (root / "KA.AN1.1.tiff").write_bytes(JPEG)
    return root, "KA.AN1.1.tiff", "KB.AN1.2.tiff"


def _rafd(root: Path) -> tuple[Path, str, str]:
    (root / "Rafd090_01_Caucasian_female_angry_frontal.jpg").write_bytes(JPEG)
    return root, "Rafd090_01_Caucasian_female_angry_frontal.jpg", "Rafd090_02_Caucasian_female_angry_frontal.jpg"


def _lfw(root: Path) -> tuple[Path, str, str]:
    d = root / "lfw" / "Jane_Doe"
    d.mkdir(parents=True)
    (d / "Jane_Doe_0001.jpg").write_bytes(JPEG)
    return d, "Jane_Doe/Jane_Doe_0001.jpg", "Jane_Doe_0002.jpg"


def _celeba(root: Path) -> tuple[Path, str, str]:
    d = root / "img_align_celeba"
    d.mkdir()
    (d / "000001.jpg").write_bytes(JPEG)
    (root / "identity_CelebA.txt").write_text("000001.jpg 7\n000002.jpg 8\n")
    return d, "img_align_celeba/000001.jpg", "000002.jpg"


def _ferg(root: Path) -> tuple[Path, str, str]:
    d = root / "FERG_DB_256" / "aia" / "aia_joy"
    d.mkdir(parents=True)
    (d / "aia_joy_1.png").write_bytes(JPEG)
    return d, "aia/aia_joy/aia_joy_1.png", "aia_joy_2.png"


LAYOUTS = {"jaffe": _jaffe, "rafd": _rafd, "lfw": _lfw, "celeba": _celeba, "ferg": _ferg}


@pytest.mark.parametrize("dataset", sorted(LAYOUTS), ids=lambda d: f"{d}-layout")  # a bare "jaffe" id is the marker
@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch', case='outside-root link, hidden file, FIFO, image-named folder, in every loader',
                         before='followed or dropped uncounted',
                         after='rejected or counted by rule in every loader')
def test_scan_refuses_links_out_of_the_root_and_counts_every_entry(dataset, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(JPEG)
    root = tmp_path / "root"
    root.mkdir()
    image_dir, good, link_name = LAYOUTS[dataset](root)
    (image_dir / link_name).symlink_to(outside / "secret.jpg")
    (image_dir / ".hidden.jpg").write_bytes(JPEG)
    os.mkfifo(image_dir / "fifo.jpg")
    (image_dir / "folder.jpg").mkdir()
    res = get_loader(dataset).scan(root)
    assert [it.relpath for it in res.items] == [good]
    assert len(res.rejected) == 1  # the link, once (CelebA does not call its listed file missing too)
    assert res.rejected[0].relpath.endswith(link_name) and res.rejected[0].reason.startswith("outside root")
    assert res.skipped["hidden"] == 1
    assert res.skipped["not a regular file"] == 1
    assert res.skipped["directory named like an image"] == 1
    assert res.seen == len(res.items) + len(res.rejected) + sum(res.skipped.values())


def test_an_image_folder_that_is_itself_a_symlink_is_walked(tmp_path):
    real = tmp_path / "disk2" / "img_align_celeba"
    real.mkdir(parents=True)
    (real / "000001.jpg").write_bytes(JPEG)
    root = tmp_path / "celeba"
    root.mkdir()
    (root / "img_align_celeba").symlink_to(real, target_is_directory=True)
    (root / "identity_CelebA.txt").write_text("000001.jpg 7\n")
    res = get_loader("celeba").scan(root)
    assert [it.relpath for it in res.items] == ["img_align_celeba/000001.jpg"] and not res.rejected


def test_walk_does_not_enter_a_symlink_cycle_twice(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.png").write_bytes(b"x")
    (tmp_path / "a" / "b" / "up").symlink_to(tmp_path / "a", target_is_directory=True)
    res = ScanResult()
    files = walk_files(tmp_path / "a", res, base=tmp_path, roots=(tmp_path,))
    assert files == [tmp_path / "a" / "b" / "x.png"]
    assert res.skipped == {"folder already walked (symlink cycle)": 1}


def test_labels_are_nfkc_normalised_in_every_loader():
    assert label_text("\u212aA") == "KA" and label_text("ｊｏｙ") == "joy"
    it = SourceItem(Path("x"), "x", identity="\u212aate", label="ｊｏｙ", attributes={"Ｍale": 1.0})
    assert (it.identity, it.label, it.attributes) == ("Kate", "joy", {"Male": 1.0})


def test_lfw_person_folders_differing_by_a_lookalike_are_one_identity(tmp_path):
    root = tmp_path / "lfw"
    for person, n in (("Kate_Moss", 1), ("\u212aate_Moss", 2)):
        (root / person).mkdir(parents=True)
        (root / person / f"{person}_{n:04d}.jpg").write_bytes(JPEG)
    res = get_loader("lfw").scan(root)
    assert not res.rejected and {it.identity for it in res.items} == {"Kate_Moss"} and len(res.items) == 2
