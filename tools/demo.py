"""The demo behind `make demo`: make demo data, detect and crop faces, write an HTML page.

  python tools/demo.py --output_dir=demo_out [--data_dir=DIR]

Without --data_dir the data is made here: photos from scikit-image (the astronaut, and faces of
its LFW subset scaled up to 100 px) and synthetic anime faces with exact keypoints. With
--data_dir, DIR/photos and DIR/anime are used (either may be missing). Faces are found with
tools/detect_faces.py, exactly as a user would run it, and demo_out/index.html shows every crop
with its keypoints and colours. On synthetic faces the detected eyes are also scored against the
drawn ones.
"""
import os
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

from translate import cli  # noqa: E402  (absl --help exits 0)

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "demo_out", "Where the demo writes data, faces and index.html.")
flags.DEFINE_string("data_dir", None, "Optional folder with photos/ and/or anime/ to use instead of demo data.")
flags.DEFINE_integer("anime_faces", 24, "Synthetic anime faces to generate.", lower_bound=1)
flags.DEFINE_integer("lfw_faces", 15, "LFW-subset photos to add to the astronaut.", lower_bound=0, upper_bound=100)
flags.DEFINE_integer("num_workers", 2, "Detection worker processes.", lower_bound=1)

TOOLS = os.path.dirname(os.path.abspath(__file__))


def make_demo_photos(folder: str, lfw_faces: int) -> None:
    """scikit-image ships these photos, so the demo needs no download and commits no data."""
    from PIL import Image
    from skimage import data

    os.makedirs(folder, exist_ok=True)
    Image.fromarray(data.astronaut()).save(os.path.join(folder, "astronaut.jpg"), quality=92)
    lfw = data.lfw_subset()[:lfw_faces]  # the first 100 are faces, 25x25 grey
    for i, face in enumerate(lfw):
        im = Image.fromarray((face * 255).astype(np.uint8)).resize((100, 100), Image.BICUBIC)
        im.save(os.path.join(folder, f"lfw_{i:03d}.png"))


def detect(domain: str, input_dir: str, out_dir: str) -> str:
    """Runs the detection CLI; returns the JSONL path."""
    output = os.path.join(out_dir, f"{domain}.jsonl")
    cmd = [
        sys.executable, os.path.join(TOOLS, "detect_faces.py"), f"--input_dir={input_dir}",
        f"--domain={domain}", f"--output={output}", f"--crops_dir={os.path.join(out_dir, domain + '_crops')}",
        f"--num_workers={FLAGS.num_workers}", "--overwrite",
    ]
    if domain == "photo":
        cmd.append("--estimate_chin")
    subprocess.run(cmd, check=True)
    return output


def score_against_truth(faces, truth_jsonl: str) -> str:
    """Detected vs drawn eyes on synthetic faces, as a sentence."""
    from translate.faces import read_faces

    truth = {os.path.relpath(f.source, "images"): f for f in read_faces(truth_jsonl)}
    errors = []
    for face in faces:
        t = truth.get(face.source)
        if t is not None:
            for eye in ("left_eye", "right_eye"):
                errors.append(np.linalg.norm(np.subtract(face.points[eye], t.points[eye])) / t.eye_distance)
    if not errors:
        return "no synthetic face was detected"
    return (f"detected {len(errors) // 2}/{len(truth)} synthetic faces; median eye error "
            f"{np.median(errors):.3f} of the eye distance")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import json

    from translate.faces import read_faces
    from translate.gallery import write_gallery
    from translate.synthetic import write_dataset

    start = time.time()
    out = os.path.abspath(FLAGS.output_dir)
    inputs, truth_jsonl = {}, None
    if FLAGS.data_dir:
        for domain, sub in (("photo", "photos"), ("anime", "anime")):
            if os.path.isdir(os.path.join(FLAGS.data_dir, sub)):
                inputs[domain] = os.path.join(FLAGS.data_dir, sub)
        if not inputs:
            print(f"error: {FLAGS.data_dir} has neither photos/ nor anime/", file=sys.stderr)
            sys.exit(1)
    else:
        print("[1/3] making demo data (scikit-image photos, synthetic anime faces)")
        make_demo_photos(os.path.join(out, "data", "photos"), FLAGS.lfw_faces)
        write_dataset(os.path.join(out, "data", "anime"), FLAGS.anime_faces, size=256, seed=0)
        inputs = {"photo": os.path.join(out, "data", "photos"), "anime": os.path.join(out, "data", "anime", "images")}
        truth_jsonl = os.path.join(out, "data", "anime", "faces.jsonl")

    print("[2/3] detecting, filtering and cropping faces")
    sections, notes = [], []
    for domain, folder in inputs.items():
        jsonl = detect(domain, folder, os.path.join(out, "faces"))
        faces = list(read_faces(jsonl))
        with open(jsonl + ".summary.json") as f:
            s = json.load(f)
        text = (f"{s['images']} images, {s['faces']} usable faces; rejected {s['rejected'] or 'none'}; "
                f"unreadable {s['unreadable']}")
        if domain == "anime" and truth_jsonl:
            text += "; " + score_against_truth(faces, truth_jsonl)
        sections.append((f"{domain.capitalize()} faces ({folder})", os.path.dirname(jsonl), faces, text))
        print(f"  {domain}: {text}")
    if not FLAGS.data_dir:
        notes.append("Photos: scikit-image's astronaut and LFW-subset faces (25 px, shown scaled up). "
                     "Anime: synthetic faces drawn by translate/synthetic.py, with exact keypoints.")

    print("[3/3] writing the HTML page")
    page = os.path.join(out, "index.html")
    write_gallery(page, "anime-face-kit demo: detected and aligned faces", sections, notes)
    print(f"done in {time.time() - start:.0f} s: open {page}")


if __name__ == "__main__":
    cli.run(main)
