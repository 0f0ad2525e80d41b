"""Unpaired (photo <-> anime) training: one trainer, pluggable model "families" (CycleGAN, UGATIT).

The trainer owns everything that is not the model: flags.json, the input stream
(translate.datasets.pipelines.cyclegan_dataset, repeated, reseeded on resume) and the image grids
(A | A->B | A->B->A and B | B->A | B->A->B on fixed test examples); the rest (strategy,
checkpoints and resume, SIGINT/SIGTERM, the tf.function step around the family's
`replica_step`, TensorBoard scalars, progress) is translate.training.loop's, shared with pix2pix.

A family owns its networks, optimizers, losses and step. The contract (see `Family`):

* `Family(cfg)` stores the config; `build(in_channels)` creates networks and optimizers and is
  called inside `strategy.scope()` (so variables are mirrored); `in_channels` is 3, or 4 with
  `cfg.landmark_channel` (RGB + the rendered landmark layer as the last channel).
* `checkpoint_objects()` -> {name: trackable}: everything to save (networks, optimizers, history
  pools...). The inference generators must use the names the family's `translate.inference.loading`
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

A family is one line of translate.models.registry (its `training` names the class, with a
`name` attribute equal to the registry name); `get_family(name)` imports it on first use.
Family-specific settings live in `cfg.options` (a flat dict merged over the family's
`defaults`); `model_keys` names the options (besides image_size and landmark_channel) that
define the networks: a resumed run must match them (flags.json check).
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, ClassVar, Dict, Optional, Tuple, Type

import tensorflow as tf

from translate.models import registry
from translate.training.loop import ConfigError, GanTrainer, check_common

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
    cache_images: str = "auto"  # data.CACHE_CHOICES
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


UnknownFamilyError = registry.UnknownModelError


def get_family(name: str) -> Type[Family]:
    """The unpaired family class of model `name` (translate.models.registry)."""
    family = registry.get(name)
    if family.paired:
        raise UnknownFamilyError(f"--model={name} is a paired model, not an unpaired family")
    return registry.training(name)


# ====================================================================================== trainer


def _grid(a: tf.Tensor, ab: tf.Tensor, aba: tf.Tensor) -> tf.Tensor:
    """[1, N*S, k*S, 3] in [0, 1]: a row per example, source | translated | round trip
    (+ the source's landmark layer, and the layer the generator output when it makes one)."""
    cols = [a[..., :3], ab[..., :3], aba[..., :3]]
    if a.shape[-1] > 3:
        cols.append(tf.tile(a[..., 3:4], [1, 1, 1, 3]))
    if ab.shape[-1] > 3:
        cols.append(tf.tile(ab[..., 3:4], [1, 1, 1, 3]))
    rows = tf.concat(cols, axis=2)
    grid = tf.reshape(rows, [1, -1, rows.shape[2], 3])
    return tf.clip_by_value((grid + 1.0) / 2.0, 0.0, 1.0)


class UnpairedTrainer(GanTrainer):
    """Builds the run described by an UnpairedConfig (checking train_dir first); `run()` trains
    (translate.training.loop's loop around the family's replica step)."""

    def __init__(self, cfg: UnpairedConfig, log: Callable[[str], None] = print):
        from translate import run_config
        self.cfg, self.log = cfg, log
        try:
            self.family = get_family(cfg.model)(cfg)
            self.family.check()
        except (UnknownFamilyError, ValueError) as e:
            raise ConfigError(str(e)) from None
        self._check(cfg)
        self.flags = {**cfg.as_flags(), **self.family.options}
        if cfg.learning_rate is None:
            self.flags["learning_rate"] = self.family.lr
        run_config.check_and_save(cfg.train_dir, self.flags,
                                  COMMON_MODEL_KEYS + tuple(self.family.model_keys), log=log)
        self.in_channels = 4 if cfg.landmark_channel else 3
        self._setup(self._build)

    def _build(self) -> Dict:
        self.family.build(self.in_channels)
        return self.family.checkpoint_objects()

    @staticmethod
    def _check(cfg: UnpairedConfig) -> None:
        check_common(cfg, ("batch_size", "max_steps", "save_every", "summary_every", "log_every",
                           "num_examples"))
        if cfg.decay_start is not None and not 0 <= cfg.decay_start <= cfg.max_steps:
            raise ConfigError(f"--decay_from must be in [0, --max_steps={cfg.max_steps}], got {cfg.decay_start}")

    # ------------------------------------------------------------------ GanTrainer hooks
    def _step_variable(self) -> tf.Variable:
        return self.family.step_counter.iterations

    def learning_rate(self) -> float:
        return self.family.learning_rate()

    def _dataset(self, split, augment, batch_size, seed, shuffle=None, cache="off"):
        from translate.datasets import pipelines as data
        cfg = self.cfg
        return data.cyclegan_dataset(cfg.dataset_dir, split, cfg.image_size, cfg.landmark_channel,
                                     augment=augment, batch_size=batch_size, seed=seed,
                                     shuffle=shuffle, drop_remainder=True,
                                     cache=data.CACHE_CHOICES[cache])

    def _train_dataset(self, start_step: int) -> tf.data.Dataset:
        cfg = self.cfg
        return self._dataset("train", cfg.augment, cfg.batch_size, cfg.seed + 1_000_003 * start_step,
                             cache=cfg.cache_images).repeat()

    def _replica_step(self) -> Callable:
        return self.family.replica_step

    def fixed_examples(self):
        """(photos, animes): the first `num_examples` of the test split (train without one)."""
        from translate.datasets import records
        for split in ("test", "train"):
            try:
                ds = self._dataset(split, False, 1, self.cfg.seed, shuffle=False)
            except records.DatasetError:
                if split == "train":
                    raise
                continue
            pairs = list(ds.take(self.cfg.num_examples))
            if pairs:
                return tuple(tf.concat([p[i] for p in pairs], 0) for i in range(2))
        raise records.DatasetError(f"{self.cfg.dataset_dir}: no examples")

    def _image_summaries(self) -> Callable[[], None]:
        family, model, fixed = self.family, self.cfg.model, self.fixed_examples()

        def round_trip(x, there, back):
            y = family.translate(x, there)
            z_in = y if y.shape[-1] >= x.shape[-1] else tf.concat([y[..., :3], x[..., 3:]], -1)
            return y, family.translate(z_in, back)

        @tf.function
        def grids(photo, anime):
            ab, aba = round_trip(photo, "ab", "ba")
            ba, bab = round_trip(anime, "ba", "ab")
            return _grid(photo, ab, aba), _grid(anime, ba, bab)

        def write():
            g_a, g_b = grids(*fixed)
            tf.summary.image(f"{model}/A_AtoB_AtoBtoA", g_a)
            tf.summary.image(f"{model}/B_BtoA_BtoAtoB", g_b)
        return write

    def _describe(self, start: int) -> str:
        cfg = self.cfg
        return (f"training {cfg.model} ({cfg.image_size}px, {self.in_channels} channels, batch "
                f"{cfg.batch_size}, {self.strategy.num_replicas_in_sync} replica(s)) from step "
                f"{start} to {cfg.max_steps}")

    def _log_line(self, m: Dict[str, float]) -> str:
        return self.family.log_line(m)
