"""The recipe of the shipped example tagger (tagnet/pretrained/hololive/).

From `DATA/anime/hololive/` and `DATA/anime/hololive_more/` (face crops of 20 characters with
`labels.csv`) to a shipped tagger folder with its MODEL_CARD.md, through the documented CLIs as
a user would run them: tagnet/build_dataset.py (validation = whole artworks, the name before
`-N.jpg`, never seen in training), tagnet/train.py from scratch (no downloaded weights),
tagnet/evaluate.py on the held-back artworks with the colour-histogram kNN baseline beside it.

Every step can be interrupted: the dataset is rebuilt only when it is incomplete, training
resumes from its checkpoints, evaluation and shipping are redone. Wall time per step adds up
across resumes in WORK/recipe.json.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from typing import Callable, Dict, List, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = ("anime/hololive", "anime/hololive_more")
GROUP_PATTERN = r"^(.*)-\d+\.jpg$"
SHIPPED_FILES = ("tagnet.json", "model.weights.h5", "tags.txt", "thresholds.json")


class RecipeError(Exception):
    """A user-facing recipe error (missing data, a failed step)."""


@dataclasses.dataclass
class TaggerRecipe:
    data_dir: str
    work_dir: str
    output_dir: str
    backbone: str = "mobilenet_v2"
    record_size: int = 128
    image_size: int = 96
    batch_size: int = 32
    max_number_of_steps: int = 4000
    learning_rate: float = 2e-3
    weight_decay: float = 0.02
    warmup_steps: int = 200
    label_smoothing: float = 0.1
    dropout: float = 0.2
    validation_fraction: float = 0.15
    seed: int = 0

    @property
    def dataset_dir(self) -> str:
        return os.path.join(self.work_dir, "dataset")

    @property
    def train_dir(self) -> str:
        return os.path.join(self.work_dir, "train")

    @property
    def model_dir(self) -> str:
        return os.path.join(self.train_dir, "model")


def write_labels(data_dir: str, out_csv: str) -> int:
    """One CSV over both folders (paths relative to DATA), every label a `character:` tag."""
    rows = []
    for sub in SOURCES:
        labels = os.path.join(data_dir, sub, "labels.csv")
        if not os.path.isfile(labels):
            raise RecipeError(f"{labels} is missing: --data_dir must hold {' and '.join(SOURCES)} "
                              f"with their labels.csv (see ../shared/data/README.md)")
        with open(labels, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                rows.append((f"{sub}/{row['file']}", f"character:{row['character']}"))
    os.makedirs(os.path.dirname(out_csv), exist_ok=True)
    tmp = out_csv + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "tags"])
        w.writerows(rows)
    os.replace(tmp, out_csv)
    return len(rows)


def commands(r: TaggerRecipe, labels_csv: str) -> Dict[str, List[str]]:
    """The CLI command lines of each step (also written into the model card)."""
    return {
        "dataset": ["tagnet/build_dataset.py", f"--csv={labels_csv}", f"--image_root={r.data_dir}",
                    f"--group_pattern={GROUP_PATTERN}", "--label_type=single_label",
                    f"--image_size={r.record_size}", f"--validation_fraction={r.validation_fraction}",
                    f"--seed={r.seed}", f"--output_dir={r.dataset_dir}"],
        "train": ["tagnet/train.py", f"--dataset_dir={r.dataset_dir}", f"--train_dir={r.train_dir}",
                  f"--backbone={r.backbone}", "--weights=none", f"--image_size={r.image_size}",
                  f"--batch_size={r.batch_size}", f"--max_number_of_steps={r.max_number_of_steps}",
                  "--optimizer=adamw", f"--learning_rate={r.learning_rate}",
                  f"--weight_decay={r.weight_decay}", f"--warmup_steps={r.warmup_steps}",
                  f"--label_smoothing={r.label_smoothing}", f"--dropout={r.dropout}",
                  f"--seed={r.seed}", "--save_interval_secs=600",
                  "--log_every_n_steps=50"],
        "evaluate": ["tagnet/evaluate.py", f"--model_dir={r.model_dir}", "--split=validation",
                     "--baseline", "--save_thresholds", "--progress=false",
                     f"--report_csv={os.path.join(r.work_dir, 'per_tag.csv')}"],
    }


def _run(argv: Sequence[str], capture: bool = False) -> str:
    cmd = [sys.executable, os.path.join(ROOT, argv[0]), *argv[1:]]
    out = subprocess.run(cmd, stdout=subprocess.PIPE if capture else None, text=True)
    if out.returncode != 0:
        raise RecipeError(f"step `{' '.join(argv)}` failed with exit status {out.returncode}")
    return out.stdout or ""


class _Times:
    """Wall seconds per step, added up across interrupted and resumed runs."""

    def __init__(self, path: str):
        self.path = path
        self.data = {}
        if os.path.isfile(path):
            with open(path) as f:
                self.data = json.load(f)

    def add(self, step: str, seconds: float) -> None:
        self.data[step] = round(self.data.get(step, 0.0) + seconds, 1)
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.data, f, indent=1)
        os.replace(self.path + ".tmp", self.path)


def run(r: TaggerRecipe, log: Callable[[str], None] = print) -> Dict:
    """Runs (or resumes) the recipe; returns the figures of the model card."""
    from tagnet import contract
    os.makedirs(r.work_dir, exist_ok=True)
    labels_csv = os.path.join(r.work_dir, "labels.csv")
    n = write_labels(r.data_dir, labels_csv)
    steps = commands(r, labels_csv)
    times = _Times(os.path.join(r.work_dir, "recipe.json"))

    if not os.path.isfile(os.path.join(r.dataset_dir, contract.DATASET_JSON)):
        log(f"[1/4] dataset: {n} crops -> {r.dataset_dir}")
        shutil.rmtree(r.dataset_dir, ignore_errors=True)  # a build cut short
        t0 = time.time()
        _run(steps["dataset"])
        times.add("dataset", time.time() - t0)
    else:
        log(f"[1/4] dataset: {r.dataset_dir} is complete")
    log(f"[2/4] train: {r.backbone} from scratch, {r.max_number_of_steps} steps -> {r.train_dir}")
    t0 = time.time()
    _run(steps["train"])
    times.add("train", time.time() - t0)
    log("[3/4] evaluate on the held-back artworks")
    t0 = time.time()
    report = json.loads(_run(steps["evaluate"], capture=True).strip().splitlines()[-1])
    times.add("evaluate", time.time() - t0)
    log(f"[4/4] ship -> {r.output_dir}")
    figures = summarise(r, report, times.data)
    ship(r, figures, steps)
    return figures


def summarise(r: TaggerRecipe, report: Dict, times: Dict) -> Dict:
    from tagnet import records
    model, base = report["model"], report["color_histogram_knn"]
    info = records.load_dataset_info(r.dataset_dir)
    with open(os.path.join(r.model_dir, "tagnet.json")) as f:
        step = json.load(f).get("step")
    worst = []
    per_tag_csv = os.path.join(r.work_dir, "per_tag.csv")
    if os.path.isfile(per_tag_csv):
        with open(per_tag_csv, newline="") as f:
            rows = [row for row in csv.DictReader(f) if row.get("average_precision")]
        rows.sort(key=lambda row: float(row["average_precision"]))
        worst = [(row["tag"], float(row["average_precision"])) for row in rows[:3]]
    pr = model.get("precision_equals_recall", {}).get("all", {})
    return {
        "train_examples": info.count("train"), "validation_examples": info.count("validation"),
        "tags": info.num_tags, "steps": step,
        "top1": model["top1_accuracy"], "top5": model["top5_accuracy"], "mAP": model["mAP"],
        "baseline_top1": base["top1_accuracy"], "baseline_mAP": base["mAP"],
        "margin_top1": model["top1_accuracy"] - base["top1_accuracy"],
        "p_equals_r": pr, "worst_tags": worst, "seconds": times,
        "size_bytes": sum(os.path.getsize(os.path.join(r.model_dir, f)) for f in SHIPPED_FILES
                          if os.path.isfile(os.path.join(r.model_dir, f))),
    }


def _shown(arg: str) -> str:
    """A command-line argument as the card shows it: paths relative to the checkout, quoted."""
    name, eq, value = arg.partition("=")
    if eq and os.path.isabs(value):
        value = os.path.relpath(value, ROOT)
    return shlex.quote(f"{name}={value}" if eq else arg)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), no GPU, Python {platform.python_version()}"


def ship(r: TaggerRecipe, figures: Dict, steps: Dict[str, List[str]]) -> None:
    """Copies the tagger files into output_dir (through a temporary folder) with its card."""
    tmp = r.output_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name in SHIPPED_FILES:
        src = os.path.join(r.model_dir, name)
        if os.path.isfile(src):
            shutil.copy2(src, tmp)
    with open(os.path.join(tmp, "MODEL_CARD.md"), "w", encoding="utf-8") as f:
        f.write(model_card(r, figures, steps))
    if os.path.isdir(r.output_dir):
        shutil.rmtree(r.output_dir)
    os.replace(tmp, r.output_dir)


def model_card(r: TaggerRecipe, fig: Dict, steps: Dict[str, List[str]]) -> str:
    import tensorflow as tf
    s = fig["seconds"]
    pr = fig["p_equals_r"]
    cmd = "\n".join("python " + " ".join(_shown(a) for a in c) for c in steps.values())
    worst = ", ".join(f"{t} (AP {ap:.2f})" for t, ap in fig["worst_tags"]) or "n/a"
    return f"""# hololive character tagger (example)

Tells which of 20 hololive (English branch) characters an anime face crop shows. A
`{r.backbone}` trained from scratch (no downloaded weights) at {r.image_size} px, single-label
(softmax), tags in the `character` category. Default of `tagnet/predict.py`, `tools/serve.py`
and the demo. {fig['size_bytes'] / 2**20:.1f} MiB.

## Data
- `anime/hololive/` (600 crops) and `anime/hololive_more/` (4,000 crops) of the team's shared
  data: 256 px face crops of Danbooru fan art from the GitHub repository
  `Sytwu/Anime-Face-Recognition` (`face_dataset/<character>/`). **No licence** is stated by the
  repository; the art belongs to its artists. The images are not in this repository.
- Split by artwork (the name before `-N.jpg`), stratified by character: {fig['train_examples']}
  training crops, {fig['validation_examples']} held-back crops of artworks never seen in training.

## Command
`python tools/train_pretrained.py --model=tagger --data_dir=../shared/data`, which runs:

```
{cmd}
```

Steps: {fig['steps']}. Wall time on {_machine()}, TensorFlow {tf.__version__}: dataset
{s.get('dataset', 0) / 60:.1f} min, training {s.get('train', 0) / 60:.1f} min, evaluation
{s.get('evaluate', 0) / 60:.1f} min (resumed runs add up).

## Measured on the held-back artworks ({fig['validation_examples']} crops)
| | top-1 | top-5 | mAP |
|---|---|---|---|
| this tagger | {fig['top1']:.3f} | {fig['top5']:.3f} | {fig['mAP']:.3f} |
| colour-histogram kNN baseline (same split) | {fig['baseline_top1']:.3f} | | {fig['baseline_mAP']:.3f} |

Margin over the baseline: {fig['margin_top1']:+.3f} top-1. Where precision equals recall (the
operating point WD taggers publish): micro F1 {pr['micro']['f1']:.3f} at threshold
{pr['micro']['threshold']:.3f}, macro F1 {pr['macro']['f1']:.3f} at {pr['macro']['threshold']:.3f}.
The saved thresholds (`thresholds.json`) were tuned on these held-back crops.

## Limits
- Knows only these 20 characters, from face crops like the training ones (a face filling most of
  the picture); any other face gets one of the 20 names.
- Hardest characters (lowest AP): {worst}. `fuwawa` and `mococo` are twins with near-identical
  designs.
- Labels are Danbooru tags, not checked by hand.
"""
