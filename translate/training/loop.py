"""What every translation trainer shares: strategy, checkpoints and resume, signals, the loop.

* Resume: the networks and optimizers (slots and `iterations`) are in a tf.train.Checkpoint in
  train_dir; the step *is* an optimizer's `iterations` and the learning rate a schedule of it, so
  a re-run continues with the same step, state and lr. The input stream restarts with a seed
  derived from (seed, step): a resumed run sees new draws, still a function of the flags.
* SIGINT / SIGTERM finish the current step, save a checkpoint and return (a second signal
  interrupts at once).
* Multi-worker: every replica must save (collectives); non-chiefs write to a scratch folder that
  is removed at the end, and only the chief writes summaries.

Subclasses (translate.training.pix2pix.Pix2PixTrainer, translate.training.unpaired.UnpairedTrainer) call
`_setup` from their constructor and provide the hooks listed in GanTrainer.
"""
from __future__ import annotations

import math
import os
import shutil
import signal
import threading
import time
from typing import Callable, Dict, List, Optional

import tensorflow as tf

from translate.datasets.pipelines import CACHE_CHOICES

STRATEGIES = ("default", "mirrored", "multi_worker")


class ConfigError(ValueError):
    """Flags that cannot make a run (bad size, batch, strategy...)."""


def remove_stale_temp_checkpoints(ckpt_dir: str, checkpoint_name: str = "ckpt") -> List[str]:
    """Removes the `NAME-N_temp*` folders a killed checkpoint save leaves in `ckpt_dir` (TensorFlow
    writes NAME-N_temp/part-* and merges them into NAME-N at the end), except any of the live
    (latest) checkpoint; -> the removed paths. Call at the start of a run, before any save."""
    import re
    import shutil

    if not os.path.isdir(ckpt_dir):
        return []
    latest = tf.train.latest_checkpoint(ckpt_dir)
    live = os.path.basename(latest) if latest else None
    pattern = re.compile(rf"^({re.escape(checkpoint_name)}-\d+)_temp")
    removed = []
    for name in sorted(os.listdir(ckpt_dir)):
        m = pattern.match(name)
        path = os.path.join(ckpt_dir, name)
        if m and m.group(1) != live and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":  # workers from TF_CONFIG; a single worker without it
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"strategy must be one of {STRATEGIES}, not {name!r}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this is a non-chief worker of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def check_common(cfg, counts=("batch_size", "max_steps", "save_every", "summary_every", "log_every")) -> None:
    """The flag checks every trainer makes (positive counts, strategy, required folders)."""
    for name in counts:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {STRATEGIES}, not {cfg.strategy!r}")
    if not cfg.dataset_dir or not cfg.train_dir:
        raise ConfigError("--dataset_dir and --train_dir are required")
    if cfg.cache_images not in CACHE_CHOICES:
        raise ConfigError(f"--cache_images must be one of {tuple(CACHE_CHOICES)}, not {cfg.cache_images!r}")


class Signals:
    """SIGINT/SIGTERM set a flag the loop checks between steps; a second one interrupts."""

    def __init__(self, enabled: bool, log):
        self.received: Optional[int] = None
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.log, self.old = log, {}

    def _handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        self.log(f"received {signal.Signals(signum).name}: saving a checkpoint after this step "
                 "(signal again to stop at once)")

    def __enter__(self):
        if self.enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, h in self.old.items():
            signal.signal(sig, h)
        return False


class GanTrainer:
    """Strategy, checkpoint manager, resume and the training loop around a replica step.

    Hooks: `_step_variable()` (the optimizer `iterations` that counts steps),
    `learning_rate()`, `_train_dataset(start_step)` (batched pairs, repeated),
    `_replica_step()` (pair -> metrics on one replica), `_image_summaries()` (-> a function
    writing image summaries under the current default writer and step), `_describe(start)`
    and `_log_line(metrics)`. `self.cfg` needs max_steps, batch_size, seed, strategy, train_dir,
    max_to_keep, save_every, summary_every, log_every, handle_signals.
    """

    def _setup(self, build: Callable[[], Dict]) -> None:
        """Strategy, the networks and optimizers (`build()` -> checkpoint objects, run under the
        strategy's scope after seeding) and the checkpoint manager."""
        import keras
        cfg = self.cfg
        self.strategy = make_strategy(cfg.strategy)
        if cfg.batch_size % self.strategy.num_replicas_in_sync:
            raise ConfigError(f"--batch_size={cfg.batch_size} does not split over "
                              f"{self.strategy.num_replicas_in_sync} replicas")
        keras.utils.set_random_seed(cfg.seed)
        with self.strategy.scope():
            objects = build()
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.chief = is_chief(self.strategy)
        ckpt_dir = cfg.train_dir if self.chief else os.path.join(
            cfg.train_dir, f"worker_tmp_{self.strategy.cluster_resolver.task_id}")
        for path in remove_stale_temp_checkpoints(ckpt_dir):
            self.log(f"removed {path}: left by an interrupted checkpoint save")
        self.manager = tf.train.CheckpointManager(self.checkpoint, ckpt_dir, cfg.max_to_keep)

    @property
    def step(self) -> int:
        return int(self._step_variable().numpy())

    def restore(self) -> int:
        """Restores the latest checkpoint in train_dir if any; returns the step."""
        latest = tf.train.latest_checkpoint(self.cfg.train_dir)  # the chief's, on every worker
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            self.log(f"resumed from {latest} at step {self.step}, lr {self.learning_rate():.3g}")
        return self.step

    def save(self) -> str:
        return self.manager.save(checkpoint_number=self.step)

    @staticmethod
    def _shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
        opts = tf.data.Options()
        opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(opts)

    def _train_step_fn(self):
        strategy, replica_step = self.strategy, self._replica_step()

        @tf.function
        def train_step(iterator):
            a, b = next(iterator)
            per_replica = strategy.run(replica_step, args=(a, b))
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                    for k, v in per_replica.items()}
        return train_step

    def _progress_bar(self, start: int):
        if not (self.cfg.handle_signals and self.chief):  # a CLI run on the chief
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm(total=self.cfg.max_steps, initial=start, unit="step", dynamic_ncols=True,
                    mininterval=5, leave=False)

    def run(self, on_step: Optional[Callable[[int, Dict[str, float]], bool]] = None) -> Dict:
        """Trains to max_steps (or a signal, or `on_step` returning True); returns a summary.

        on_step(step, metrics) is called after every step with float metrics.
        """
        cfg = self.cfg
        with Signals(cfg.handle_signals, self.log) as signals:
            start = self.restore()
            result = {"start_step": start, "step": start, "stopped_by": None, "metrics": {}}
            if start >= cfg.max_steps:
                self.log(f"step {start} >= --max_steps={cfg.max_steps}: nothing to do")
                return result
            images = self._image_summaries()
            iterator = iter(self.strategy.experimental_distribute_dataset(
                self._shard_by_data(self._train_dataset(start))))
            train_step = self._train_step_fn()
            writer = (tf.summary.create_file_writer(cfg.train_dir) if self.chief
                      else tf.summary.create_noop_writer())

            def write_images(step):
                with writer.as_default(step=step):
                    images()

            self.log(self._describe(start))
            step, saved_at = start, start
            t_log, s_log = time.perf_counter(), start
            bar = self._progress_bar(start)
            log = bar.write if bar is not None else self.log
            while step < cfg.max_steps:
                out = train_step(iterator)
                step = self.step
                m = {k: float(v) for k, v in out.items()}
                if bar is not None:
                    bar.update(step - bar.n)
                if not all(math.isfinite(v) for v in m.values()):
                    self.save()
                    raise FloatingPointError(f"non-finite loss at step {step}: {m}")
                result["metrics"], result["step"] = m, step
                if step % cfg.summary_every == 0 or step == start + 1:
                    with writer.as_default(step=step):
                        for k, v in m.items():
                            tf.summary.scalar(f"loss/{k}", v)
                        tf.summary.scalar("lr", self.learning_rate())
                    write_images(step)
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    now = time.perf_counter()
                    rate = (step - s_log) / max(now - t_log, 1e-9)
                    t_log, s_log = now, step
                    with writer.as_default(step=step):
                        tf.summary.scalar("steps_per_sec", rate)
                    log(f"step {step}/{cfg.max_steps}  {self._log_line(m)}  lr {self.learning_rate():.3g}  "
                        f"{rate:.2f} steps/s ({1 / max(rate, 1e-9):.2f} s/step)")
                if step % cfg.save_every == 0:
                    self.save()
                    saved_at = step
                if signals.received is not None:
                    result["stopped_by"] = signal.Signals(signals.received).name
                    break
                if on_step is not None and on_step(step, m):
                    result["stopped_by"] = "on_step"
                    break
            if bar is not None:
                bar.close()
            if saved_at != step:
                self.save()
            if not self.chief:  # its copies were only for the collective save
                shutil.rmtree(self.manager.directory, ignore_errors=True)
            write_images(step)
            writer.flush()
            if result["stopped_by"] in ("SIGINT", "SIGTERM"):
                self.log(f"stopped by {result['stopped_by']} at step {step}; checkpoint saved in "
                         f"{cfg.train_dir}; run again with the same flags to resume")
            return result
