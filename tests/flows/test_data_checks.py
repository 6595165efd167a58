"""What the ingest's checks found reaches the audit: a split that leaks makes it inconclusive unless the run
states why it does not; look-alikes across the groups of a grouped dataset are a note, not a problem."""

from __future__ import annotations

import pytest

from deid.ingest import NOTE_NEAR_DUPLICATE, IngestSummary
from flows.anonymize import data_checks


def _summary(pairs: int, groups: int | None) -> IngestSummary:
    return IngestSummary(dataset="jaffe", source="jaffe", input=10, written=10, quarantined=0,
                         by_split={"train": 7, "val": 0, "test": 3}, quarantine_reasons={}, identities=2,
                         utility_labels=["a", "b"], digest="d", fingerprint="f", seconds=1.0, images_per_s=10.0,
                         notes={NOTE_NEAR_DUPLICATE: 2} if pairs else {}, near_duplicates_across_splits=pairs,
                         groups=groups)


@pytest.mark.parametrize("pairs,groups,accepted,problem,note", [
    (0, None, None, False, False),
    (3, None, None, True, False),
    (3, None, "each photo is its own sitting, seconds apart", False, True),
    (3, 5, None, False, True),
])
def test_a_split_leak_reaches_the_audit(pairs, groups, accepted, problem, note):
    info, notes = {}, []
    problems = data_checks(_summary(pairs, groups), accepted, info, notes)
    assert bool(problems) == problem and bool(notes) == note
    if pairs:
        assert info["split_leak"] == {"test_images": 2, "pairs": 3, "grouped": groups is not None,
                                      "accepted": accepted}
        text = (problems or notes)[0]
        assert "2 test images" in text and ("accept_split_leak" in text) == problem
        assert ("look-alikes" in text) == (groups is not None)
        if accepted:
            assert accepted in text
    else:
        assert "split_leak" not in info


def test_the_card_is_told_what_the_run_knows_of_its_source():
    from deid.config import RunConfig
    from flows.anonymize import source_facts

    built_in = source_facts(RunConfig.model_validate({"name": "x", "dataset": {"name": "ferg"}}))
    assert built_in["synthetic"] is True and "no real person" in built_in["description"]
    real = RunConfig.model_validate({"name": "x", "dataset": {"name": "jaffe", "source": "/data/jaffe", "real_faces": True}})
    assert source_facts(real)["synthetic"] is False
    unstated = RunConfig.model_validate({"name": "x", "dataset": {"name": "folder", "source": "/data/mine"}})
    assert source_facts(unstated)["synthetic"] is None  # never claimed synthetic without knowing it
