"""Marked sections of a generated document: each tool that writes into a shared file (docs/RESULTS.md,
docs/PERFORMANCE.md) owns the text between its own markers, replaces it on a rerun, and keeps the other
tools' sections when it rewrites the rest of the file."""

from __future__ import annotations

import re
from pathlib import Path

from data_contracts.atomic import write_text_atomic

__all__ = ["markers", "write_section", "kept_sections"]


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
    write_text_atomic(doc, text)


def kept_sections(path: Path) -> str:
    """Every marked section of ``path``, to append when the rest of the file is rewritten."""
    text = path.read_text() if path.exists() else ""
    blocks = re.findall(r"(<!-- ([^>]*?): begin -->.*?<!-- \2: end -->)", text, flags=re.S)
    return "".join(f"\n{b[0]}\n" for b in blocks)
