"""A kill -9 during a checkpoint save leaves NAME-N_temp/ folders: the start of a training run
removes them, never the live checkpoint. The same for both twins (translate's GAN loop, tagnet's
trainer)."""
import os

import pytest
import tensorflow as tf

from tagnet import training
from translate.training import loop


@pytest.mark.parametrize("remove", [loop.remove_stale_temp_checkpoints,
                                    training.remove_stale_temp_checkpoints],
                         ids=["translate", "tagnet"])
def test_stale_temp_checkpoint_folders_are_removed(tmp_path, remove):
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)), str(tmp_path), 3)
    manager.save(checkpoint_number=5)
    for name in ("ckpt-3_temp", "ckpt-6_temp", "ckpt-6_temp_1a2b", "ckpt-5_temp"):
        os.makedirs(tmp_path / name)  # what a killed save leaves (empty or part-* files)
    (tmp_path / "ckpt-6_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x")
    os.makedirs(tmp_path / "other_temp")  # not a checkpoint's: kept
    removed = remove(str(tmp_path))
    assert sorted(os.path.basename(p) for p in removed) == ["ckpt-3_temp", "ckpt-6_temp",
                                                           "ckpt-6_temp_1a2b"]
    left = sorted(os.listdir(tmp_path))
    assert "ckpt-5_temp" in left and "other_temp" in left  # the live checkpoint's is left alone
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-5")
    tf.train.Checkpoint(v=tf.Variable(0.0)).restore(manager.latest_checkpoint).assert_consumed()
    assert remove(str(tmp_path / "missing")) == []
