"""Detection throughput: images/s per domain with 1 and 2 worker processes, in one run.

  python benchmarks/detect.py [--images=120] [--data_dir=../shared/data]

Uses the Udacity photos and hololive crops from --data_dir when present, else the skimage
astronaut (resized copies) and synthetic anime faces. Start-up (TensorFlow import, detector load)
is excluded: the clock runs from the first finished image to the last. The goal: 2 workers give
at least 1.6x the images/s of 1 worker. Ends with one JSON line of all figures.
"""
import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import json
import os
import shutil
import tempfile
import time

import numpy as np
from absl import app, flags

from PIL import Image

FLAGS = flags.FLAGS
flags.DEFINE_integer("images", 120, "Images per domain and setting.", lower_bound=8)
flags.DEFINE_string("data_dir", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"),
                    "Shared data folder; generated images are used when it is absent.")


def _folders(tmp):
    """(photo_dir, anime_dir, description) with at least FLAGS.images images each."""
    photos = os.path.join(FLAGS.data_dir, "photos", "udacity")
    anime = os.path.join(FLAGS.data_dir, "anime", "hololive")
    if os.path.isdir(photos) and os.path.isdir(anime):
        return photos, anime, "shared data (udacity photos, hololive crops)"
    from skimage import data

    from translate.faces.synthetic import write_dataset

    photo_dir = os.path.join(tmp, "photos")
    os.makedirs(photo_dir)
    base = Image.fromarray(data.astronaut())
    for i in range(FLAGS.images):
        base.resize((160 + 4 * i % 200,) * 2).save(os.path.join(photo_dir, f"p{i:04d}.jpg"))
    write_dataset(os.path.join(tmp, "anime"), FLAGS.images, size=256, seed=0)
    return photo_dir, os.path.join(tmp, "anime", "images"), "generated (astronaut copies, synthetic anime)"


def _rate(domain, folder, workers):
    from translate.faces.extract import iter_results
    from translate.faces.images import list_images

    sources = list_images(folder)[: FLAGS.images]
    job = {"input_dir": folder}
    stamps = []
    faces = 0
    for result in iter_results(sources, domain, job, num_workers=workers):
        stamps.append(time.perf_counter())
        faces += len(result.faces)
    # Skip the first `workers` results: they include each worker's start-up.
    timed = stamps[workers - 1:]
    return (len(timed) - 1) / (timed[-1] - timed[0]), faces

def main(argv):
    del argv
    tmp = tempfile.mkdtemp()
    try:
        photo_dir, anime_dir, what = _folders(tmp)
        print(f"data: {what}; {FLAGS.images} images per run; {os.cpu_count()} cores")
        figures = {"images": FLAGS.images, "data": what}
        for domain, folder in (("photo", photo_dir), ("anime", anime_dir)):
            for workers in (1, 2):
                rate, faces = _rate(domain, folder, workers)
                figures[f"{domain}_{workers}w_images_per_s"] = round(rate, 2)
                print(f"{domain:5s} {workers} worker(s): {rate:6.2f} images/s ({faces} usable faces)")
            ratio = figures[f"{domain}_2w_images_per_s"] / figures[f"{domain}_1w_images_per_s"]
            figures[f"{domain}_speedup_2w"] = round(ratio, 2)
            print(f"{domain:5s} speed-up with 2 workers: {ratio:.2f}x (goal >= 1.6x)")
        print(json.dumps(figures))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run():
    cliboot.run(main)


if __name__ == "__main__":
    run()
