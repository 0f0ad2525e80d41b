"""Leak-free train/test splits: whole groups go to one side, chosen deterministically from a seed.

A group is whatever must never straddle the split: a character, a person, a source picture, a
near-duplicate cluster (the builder unions all of these into one group id per face). With
`split_by="image"` every face is its own group: the leaky split of the original work, kept only to
reproduce it; the builder reports how many groups it then shares between the splits.
"""
from __future__ import annotations

import random
from collections import Counter
from typing import Dict, List, Sequence, Set

SPLIT_BY = ("group", "image")


def assign_splits(groups: Sequence[str], test_fraction: float, seed: int = 0,
                  split_by: str = "group") -> List[str]:
    """Returns "train" or "test" for each item.

    Groups are sorted, shuffled with `random.Random(seed)` and taken into the test split until it
    holds at least round(test_fraction * n) items. When test_fraction > 0 and there are at least
    two groups, each split gets at least one group. The result depends only on the multiset of
    (group, position) pairs and the seed, never on hash randomisation.
    """
    if split_by not in SPLIT_BY:
        raise ValueError(f"split_by must be one of {SPLIT_BY}, not {split_by!r}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), not {test_fraction}")
    n = len(groups)
    keys = [str(g) for g in groups] if split_by == "group" else [f"#{i}" for i in range(n)]
    sizes = Counter(keys)
    order = sorted(sizes)
    random.Random(seed).shuffle(order)
    target = round(test_fraction * n)
    if test_fraction > 0 and len(order) >= 2:
        target = max(target, 1)
    test: Set[str] = set()
    count = 0
    for g in order:
        if count >= target or len(test) >= len(order) - 1:
            break
        test.add(g)
        count += sizes[g]
    return ["test" if k in test else "train" for k in keys]


def shared_groups(groups: Sequence[str], splits: Sequence[str]) -> Set[str]:
    """Groups found in more than one split (empty for a leak-free split)."""
    seen: Dict[str, Set[str]] = {}
    for g, s in zip(groups, splits):
        seen.setdefault(str(g), set()).add(s)
    return {g for g, s in seen.items() if len(s) > 1}
