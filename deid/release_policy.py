"""The release policy: floors that protect every release and that no run config can loosen.

Two files decide whether a method's output may be published, and they have different owners:

- the **run config** (``configs/*.yaml``, the pipeline operator's) asks for a release and sets
  the audit's gates, which may be as strict as the operator likes;
- the **release policy** (the release owner's) sets the privacy floor: the largest margin above (or below) chance an informed attacker may keep,
  how close an output may be to its own input, and the usefulness floor: how much of the
  originals' accuracy on real faces a model trained on the release keeps (TSTR) and original-trained
  classifiers keep on the release (TRTS). A run config cannot point elsewhere, and a margin
  in the run config wider than the policy's is ignored for the release.

  The policy comes from one place the release owner controls, never from the project, the current
  folder or the work dir a run is given: the file named by ``DEID_RELEASE_POLICY`` in the environment
  the pipeline is started in (the owner's setting for a machine or a deployment's worker), else the
  package's own ``deid/release-policy.yaml``. Its values, where they came from and their digest go into
  every release's manifest.

On top of the policy, two checks hold whatever any file says (:data:`HARD_MAX_SSIM`): a release
is refused when any output is pixel-identical to its own input, has SSIM at or above 0.95 with it,
or has the same perceptual hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from deid.errors import ConfigError, DeidError

__all__ = ["ReleasePolicy", "ReleaseRefused", "load_release_policy", "release_policy", "POLICY_ENV",
           "PACKAGE_POLICY", "HARD_MAX_SSIM", "HARD_MAX_ATTACKER_MARGIN", "NearCopies", "near_copies",
           "perceptual_hash", "privacy_floor"]

#: The environment variable naming the release owner's policy file.
POLICY_ENV = "DEID_RELEASE_POLICY"
#: The package's own policy, used when the owner names none.
PACKAGE_POLICY = Path(__file__).with_name("release-policy.yaml")
HARD_MAX_SSIM = 0.95
HARD_MAX_ATTACKER_MARGIN = 0.10
# Usefulness protects the release's users, not the people in it: its owner may set any floor, 0 included
# (a release published for a study of the method itself); a run config can only ask for more.
HARD_MIN_TSTR_RETENTION = 0.0
HARD_MIN_TRTS_RETENTION = 0.0


class ReleaseRefused(DeidError):
    """The release policy refuses to publish; the message says which floor and by how much."""


class ReleasePolicy(BaseModel):
    """The release owner's floors. Each may be made stricter than the default, never looser than
    the hard limits in this module."""

    model_config = ConfigDict(extra="forbid")

    max_attacker_margin: float = Field(0.05, ge=0.0, le=HARD_MAX_ATTACKER_MARGIN,
                                       description="worst informed attacker at most chance + this")
    max_ssim: float = Field(HARD_MAX_SSIM, gt=0.0, le=HARD_MAX_SSIM,
                            description="an output with SSIM at or above this against its own input is a near copy")
    min_tstr_retention: float = Field(0.9, ge=HARD_MIN_TSTR_RETENTION, le=1.0,
                                      description="a model trained on the release reads real test faces at least this "
                                                  "share of what one trained on the originals reads (lower bound)")
    min_trts_retention: float = Field(0.85, ge=HARD_MIN_TRTS_RETENTION, le=1.0,
                                      description="original-trained classifiers read the outputs at least this share "
                                                  "of the originals (lower bound)")
    min_phash_distance: int = Field(1, ge=1, le=32,
                                    description="an output whose 63-bit perceptual hash is closer than this to "
                                                "its input's is a near copy")
    _source: str = PrivateAttr("the built-in defaults")

    @property
    def source(self) -> str:
        """Where the policy was read from: ``package default`` or the owner's file."""
        return self._source

    def digest(self) -> str:
        """``sha256:<hex>`` of the policy's values (not of the file's comments or layout)."""
        canonical = json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    def record(self) -> dict:
        """What a release's manifest says of the policy it met: its values, source and digest."""
        return {**self.model_dump(), "source": self.source, "digest": self.digest()}


def load_release_policy(path: str | Path, source: str | None = None) -> ReleasePolicy:
    """The policy in the YAML file ``path``; one :class:`ConfigError` naming the file when it cannot."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: a release policy is a mapping of floors, not {type(data).__name__}")
        policy = ReleasePolicy.model_validate(data)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the release policy: {exc.strerror or exc}") from None
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{p}: invalid release policy: {exc}") from None
    policy._source = source or str(p)
    return policy


def release_policy(environ: dict[str, str] | None = None) -> ReleasePolicy:
    """The release policy every release of this process meets: the file named by ``DEID_RELEASE_POLICY``
    (the release owner's; a name that does not load is an error, never a fall back to the defaults), else
    the package's own. Nothing is read from the project, the current folder or a work dir."""
    env = os.environ if environ is None else environ
    owner = env.get(POLICY_ENV, "").strip()
    if owner:
        return load_release_policy(Path(owner).expanduser(), source=f"{POLICY_ENV}={owner}")
    return load_release_policy(PACKAGE_POLICY, source="package default")


def privacy_floor(policy: ReleasePolicy, metrics: dict[str, float], run_margin: float) -> list[str]:
    """Reasons the audit's privacy figures fall short of the policy (empty when they meet it).

    Privacy is judged as the audit's gate judges it (:func:`deid.evaluation.gates.privacy_checks`): the
    worst attacker against the threshold calibrated for the worst of the row's attackers, a test too
    small to tell chance from chance + margin refused, and every attacker's upper bound against chance
    below. The margin applied is the stricter of the run's gate and the policy's: a run can tighten it,
    never widen it.
    """
    from deid.evaluation.gates import privacy_checks, usefulness_checks

    margin = min(run_margin, policy.max_attacker_margin)
    if metrics.get("identity_acc_worst") is None or metrics.get("identity_chance") is None:
        return ["the audit measured no informed attacker for this method"]
    checks = [*privacy_checks(metrics, margin),  # two-sided, on the 95 % bounds
              *usefulness_checks(metrics, policy.min_tstr_retention, policy.min_trts_retention)]
    return [f"release policy: {text}" for _, value, op, threshold, text in checks
            if not (value <= threshold + 1e-12 if op == "<=" else value >= threshold - 1e-12)]


def perceptual_hash(img: np.ndarray) -> np.ndarray:
    """63-bit DCT hash of a ``(H, W)`` or ``(C, H, W)`` image in ``[0, 1]``: the signs of the 8×8
    lowest frequencies (DC left out) against their median, as a boolean vector."""
    import cv2

    x = np.asarray(img, dtype=np.float32)
    if x.ndim == 3:
        x = x.mean(axis=0)
    small = cv2.resize(x, (32, 32), interpolation=cv2.INTER_AREA)
    d = cv2.dct(small)[:8, :8].ravel()[1:]
    return d > np.partition(d, 31)[31]  # the median of the 63: its middle value, without a full sort


@dataclass
class NearCopies:
    """How many outputs are copies of their own inputs, by which test."""

    checked: int
    identical: int
    ssim_over: int
    phash_match: int
    max_ssim: float
    min_phash_distance: int

    @property
    def any(self) -> bool:
        return bool(self.identical or self.ssim_over or self.phash_match)

    def reasons(self, policy: ReleasePolicy) -> list[str]:
        out = []
        if self.identical:
            out.append(f"{self.identical}/{self.checked} outputs are pixel-identical to their inputs")
        if self.ssim_over:
            out.append(f"{self.ssim_over}/{self.checked} outputs have SSIM ≥ {policy.max_ssim:.2f} with their inputs "
                       f"(max {self.max_ssim:.3f})")
        if self.phash_match:
            out.append(f"{self.phash_match}/{self.checked} outputs share their input's perceptual hash "
                       f"(distance < {policy.min_phash_distance})")
        return out


def near_copies(originals: np.ndarray, outputs: np.ndarray, policy: ReleasePolicy) -> NearCopies:
    """Compare each output ``(N, C, H, W)`` with its own input ``(N, C, H, W)``, both in ``[0, 1]``."""
    from skimage.metrics import structural_similarity

    if originals.shape != outputs.shape:
        raise ValueError(f"originals {originals.shape} and outputs {outputs.shape} differ in shape")
    identical = ssim_over = phash_match = 0
    max_ssim, min_dist = -1.0, 64
    win = min(7, originals.shape[-1], originals.shape[-2])
    win -= 1 - win % 2  # odd
    for a, b in zip(originals, outputs):
        if np.array_equal(a, b):
            identical += 1
            max_ssim, min_dist = 1.0, 0
            continue
        s = float(structural_similarity(a, b, data_range=1.0, channel_axis=0, win_size=win))
        max_ssim = max(max_ssim, s)
        ssim_over += s >= policy.max_ssim
        dist = int((perceptual_hash(a) != perceptual_hash(b)).sum())
        min_dist = min(min_dist, dist)
        phash_match += dist < policy.min_phash_distance
    return NearCopies(len(originals), identical, ssim_over, phash_match, max_ssim, min_dist)
