"""The one table of model families: what `--model` accepts, where each family's networks and
training live. TensorFlow-free (the modules it names are imported on first use), so CLIs check
`--model` before TensorFlow loads.

A family is one entry:
* `networks`: "module:function", function(flags) -> {checkpoint name: keras.Model}, the inference
  networks of a run rebuilt from its flags.json (pix2pix: "generator"; unpaired families:
  "generator_ab" photo -> anime and "generator_ba" anime -> photo). Used by
  translate.inference.loading (evaluation, the photo -> anime CLI, export, serving).
* `training`: "module:Class". Paired (pix2pix): the trainer. Unpaired: a
  translate.training.unpaired.Family subclass, which the shared unpaired trainer drives.

Adding a model family: its networks in translate/models/<name>.py, its training in
translate/training/<name>.py, and one `ModelFamily` line below (tests may `register` more).
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable, Dict, Tuple, Union

Ref = Union[str, Callable]  # "package.module:attribute", or the object itself


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    name: str
    paired: bool
    networks: Ref
    training: Ref = None


class UnknownModelError(ValueError):
    """No model family of that name."""


FAMILIES: Dict[str, ModelFamily] = {}


def register(family: ModelFamily) -> ModelFamily:
    FAMILIES[family.name] = family
    return family


for _f in (
        ModelFamily("pix2pix", paired=True, networks="translate.models.pix2pix:build_inference",
                    training="translate.training.pix2pix:Pix2PixTrainer"),
        ModelFamily("cyclegan", paired=False, networks="translate.models.cyclegan:build_inference",
                    training="translate.training.cyclegan:CycleGAN"),
        ModelFamily("ugatit", paired=False, networks="translate.models.ugatit:build_inference",
                    training="translate.training.ugatit:UGATITFamily")):
    register(_f)

NAMES: Tuple[str, ...] = tuple(FAMILIES)  # the built-in families, for --model
UNPAIRED: Tuple[str, ...] = tuple(n for n in NAMES if not FAMILIES[n].paired)


def get(name: str) -> ModelFamily:
    if name not in FAMILIES:
        raise UnknownModelError(f"unknown model {name!r} (known: {', '.join(sorted(FAMILIES))})")
    return FAMILIES[name]


def resolve(ref: Ref):
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_inference(flags: dict) -> Dict:
    """{checkpoint name: keras.Model}: the inference networks of a run with these flags."""
    return resolve(get(flags.get("model")).networks)(flags)


def training(name: str):
    """The family's trainer (paired) or unpaired Family class."""
    return resolve(get(name).training)
