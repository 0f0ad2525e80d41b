"""Taggers this project trains with its own recipe (`tools/train_pretrained.py --model=tagger`)
and ships inside the package, each a tagger folder (tagnet/model_dir.py) with a MODEL_CARD.md.

`hololive/` is the default wherever a tagger is needed and none is given: tagnet/predict.py
without --model_dir, tools/serve.py without --model_base_path, the demo. No TensorFlow here.
"""
from __future__ import annotations

import os
from typing import List

from tagnet import contract

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = "hololive"
CARD = "MODEL_CARD.md"


def path(name: str = DEFAULT) -> str:
    return os.path.join(HERE, name)


def available() -> List[str]:
    """Names of the shipped taggers present in this installation."""
    return sorted(n for n in os.listdir(HERE)
                  if os.path.isfile(os.path.join(HERE, n, contract.MODEL_JSON)))


def default_model_dir() -> str:
    """The shipped default tagger's folder; FileNotFoundError with what to do when it is absent."""
    folder = path()
    if not os.path.isfile(os.path.join(folder, contract.MODEL_JSON)):
        raise FileNotFoundError(f"no shipped tagger in {folder}: pass --model_dir, or train it with "
                                f"`python tools/train_pretrained.py --model=tagger`")
    return folder
