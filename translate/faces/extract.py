"""One image in, usable faces (and optionally their aligned crops) out.

This is the unit of work of `tools/detect_faces.py`: read the image, detect, filter with
`translate.faces.quality`, align and save crops. It never raises on a bad file: the result says what
happened, so a run over a messy folder always finishes.
"""
from __future__ import annotations

import collections
import dataclasses
import os
from typing import Dict, List, Optional

from PIL import Image

from translate.faces import images as imageio, quality
from translate.faces.align import align_face
from translate.faces.schema import Face


@dataclasses.dataclass
class ImageResult:
    source: str
    faces: List[Face]
    rejected: Dict[str, int]
    error: Optional[str] = None

    def progress_record(self) -> dict:
        """What the resume log keeps of this image."""
        d = {"source": self.source, "faces": len(self.faces), "rejected": self.rejected}
        if self.error:
            d["error"] = self.error
        return d


def crop_name(source: str, index: int) -> str:
    """Crop file for face `index` of `source`: same sub-folders, one PNG per face."""
    stem, _ = os.path.splitext(source)
    return f"{stem}_face{index}.png"


def process_image(
    detector,
    input_dir: str,
    source: str,
    crops_dir: Optional[str] = None,
    crops_relative_to: Optional[str] = None,
    crop_size: int = 256,
    config: quality.QualityConfig = quality.QualityConfig(),
    max_pixels: int = imageio.MAX_PIXELS,
) -> ImageResult:
    """Detects, filters and (with `crops_dir`) aligns the faces of `input_dir/source`.

    Crop paths in the returned faces are relative to `crops_relative_to` (the JSONL's folder).
    Images over `max_pixels` (width x height) are an error result, not decoded.
    """
    try:
        image = imageio.load_rgb(os.path.join(input_dir, source), max_pixels)
    except imageio.ImageReadError as e:
        return ImageResult(source, [], {}, error=str(e))
    try:
        found = detector.detect(image)
    except Exception as e:  # a detector crash on one odd image must not end the run
        return ImageResult(source, [], {}, error=f"detector failed: {type(e).__name__}: {e}")
    rejected = collections.Counter()
    if not found:
        rejected["no_face"] += 1
    kept = []
    for face in found:
        face.source = source
        reason = quality.check(face, config)
        if reason:
            rejected[reason] += 1
            continue
        if crops_dir:
            crop, meta = align_face(image, face, crop_size)
            path = os.path.join(crops_dir, crop_name(source, len(kept)))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            Image.fromarray(crop).save(path)
            meta.path = os.path.relpath(path, crops_relative_to or crops_dir)
            face.crop = meta
        kept.append(face)
    return ImageResult(source, kept, dict(rejected))


_WORKER = {}


def _init_worker(domain: str, threads: int, estimate_chin: bool, job: dict) -> None:
    """Builds the detector once per worker process (detectors are not picklable)."""
    from translate.faces.detect import configure_tf_threads, make_detector

    if domain == "photo":
        configure_tf_threads(threads)
    kwargs = {"estimate_chin": estimate_chin} if domain == "photo" else {}
    _WORKER["detector"] = make_detector(domain, **kwargs)
    _WORKER["job"] = job


def _run_one(source: str) -> ImageResult:
    return process_image(_WORKER["detector"], source=source, **_WORKER["job"])


def iter_results(sources, domain: str, job: dict, num_workers: int = 1, estimate_chin: bool = False):
    """ImageResults for `sources` in order, from `num_workers` processes (1: this process).

    `job` holds process_image's keyword arguments. Each worker gets cores / workers TensorFlow
    threads, so two workers on two cores do not fight over the same cores. Closing the generator
    stops the workers.
    """
    if not sources:
        return
    workers = max(1, min(num_workers, len(sources)))
    threads = max(1, (os.cpu_count() or 1) // workers)
    init_args = (domain, threads, estimate_chin, job)
    if workers == 1:
        _init_worker(*init_args)
        for source in sources:
            yield _run_one(source)
        return
    import multiprocessing

    # spawn, not fork: TensorFlow is not fork-safe, and each worker builds its own detector.
    pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, init_args)
    try:
        yield from pool.imap(_run_one, sources, chunksize=2)
    finally:
        pool.terminate()
