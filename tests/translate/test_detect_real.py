"""Detection on the real photos and anime crops in ../shared/data (skips when absent)."""
import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import ROOT_PATH as ROOT
from translate.faces import quality
from translate.faces.detect import AnimeFaceDetector, MtcnnDetector
from translate.faces.images import load_rgb
from translate.faces.synthetic import render_negative

pytestmark = pytest.mark.shared_data


def _landmarks68(path):
    with open(path) as f:
        rows = list(csv.reader(f))[1:]
    return {r[0]: np.array([float(v) for v in r[1:]]).reshape(68, 2) for r in rows}


def test_udacity_photos_give_usable_faces_with_accurate_eyes(shared_data):
    folder = shared_data / "photos" / "udacity"
    truth = _landmarks68(folder / "landmarks68.csv")
    detector = MtcnnDetector()
    usable, errors = 0, []
    truth = dict(sorted(truth.items())[::3])  # 100 of 300, for time
    for name, pts in truth.items():
        faces = [f for f in detector.detect(load_rgb(str(folder / name))) if quality.check(f) is None]
        if not faces:
            continue
        usable += 1
        eyes = {"left_eye": pts[36:42].mean(0), "right_eye": pts[42:48].mean(0)}
        iod = np.linalg.norm(eyes["right_eye"] - eyes["left_eye"])
        # The photo's main face: the one whose left eye is nearest the annotated one.
        face = min(faces, key=lambda f: np.linalg.norm(np.subtract(f.points["left_eye"], eyes["left_eye"])))
        errors += [np.linalg.norm(np.subtract(face.points[k], eyes[k])) / iod for k in eyes]
    rate = usable / len(truth)
    print(f"udacity: {usable}/{len(truth)} usable ({rate:.1%}), median eye error {np.median(errors):.3f} IOD")
    assert rate >= 0.95
    assert np.median(errors) <= 0.10


def test_hololive_crops_give_usable_anime_faces(shared_data):
    files = sorted((shared_data / "anime" / "hololive").glob("*.jpg"))[::6]  # 100 of 600, for time
    detector = AnimeFaceDetector()
    usable = sum(
        1 for f in files if any(quality.check(face) is None for face in detector.detect(load_rgb(str(f))))
    )
    rate = usable / len(files)
    print(f"hololive: {usable}/{len(files)} usable ({rate:.1%})")
    assert rate >= 0.65
    rng = np.random.default_rng(11)
    for kind in ("blank", "noise", "gradient", "shapes"):
        for _ in range(5):
            faces = detector.detect(np.asarray(render_negative(rng, 256, kind)))
            assert not [f for f in faces if quality.check(f) is None], kind


def test_cli_skips_corrupt_and_fake_files_among_real_photos(shared_data, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(shared_data / "sample" / "photos", photos)
    (photos / "notes.jpg").write_text("a text file named like a photo")
    first = sorted(photos.glob("*.jpg"))[0]
    (photos / "cut.jpg").write_bytes(first.read_bytes()[:500])
    out = tmp_path / "faces.jsonl"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "detect_faces.py"), f"--input_dir={photos}", "--domain=photo",
         f"--output={out}", f"--crops_dir={tmp_path / 'crops'}", "--num_workers=2"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "faces.jsonl.summary.json").read_text())
    assert set(summary["errors"]) == {"notes.jpg", "cut.jpg"}
    assert summary["images"] == 18 and summary["images_with_faces"] >= 15
    assert len(out.read_text().splitlines()) == summary["faces"]
