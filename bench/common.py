"""What the benches share: their sections in docs/ (each between its own markers, replaced on a rerun
and kept when another bench rewrites the rest), and the bare-library ingest loop they compare with."""

from __future__ import annotations

import re
import time
from pathlib import Path

__all__ = ["markers", "write_section", "kept_sections", "ingest_reference"]


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}: begin -->", f"<!-- {name}: end -->"


def write_section(doc: Path, name: str, body: str) -> None:
    """Put ``body`` between ``name``'s markers in ``doc`` (replacing what was there, or at the end)."""
    begin, end = markers(name)
    section = body.strip()
    if not section.startswith(begin):
        section = f"{begin}\n{section}\n{end}"
    text = doc.read_text() if doc.exists() else ""
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    doc.write_text(text)


def kept_sections(path: Path) -> str:
    """Every marked section of ``path``, to append when the rest of the file is rewritten."""
    text = path.read_text() if path.exists() else ""
    blocks = re.findall(r"(<!-- ([^>]*?): begin -->.*?<!-- \2: end -->)", text, flags=re.S)
    return "".join(f"\n{b[0]}\n" for b in blocks)


def ingest_reference(files: list[Path], size: int = 50) -> float:
    """Seconds for the bare ingest loop: cv2 decode, grayscale, resize to ``size``, PNG encode, per file."""
    import cv2

    t0 = time.perf_counter()
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        cv2.imencode(".png", cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
    return time.perf_counter() - t0
