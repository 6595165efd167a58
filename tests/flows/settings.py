"""Run settings the flow tests share: the smallest built-in set whose audit can decide the default
gates (504 images pooled over 3 folds certify chance + 3.4 points for 6 identities), with cheap
attackers that still learn its expressions at 40 px."""

SMALL_DECIDABLE = {"n_characters": 6, "images_per_cell": 12, "size": 64, "entanglement": 0.0, "noise": 0.0}
FAST_POOLED_AUDIT = {"attackers": ["linear", "hog-svm"], "folds": 3, "cnn_epochs": 2, "cnn_width": 8,
                     "cnn_min_steps": 0, "linkage_repeats": 1, "pca_components": 16,
                     "unseen_attackers": ["knn-pixels"]}

#: Gates for tests of the pipeline's mechanics (publishing, tracking, reruns, deployments), not of a method's
#: quality: on this small set no method reaches the usefulness gates on real faces (TSTR, TRTS), so these
#: tests ask nothing of usefulness. The release policy's usefulness floors are the release owner's; such a
#: test names its own policy (:func:`mechanics_policy`) in the environment, as an owner does.
#: The privacy margin is the release policy's hard limit, 10 points: these tests' 504 images cannot decide a
#: 5-point margin with two attackers (a method at chance would fail up to 11 % of the time, above the 5 % the
#: calibrated gate allows: docs/audit.md), while at 10 points a method at chance fails almost never. The
#: originals still fail privacy (the audit's positive control), so the audit stays sound.
MECHANICS_GATES = {"attacker_margin": 0.10, "min_utility_retention": 0.0, "min_tstr_retention": 0.0,
                   "min_trts_retention": 0.0}


def mechanics_policy(base, monkeypatch):
    """The release owner's policy for a test of mechanics, written to ``<base>/owner-policy.yaml`` and named
    by ``DEID_RELEASE_POLICY`` for this test (and the processes it starts): the widest privacy margin a
    policy may set (10 points), no usefulness floor. Returns its path."""
    from pathlib import Path

    from deid.release_policy import POLICY_ENV

    p = Path(base) / "owner-policy.yaml"
    p.write_text("max_attacker_margin: 0.10\nmin_tstr_retention: 0.0\nmin_trts_retention: 0.0\n")
    monkeypatch.setenv(POLICY_ENV, str(p))
    return p
