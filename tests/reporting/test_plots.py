"""Figures take labels as data: nothing a dataset names its people or labels can break one."""

from __future__ import annotations

import numpy as np
import pytest

from deid.reporting.plots import confusion_plot, sample_grid

HOSTILE = ["$\\foo$", "a$b", "$", "50% $5", "line\nbreak", "`tick`"]


@pytest.mark.reliability(section='4. Ingest: every entry counted, nothing kills the batch', case="a '$' in an identity or label (matplotlib mathtext)",
                         before="ValueError in the confusion matrix after the whole audit: exit 1, no report, no summary.json",
                         after="labels drawn as plain text; a figure that still fails is logged and left out, the audit's figures kept")
def test_labels_with_dollars_draw_as_text(tmp_path):
    n = len(HOSTILE)
    cm = np.eye(n, dtype=int) * 3
    p = confusion_plot({"identity_linear": cm}, {"identity": HOSTILE}, tmp_path / "c.png", title="$\\alpha$ run")
    assert p.stat().st_size > 0
    rows = {"original": np.random.default_rng(0).random((n, 1, 8, 8), dtype=np.float32)}
    assert sample_grid(rows, tmp_path / "s.png", labels=HOSTILE).stat().st_size > 0
