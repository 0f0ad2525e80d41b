"""Names of translate's on-disk contracts, importable without TensorFlow: writers and readers
(the builder, the record readers, training, the CLIs' early checks) import them from here.

* A face-record dataset folder: `DATASET_JSON` (written by translate.datasets.builder, read and
  checked by translate.datasets.records), shards `shard_name(split, domain, i, n)`, splits
  `SPLITS`, face domains `DOMAINS`.
* A training run folder (`--train_dir`): `FLAGS_JSON`, the flags the run was made with
  (translate.run_config), beside the tf.train checkpoints.
"""
DATASET_JSON = "dataset.json"
DATASET_FORMAT = "face-records"
RECORD_SCHEMA_VERSION = 1
SPLITS = ("train", "test")
DOMAINS = ("photo", "anime")  # CycleGAN's (A, B)
FLAGS_JSON = "flags.json"


def shard_name(split: str, domain: str, index: int, num_shards: int) -> str:
    return f"{split}-{domain}-{index:05d}-of-{num_shards:05d}.tfrecord"
