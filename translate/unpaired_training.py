"""Unpaired (photo <-> anime) training: one trainer, pluggable model "families" (CycleGAN, UGATIT).

The trainer owns everything that is not the model: the tf.distribute strategy, flags.json,
the input stream (translate.data.cyclegan_dataset, repeated, reseeded on resume), the
tf.train.CheckpointManager and resume, SIGINT/SIGTERM (save after the current step), the
tf.function step that runs the family's `replica_step` under `strategy.run` and sums the
per-replica losses, TensorBoard scalars (losses, lr, steps/s) and image grids
(A | A->B | A->B->A and B | B->A | B->A->B on fixed test examples).

A family owns its networks, optimizers, losses and step. The contract (see `Family`):

* `Family(cfg)` stores the config; `build(in_channels)` creates networks and optimizers and is
  called inside `strategy.scope()` (so variables are mirrored); `in_channels` is 3, or 4 with
  `cfg.landmark_channel` (RGB + the rendered landmark layer as the last channel).
* `checkpoint_objects()` -> {name: trackable}: everything to save (networks, optimizers, history
  pools...). The inference generators must use the names the family's `translate.loading`
  builder returns (e.g. "generator_ab" = photo -> anime, "generator_ba" = anime -> photo).
* `replica_step(photo, anime)` -> {name: scalar}: one update on one replica's batch, losses
  already scaled by the GLOBAL batch (tf.nn.compute_average_loss(..., global_batch_size=
  cfg.batch_size)), so the trainer's SUM over replicas is the global mean. Traced inside the
  trainer's tf.function; it must apply its own gradients.
* `translate(x, direction)` -> images for the grids; direction "ab" (photo -> anime) or "ba";
  x has in_channels channels; the output's first 3 channels are RGB. For the round trip the
  trainer appends x's channels beyond the output's (the landmark layer) before translating back.
* `step_counter`: the optimizer whose `iterations` is the training step (restored on resume).
* `learning_rate()`: the current lr (for TensorBoard / logs).
* `log_line(metrics)`: optional short text for the log line.

Register a family with `@register_family("name")` on the class. `get_family(name)` imports
`translate.<name>_family` on demand, so `--model=ugatit` works as soon as that module exists.
Family-specific settings live in `cfg.options` (a flat dict merged over the family's
`defaults`); `model_keys` names the options (besides image_size and landmark_channel) that
define the networks: a resumed run must match them (flags.json check).
"""
from __future__ import annotations

import abc
import dataclasses
import importlib
from typing import Any, Callable, ClassVar, Dict, Optional, Tuple, Type

import tensorflow as tf

COMMON_MODEL_KEYS = ("model", "image_size", "landmark_channel")
DIRECTIONS = ("ab", "ba")  # a = photo, b = anime


@dataclasses.dataclass
class UnpairedConfig:
    """Flags every unpaired family shares; `options` holds the family's own (see Family.defaults)."""
    dataset_dir: str
    train_dir: str
    model: str = "cyclegan"
    image_size: int = 256
    landmark_channel: bool = False
    batch_size: int = 1  # global batch, split over the strategy's replicas
    max_steps: int = 200_000
    decay_start: Optional[int] = None  # lr constant until here, then linear to 0; None = max_steps // 2
    learning_rate: Optional[float] = None  # None = the family's default_learning_rate
    beta1: float = 0.5
    augment: bool = True
    save_every: int = 1000
    summary_every: int = 100
    log_every: int = 100
    num_examples: int = 3  # fixed test examples per domain in the image grids
    seed: int = 0
    strategy: str = "default"
    max_to_keep: int = 3
    handle_signals: bool = True
    options: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_flags(self) -> Dict:
        d = dataclasses.asdict(self)
        d.pop("handle_signals")
        opts = d.pop("options")
        return {**d, **opts}


class Family(abc.ABC):
    """One unpaired model family (networks + optimizers + step); see the module docstring."""

    name: ClassVar[str] = ""
    defaults: ClassVar[Dict[str, Any]] = {}  # family options and their defaults
    model_keys: ClassVar[Tuple[str, ...]] = ()  # options that define the networks' shapes
    default_learning_rate: ClassVar[float] = 2e-4

    def __init__(self, cfg: UnpairedConfig):
        unknown = set(cfg.options) - set(self.defaults)
        if unknown:
            raise ValueError(f"{self.name}: unknown options {sorted(unknown)}")
        self.cfg = cfg
        self.options = {**self.defaults, **cfg.options}

    @property
    def lr(self) -> float:
        return self.cfg.learning_rate if self.cfg.learning_rate is not None else self.default_learning_rate

    @abc.abstractmethod
    def build(self, in_channels: int) -> None:
        """Creates networks and optimizers (called inside strategy.scope())."""

    @abc.abstractmethod
    def checkpoint_objects(self) -> Dict[str, Any]:
        """{attribute name: trackable} saved in every checkpoint."""

    @abc.abstractmethod
    def replica_step(self, photo: tf.Tensor, anime: tf.Tensor) -> Dict[str, tf.Tensor]:
        """One update on this replica's batch; scalar losses scaled by the global batch."""

    @abc.abstractmethod
    def translate(self, x: tf.Tensor, direction: str) -> tf.Tensor:
        """Inference-mode translation "ab" (photo -> anime) or "ba" for the image grids."""

    @property
    @abc.abstractmethod
    def step_counter(self):
        """The optimizer whose `iterations` is the training step."""

    @abc.abstractmethod
    def learning_rate(self) -> float:
        """The learning rate at the current step."""

    def check(self) -> None:
        """Raises ValueError on options that cannot make a run (called before anything is built)."""

    def log_line(self, metrics: Dict[str, float]) -> str:
        return "  ".join(f"{k} {v:.3f}" for k, v in metrics.items())


FAMILIES: Dict[str, Type[Family]] = {}


def register_family(name: str) -> Callable[[Type[Family]], Type[Family]]:
    """Class decorator: `@register_family("ugatit") class UGATIT(Family): ...`."""
    def deco(cls):
        cls.name = name
        FAMILIES[name] = cls
        return cls
    return deco


class UnknownFamilyError(ValueError):
    """No family registered under that model name (its module is missing or failed to import)."""


def get_family(name: str) -> Type[Family]:
    """The family class for `name`, importing translate.<name>_family on first use."""
    if name not in FAMILIES:
        try:
            importlib.import_module(f"translate.{name}_family")
        except ModuleNotFoundError as e:
            if e.name != f"translate.{name}_family":
                raise
            raise UnknownFamilyError(f"--model={name}: no translate/{name}_family.py in this "
                                     "checkout (that model is not implemented yet)") from None
    if name not in FAMILIES:
        raise UnknownFamilyError(f"translate/{name}_family.py registers no family {name!r}")
    return FAMILIES[name]
