"""tools/train_pretrained.py's tagger recipe end to end on a tiny stand-in for the shared data:
dataset with whole artworks held back, training, evaluation, the shipped folder and its card;
run again, it resumes instead of starting over."""
import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from tagnet import model_dir
from tools.recipes import tagger

COLOURS = {"ame": (230, 200, 60), "gura": (90, 140, 230), "calli": (200, 40, 80), "ina": (120, 70, 160)}


def _fake_shared_data(root):
    """DATA/anime/hololive{,_more}/ with labels.csv: artworks of 1-2 crops per character."""
    rng = np.random.default_rng(0)
    for sub, per_character in (("hololive", 4), ("hololive_more", 8)):
        folder = root / "anime" / sub
        folder.mkdir(parents=True)
        with open(folder / "labels.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "character"])
            for name, colour in COLOURS.items():
                for i in range(per_character):
                    art = f"{sub}{name}{i // 2:03d}"
                    img = np.clip(rng.normal(colour, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
                    fname = f"{art}.jpg-{i % 2 + 1}.jpg"
                    Image.fromarray(img).save(folder / fname)
                    w.writerow([fname, name])


def test_tagger_recipe_runs_and_resumes(tmp_path):
    _fake_shared_data(tmp_path / "data")
    recipe = tagger.TaggerRecipe(data_dir=str(tmp_path / "data"), work_dir=str(tmp_path / "work"),
                                 output_dir=str(tmp_path / "shipped"), backbone="mobilenet_v1_025",
                                 record_size=32, image_size=32, batch_size=8, max_number_of_steps=3,
                                 warmup_steps=0, validation_fraction=0.25)
    logs = []
    figures = tagger.run(recipe, log=logs.append)
    assert figures["steps"] == 3 and figures["tags"] == 4
    assert figures["train_examples"] + figures["validation_examples"] == 48
    assert 0.0 <= figures["top1"] <= 1.0 and 0.0 <= figures["baseline_top1"] <= 1.0
    assert abs(figures["margin_top1"] - (figures["top1"] - figures["baseline_top1"])) < 1e-9
    cfg = model_dir.read_config(str(tmp_path / "shipped"))
    assert sorted(cfg["tags"]) == sorted(COLOURS) and set(model_dir.categories_of(cfg)) == {"character"}
    card = (tmp_path / "shipped" / "MODEL_CARD.md").read_text()
    assert "tools/train_pretrained.py" in card and f"{figures['top1']:.3f}" in card
    commands = card.split("```")[1].split()
    assert "--weights=none" in commands
    assert not [a for a in commands if "=" in a and a.split("=", 1)[1].startswith("/")]  # relative
    # Again with more steps: the dataset is kept and training resumes from step 3.
    recipe.max_number_of_steps = 5
    figures = tagger.run(recipe, log=logs.append)
    assert figures["steps"] == 5
    assert any("is complete" in line for line in logs)
    with open(tmp_path / "work" / "recipe.json") as f:
        assert set(json.load(f)) == {"dataset", "train", "evaluate"}


def test_missing_data_is_one_clear_error(tmp_path):
    with pytest.raises(tagger.RecipeError, match="labels.csv is missing"):
        tagger.write_labels(str(tmp_path), str(tmp_path / "labels.csv"))
