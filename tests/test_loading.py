"""translate.loading: a trained run's inference networks come back from --train_dir alone."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from translate import builder, loading, synthetic, training  # noqa: E402


def test_load_pix2pix_restores_trained_generator(tmp_path):
    synthetic.write_dataset(str(tmp_path / "syn"), 6, size=64, seed=1)
    builder.build(builder.BuildConfig(task="pix2pix", inputs=[str(tmp_path / "syn" / "faces.jsonl")],
                                      output_dir=str(tmp_path / "ds"), test_fraction=0.0,
                                      num_shards=1, progress=False), log=lambda s: None)
    cfg = training.Pix2PixConfig(dataset_dir=str(tmp_path / "ds"), train_dir=str(tmp_path / "run"),
                                 image_size=32, ngf=8, ndf=8, max_steps=2, num_examples=1,
                                 handle_signals=False)
    trainer = training.Pix2PixTrainer(cfg, log=lambda s: None)
    trainer.run()
    t = loading.load(cfg.train_dir)
    assert t.model == "pix2pix" and t.step == 2 and t.image_size == 32
    for a, b in zip(trainer.generator.weights, t.networks["generator"].weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(loading.LoadError, match="no such folder"):
        loading.load(str(tmp_path / "nope"))
    with pytest.raises(loading.LoadError, match="flags.json"):
        loading.load(str(tmp_path))
