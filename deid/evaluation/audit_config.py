"""What the audit measures and how it is configured: :data:`AUDIT_METRICS` and :class:`AuditConfig`.

Light on purpose: a run config is validated against these without importing torch or scikit-learn
(the attackers' module is imported only when an audit runs). Each metric's facts are in
:mod:`deid.evaluation.metric_registry`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from data_contracts import SPLITS
from deid.evaluation.attacker_registry import DEFAULT_ATTACKERS, available_attackers
from deid.evaluation.metric_registry import metric_names
from deid.methods.base import Device

if TYPE_CHECKING:
    from deid.evaluation.attackers import AttackerConfig

__all__ = ["AuditConfig", "AUDIT_METRICS"]

AUDIT_METRICS = metric_names()  # every name the audit writes: the metric table's (deid/evaluation/metric_registry.py)


def _known_attacker(name: str) -> str:
    if name not in available_attackers():
        raise ValueError(f"unknown attacker '{name}'; registered attackers: {available_attackers()}")
    return name


class AuditConfig(BaseModel):
    """How the audit trains its attackers and which protocols run."""

    model_config = ConfigDict(extra="forbid")

    attackers: list[Annotated[str, AfterValidator(_known_attacker)]] = Field(
        default_factory=lambda: list(DEFAULT_ATTACKERS), min_length=1)
    cnn_min_steps: int = Field(150, ge=0)  # the CNN attacker trains at least this many optimiser steps, fewer than
    # 15 epochs give on the built-in set (~720 training images, 180 steps): only smaller sets train longer
    cnn_augment: bool = True  # the CNN attacker sees random shifts, brightness jitter and left-right flips
    cnn_epochs: int = Field(15, ge=1)
    cnn_width: int = Field(32, ge=4)
    pca_components: int = Field(64, ge=2)
    linkage_repeats: int = Field(5, ge=1)
    face_metrics: Literal["auto", "on", "off"] = "auto"
    train_splits: list[str] = Field(default_factory=lambda: ["train", "val"], min_length=1)
    test_split: str = "test"
    seed: int = 0
    device: Device = "auto"
    folds: int | None = Field(None, ge=2, le=20)  # pool the informed attackers' predictions over k folds of
    # train + test (every image tested once): for small sets whose test split cannot decide the gates
    unseen_attributes: list[str] | Literal["auto"] = "auto"  # attributes the methods never used ("auto": every
    # attribute the dataset records for all images), predicted from the outputs by `unseen_attackers`
    unseen_attackers: list[Annotated[str, AfterValidator(_known_attacker)]] = Field(
        default_factory=lambda: ["linear"], min_length=1)
    accept_split_leak: str | None = Field(None, min_length=10)  # why near-duplicates across the splits (of a
    # dataset without groups) do not inflate this audit; without it they make the audit inconclusive

    @field_validator("train_splits", "test_split")
    @classmethod
    def _known_splits(cls, v: str | list[str]) -> str | list[str]:
        bad = [s for s in ([v] if isinstance(v, str) else v) if s not in SPLITS]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a split; splits are {list(SPLITS)}")
        return v

    @model_validator(mode="after")
    def _test_split_held_out(self) -> "AuditConfig":
        if self.test_split in self.train_splits:
            raise ValueError(f"test_split '{self.test_split}' is also among train_splits {self.train_splits}; "
                             "the attackers would be tested on what they were trained on")
        return self

    def attacker_config(self) -> AttackerConfig:
        from deid.evaluation.attackers import AttackerConfig

        return AttackerConfig(attackers=tuple(self.attackers), cnn_epochs=self.cnn_epochs, cnn_width=self.cnn_width,
                              pca_components=self.pca_components, random_state=self.seed, device=self.device,
                              cnn_min_steps=self.cnn_min_steps, cnn_augment=self.cnn_augment)
