"""Finds usable faces in a folder of photos or anime images; writes JSONL and aligned crops.

  python tools/detect_faces.py --input_dir=photos --domain=photo --output=out/faces.jsonl \
      --crops_dir=out/crops --crop_size=256 --num_workers=2

One JSON line per usable face (schema in translate/faces/schema.py), source paths relative to
--input_dir. Unreadable files (also images over --max_image_pixels, e.g. decompression bombs) and
folders are reported and skipped. Lines are appended whole as each image
finishes, so an interrupted run keeps everything done so far; `--resume` carries on from there.
A summary (also written to OUTPUT.summary.json) counts images, faces, rejections by reason and
unreadable files and folders.
"""
import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import collections
import json
import os
import signal
import sys
import time

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("input_dir", None, "Folder of images, searched recursively (JPEG, PNG, WebP, BMP).")
flags.DEFINE_enum("domain", None, ["photo", "anime"], "photo: MTCNN on real photos; anime: animeface.")
flags.DEFINE_string("output", None, "JSONL file to write, one face per line.")
flags.DEFINE_string("crops_dir", None, "If set, write aligned face crops (PNG) here.")
flags.DEFINE_integer("crop_size", 256, "Side of the aligned crops in pixels.", lower_bound=32)
flags.DEFINE_integer("num_workers", 1, "Worker processes (one per core is best).", lower_bound=1)
flags.DEFINE_bool("resume", False, "Continue an interrupted run: skip images already done.")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output instead of refusing.")
flags.DEFINE_bool("estimate_chin", False, "Photos: add a chin point estimated from eyes and mouth "
                  "(MTCNN gives none); it is listed in the face's 'estimated' field.")
flags.DEFINE_float("min_score", None, "Detector score threshold (default: 0.9 photo, 0.5 anime).")
flags.DEFINE_integer("max_image_pixels", 40_000_000, "Largest image read, width x height from its "
                     "header; larger ones (decompression bombs) are skipped as unreadable.",
                     lower_bound=1)
flags.mark_flags_as_required(["input_dir", "domain", "output"])

def _load_progress(progress_path, output):
    """Sources finished by an earlier run; also drops face lines of unfinished images."""
    from translate.faces.schema import drop_partial_last_line

    for path in (progress_path, output):
        drop_partial_last_line(path)
    done = {}
    if os.path.exists(progress_path):
        with open(progress_path, encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                done[rec["source"]] = rec
    if os.path.exists(output):
        with open(output, encoding="utf-8") as f:
            keep = [line for line in f if json.loads(line).get("source") in done]
        tmp = output + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(keep)
        os.replace(tmp, output)
    return done


def _summarise(records, seconds, new_images, unreadable_folders=None):
    rejected = collections.Counter()
    for r in records:
        rejected.update(r.get("rejected", {}))
    errors = {r["source"]: r["error"] for r in records if r.get("error")}
    return {
        "images": len(records),
        "images_with_faces": sum(1 for r in records if r["faces"]),
        "faces": sum(r["faces"] for r in records),
        "rejected": dict(sorted(rejected.items())),
        "unreadable": len(errors),
        "errors": errors,
        "unreadable_folders": len(unreadable_folders or {}),
        "folder_errors": dict(sorted((unreadable_folders or {}).items())),
        "seconds": round(seconds, 2),
        "images_this_run": new_images,
        "images_per_second": round(new_images / seconds, 2) if seconds > 0 else None,
    }


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)

def main(argv):
    from tqdm import tqdm

    from translate.faces import quality
    from translate.faces.schema import append_lines
    from translate.faces.extract import iter_results
    from translate.faces.images import list_images

    if not os.path.isdir(FLAGS.input_dir):
        fail(f"--input_dir {FLAGS.input_dir!r} is not a folder")
    output = os.path.abspath(FLAGS.output)
    progress_path = output + ".progress"
    if os.path.exists(output) and not (FLAGS.resume or FLAGS.overwrite):
        fail(f"{FLAGS.output} exists: pass --resume to continue that run or --overwrite to start over")
    bad_folders = {}
    sources = list_images(FLAGS.input_dir, bad_folders)
    for rel, reason in sorted(bad_folders.items()):
        print(f"skipped folder {rel}: {reason}", file=sys.stderr)
    if not sources:
        fail(f"no images (.jpg .jpeg .png .webp .bmp) found under {FLAGS.input_dir}")
    os.makedirs(os.path.dirname(output), exist_ok=True)
    if FLAGS.overwrite and not FLAGS.resume:
        for path in (output, progress_path):
            if os.path.exists(path):
                os.remove(path)
    done = _load_progress(progress_path, output) if FLAGS.resume else {}
    todo = [s for s in sources if s not in done]
    if FLAGS.resume:
        print(f"resuming: {len(done)} images already done, {len(todo)} to go", file=sys.stderr)

    config = quality.QualityConfig()
    if FLAGS.min_score is not None:
        config = quality.QualityConfig(min_score_photo=FLAGS.min_score, min_score_anime=FLAGS.min_score)
    job = {
        "input_dir": FLAGS.input_dir,
        "crops_dir": FLAGS.crops_dir and os.path.abspath(FLAGS.crops_dir),
        "crops_relative_to": os.path.dirname(output),
        "crop_size": FLAGS.crop_size,
        "config": config,
        "max_pixels": FLAGS.max_image_pixels,
    }
    signal.signal(signal.SIGTERM, _interrupt)
    records = list(done.values())
    start = time.time()
    results = iter_results(todo, FLAGS.domain, job, FLAGS.num_workers, FLAGS.estimate_chin)
    try:
        for result in tqdm(results, total=len(todo), unit="img", desc=f"detect {FLAGS.domain}"):
            record = result.progress_record()
            append_lines(output, [f.to_line() for f in result.faces])
            append_lines(progress_path, [json.dumps(record) + "\n"])
            records.append(record)
            if result.error:
                tqdm.write(f"skipped {result.source}: {result.error}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {len(records)} images saved; re-run with --resume to continue", file=sys.stderr)
        sys.exit(130)
    finally:
        results.close()
    summary = _summarise(records, time.time() - start, len(todo), bad_folders)
    with open(output + ".summary.json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    rej = ", ".join(f"{k} {v}" for k, v in summary["rejected"].items()) or "none"
    print(
        f"{summary['images']} images, {summary['faces']} usable faces in {summary['images_with_faces']} images; "
        f"rejected: {rej}; unreadable: {summary['unreadable']} files, "
        f"{summary['unreadable_folders']} folders; "
        f"{summary['seconds']} s ({summary['images_per_second']} images/s) -> {FLAGS.output}"
    )


def run():
    cliboot.run(main)


if __name__ == "__main__":
    run()
