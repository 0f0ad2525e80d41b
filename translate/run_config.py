"""The flags a training run used, saved as <train_dir>/flags.json and checked on resume.

A re-run with different model-defining values would otherwise die in checkpoint restore with a
shape-mismatch traceback; this turns it into one clear message naming the flags.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Iterable, List

from translate.contract import FLAGS_JSON

FILENAME = FLAGS_JSON


class IncompatibleRunError(ValueError):
    """The train_dir holds a run whose model flags differ from this one's."""


def path(train_dir: str) -> str:
    return os.path.join(train_dir, FILENAME)


def load(train_dir: str) -> Dict | None:
    p = path(train_dir)
    if not os.path.exists(p):
        return None
    with open(p, encoding="utf-8") as f:
        return json.load(f)


def differences(saved: Dict, current: Dict, keys: Iterable[str]) -> List[str]:
    return [f"--{k}={saved.get(k)!r} (this run: {current.get(k)!r})"
            for k in keys if k in saved and saved.get(k) != current.get(k)]


def check_and_save(train_dir: str, current: Dict, model_keys: Iterable[str], log=print) -> None:
    """Raises IncompatibleRunError if train_dir was made with other model flags; else writes the
    current flags (a resumed run may change e.g. max_steps; that is logged, not refused)."""
    saved = load(train_dir)
    if saved is not None:
        bad = differences(saved, current, model_keys)
        if bad:
            raise IncompatibleRunError(
                f"{train_dir} holds a run made with " + ", ".join(bad) + "; its checkpoints do "
                "not fit this model. Use another --train_dir, or the same flags to resume.")
        changed = differences(saved, current, [k for k in current if k not in set(model_keys)])
        if changed:
            log("resuming with changed flags, was: " + ", ".join(changed))
    os.makedirs(train_dir, exist_ok=True)
    tmp = path(train_dir) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(current, f, indent=2, sort_keys=True)
    os.replace(tmp, path(train_dir))
