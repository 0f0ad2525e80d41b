"""Names of tagnet's on-disk contracts, importable without TensorFlow: writers and readers
(tagnet.build, tagnet.records, tagnet.model_dir, tagnet.training, the CLIs) import them from here.

* A tag dataset folder: `DATASET_JSON`, the vocabulary `TAGS_TXT`, shards
  `shard_names(split, n)`, splits `SPLITS` (train, validation).
* A trained tagger folder: `MODEL_JSON` (tagnet.json), `WEIGHTS`, `TAGS_TXT`, `THRESHOLDS`.
* A training run folder (`--train_dir`): `RUN_JSON` (the run's configuration), the checkpoints,
  and the tagger folders `BEST` (best validation mAP) and `LAST` (the last step).
* Tag categories (Danbooru's): `CATEGORIES`; a tag without one is `DEFAULT_CATEGORY`. Tags of
  `RATING` are one choice per image (the best one), the others each pass or fail a threshold.
"""
from typing import List

DATASET_JSON = "dataset.json"
TAGS_TXT = "tags.txt"
SPLITS = ("train", "validation")
MODEL_JSON = "tagnet.json"
WEIGHTS = "model.weights.h5"
THRESHOLDS = "thresholds.json"
RUN_JSON = "run.json"
BEST = "best"
LAST = "model"

CATEGORIES = ("general", "character", "copyright", "artist", "meta", "rating")
DEFAULT_CATEGORY = "general"
RATING = "rating"


def shard_names(split: str, num_shards: int) -> List[str]:
    return [f"{split}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]
