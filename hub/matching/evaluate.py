"""Pairwise precision, recall and F1 of a clustering against the truth.

A pair of records is a true positive when both clusterings put them together. This is the
measure of the FEBRL papers, Splink's and recordlinkage's, and what bench/mdm.py reports.
Counted from the cluster sizes (n choose 2), never by listing pairs, so a clustering of a
million records is scored in a second.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Quality:
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int

    @property
    def precision(self) -> float:
        return self.correct_pairs / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.correct_pairs / self.true_pairs if self.true_pairs else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def _pairs(sizes: Counter[object]) -> int:
    return sum(n * (n - 1) // 2 for n in sizes.values())


def pairwise_quality(predicted: Mapping[str, str], truth: Mapping[str, str]) -> Quality:
    """``predicted`` and ``truth``: record id → cluster id, over the same records."""
    if predicted.keys() != truth.keys():
        raise ValueError("predicted and truth must cover the same records")
    both: Counter[object] = Counter((predicted[r], truth[r]) for r in truth)
    return Quality(
        true_pairs=_pairs(Counter(truth.values())),
        predicted_pairs=_pairs(Counter(predicted.values())),
        correct_pairs=_pairs(both),
    )
