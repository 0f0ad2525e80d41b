"""The demo behind `make demo`: make demo data, detect and crop faces, train small translators,
serve them over HTTP, and write an HTML page of it all.

  python tools/demo.py --output_dir=demo_out [--data_dir=DIR] [--train_steps=300]

Without --data_dir the data is made here: photos from scikit-image (the astronaut, and faces of
its LFW subset scaled up to 100 px) and synthetic anime faces with exact keypoints. With
--data_dir, DIR/photos and DIR/anime are used (either may be missing). Faces are found with
tools/detect_faces.py, exactly as a user would run it, and demo_out/index.html shows every crop
with its keypoints and colours. On synthetic faces the detected eyes are also scored against the
drawn ones.

Then, with the project's CLIs as a user would run them: a leak-free pix2pix dataset and a short
pix2pix run (64 px, keypoints + colours), the photos translated by translate/translate.py; a
CycleGAN dataset and a short CycleGAN run with the landmark channel; both exported as SavedModels,
served by tools/serve.py on a free loopback port, and the photos sent through its
/v1/pipelines/photo2anime endpoint; the server is stopped at the end. A few hundred steps on
24 faces make blurry faces, not good ones: the demo shows the whole path works end to end.
"""
import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import os
import subprocess
import sys
import time

import numpy as np
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "demo_out", "Where the demo writes data, faces and index.html.")
flags.DEFINE_string("data_dir", None, "Optional folder with photos/ and/or anime/ to use instead of demo data.")
flags.DEFINE_integer("anime_faces", 24, "Synthetic anime faces to generate.", lower_bound=1)
flags.DEFINE_integer("lfw_faces", 15, "LFW-subset photos to add to the astronaut.", lower_bound=0, upper_bound=100)
flags.DEFINE_integer("num_workers", 2, "Detection worker processes.", lower_bound=1)
flags.DEFINE_integer("train_steps", 300, "pix2pix training steps (CycleGAN: a third of them); 0 "
                     "stops after detection.", lower_bound=0)

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)


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


def run_cli(script: str, *args: str, quiet: bool = False) -> None:
    """Runs one of the project's CLIs (path relative to the repo root); fails the demo if it fails."""
    cmd = [sys.executable, os.path.join(ROOT, script), *args]
    out = subprocess.DEVNULL if quiet else None
    subprocess.run(cmd, check=True, stdout=out)


def translated_images(folder: str):
    """(path, caption) of the side-by-side pictures the translate CLI wrote."""
    if not os.path.isdir(folder):
        return []
    return [(os.path.join(folder, n), n.replace("_side.png", "")) for n in sorted(os.listdir(folder))
            if n.endswith("_side.png")]


def train_translators(out: str, photo_jsonl: str, anime_jsonl: str, photos_dir: str, steps: int):
    """pix2pix (and CycleGAN with the landmark channel when there are photo faces): datasets,
    short runs, photo translation. Returns [(name, train_dir, side-by-side folder)]."""
    runs = []
    p2p_ds, p2p_run = os.path.join(out, "datasets", "pix2pix"), os.path.join(out, "runs", "pix2pix")
    run_cli("tools/build_tfrecords.py", "--task=pix2pix", f"--input={anime_jsonl}",
            f"--output_dir={p2p_ds}", "--test_fraction=0.2", "--num_shards=1", "--overwrite",
            "--noprogress", quiet=True)
    run_cli("translate/train.py", "--model=pix2pix", f"--dataset_dir={p2p_ds}", f"--train_dir={p2p_run}",
            "--condition=keypoints_colors", "--image_size=64", "--ngf=32", "--ndf=32",
            f"--max_number_of_steps={steps}", f"--save_interval_steps={steps}",
            f"--save_summaries_steps={max(1, steps // 3)}", f"--log_every_n_steps={max(1, steps // 3)}")
    runs.append(("pix2pix", p2p_run))
    if photo_jsonl:
        cyc_ds, cyc_run = os.path.join(out, "datasets", "cyclegan"), os.path.join(out, "runs", "cyclegan")
        cyc_steps = max(1, steps // 3)
        run_cli("tools/build_tfrecords.py", "--task=cyclegan", f"--input={photo_jsonl}",
                f"--input={anime_jsonl}", f"--output_dir={cyc_ds}", "--test_fraction=0.2",
                "--num_shards=1", "--overwrite", "--noprogress", quiet=True)
        run_cli("translate/train.py", "--model=cyclegan", f"--dataset_dir={cyc_ds}",
                f"--train_dir={cyc_run}", "--landmark_channel", "--image_size=64", "--ngf=16",
                "--ndf=16", "--n_blocks=3", "--pool_size=10", f"--max_number_of_steps={cyc_steps}",
                f"--save_interval_steps={cyc_steps}", f"--save_summaries_steps={cyc_steps}",
                f"--log_every_n_steps={cyc_steps}")
        runs.append(("cyclegan", cyc_run))
    results = []
    for name, run in runs:
        sides = os.path.join(out, "translated", name)
        run_cli("translate/translate.py", f"--train_dir={run}", f"--input={photos_dir}",
                f"--output_dir={sides}", "--side_by_side", "--seed=0", "--max_faces=1")
        results.append((name, run, sides))
    return results


def serve_and_translate(out: str, runs, photos_dir: str):
    """Exports the runs, serves them on loopback and sends every photo through the pipeline
    endpoint. Returns ([(png path, caption)], summary text)."""
    import re
    import urllib.error
    import urllib.request

    models = os.path.join(out, "models")
    for name, run, _ in runs:
        run_cli("translate/export.py", f"--train_dir={run}", f"--export_dir={os.path.join(models, name)}",
                quiet=True)
    server = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tools/serve.py"), f"--model_base_path={models}",
         "--rest_api_port=0", "--host=127.0.0.1", "--log_level=warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    images, ok, no_face = [], 0, 0
    try:
        port, seen = None, []
        deadline = time.time() + 120
        while port is None and time.time() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            seen.append(line)
            m = re.search(r"127\.0\.0\.1:(\d+)", line)
            port = int(m.group(1)) if m else None
        if port is None:
            raise RuntimeError("the server did not start: " + "".join(seen[-5:]))
        dest = os.path.join(out, "served")
        os.makedirs(dest, exist_ok=True)
        for name, _, _ in runs:
            for photo in sorted(os.listdir(photos_dir)):
                with open(os.path.join(photos_dir, photo), "rb") as f:
                    body = f.read()
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/v1/pipelines/photo2anime?model={name}", data=body,
                    headers={"Content-Type": "image/png" if photo.endswith(".png") else "image/jpeg"})
                try:
                    with urllib.request.urlopen(req, timeout=120) as r:
                        png = r.read()
                except urllib.error.HTTPError as e:
                    if e.code == 422:  # no usable face in this photo
                        no_face += 1
                        continue
                    raise RuntimeError(f"{photo}: HTTP {e.code}: {e.read()[:300]!r}") from None
                path = os.path.join(dest, f"{name}_{os.path.splitext(photo)[0]}.png")
                with open(path, "wb") as f:
                    f.write(png)
                images.append((path, f"{name} via HTTP: {photo}"))
                ok += 1
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    return images, (f"tools/serve.py on 127.0.0.1:{port}: {ok} photos translated over HTTP "
                    f"(POST /v1/pipelines/photo2anime), {no_face} answered 422 (no usable face); "
                    "server stopped")


def tag_anime_faces(out: str, crops_dir: str):
    """Tags the anime crops with tagnet/predict.py's default (the shipped example tagger);
    returns ((crop path, caption) pairs, summary line)."""
    import json
    output = os.path.join(out, "tags", "anime_tags.jsonl")
    os.makedirs(os.path.dirname(output), exist_ok=True)
    run_cli("tagnet/predict.py", f"--input={crops_dir}", f"--output={output}", "--progress=false")
    items = []
    with open(output, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row.get("tags"):
                caption = ", ".join(f"{t} {s:.2f}" for t, s in list(row["tags"].items())[:2])
                items.append((os.path.join(crops_dir, row["file"]), caption))
    return items, f"{len(items)} anime faces tagged by the shipped tagger -> {output}"


def score_against_truth(faces, truth_jsonl: str) -> str:
    """Detected vs drawn eyes on synthetic faces, as a sentence."""
    from translate.faces.schema import read_faces

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
    import json

    from translate.faces.schema import read_faces
    from translate.faces.gallery import write_gallery
    from translate.faces.synthetic import write_dataset

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
        print(f"[1/{5 if FLAGS.train_steps else 3}] making demo data (scikit-image photos, synthetic anime faces)")
        make_demo_photos(os.path.join(out, "data", "photos"), FLAGS.lfw_faces)
        write_dataset(os.path.join(out, "data", "anime"), FLAGS.anime_faces, size=256, seed=0)
        inputs = {"photo": os.path.join(out, "data", "photos"), "anime": os.path.join(out, "data", "anime", "images")}
        truth_jsonl = os.path.join(out, "data", "anime", "faces.jsonl")

    steps = 5 if FLAGS.train_steps else 3
    print(f"[2/{steps}] detecting, filtering and cropping faces")
    sections, notes, jsonls = [], [], {}
    for domain, folder in inputs.items():
        jsonl = jsonls[domain] = detect(domain, folder, os.path.join(out, "faces"))
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
                     "Anime: synthetic faces drawn by translate/faces/synthetic.py, with exact keypoints.")

    image_sections = []
    from tagnet import pretrained
    crops = os.path.join(out, "faces", "anime_crops")
    if pretrained.available() and os.path.isdir(crops):
        print("  tagging the anime faces with the shipped example tagger (tagnet/pretrained)")
        tagged, text = tag_anime_faces(out, crops)
        print("  " + text)
        image_sections.append(("Anime faces tagged: tagnet/predict.py with the shipped tagger",
                               text + " (20 hololive characters: synthetic faces get the nearest "
                               "look-alike)", tagged))
    if FLAGS.train_steps and "anime" in jsonls and "photo" in inputs:
        print(f"[3/{steps}] training small translators ({FLAGS.train_steps} pix2pix steps) and "
              "translating the photos")
        runs = train_translators(out, jsonls.get("photo"), jsonls["anime"], inputs["photo"],
                                 FLAGS.train_steps)
        for name, run, sides in runs:
            image_sections.append((f"{name}: photo | landmark layer | output (translate/translate.py)",
                                   f"a {name} run of a few hundred steps at 64 px ({run})",
                                   translated_images(sides)))
        print(f"[4/{steps}] exporting SavedModels and translating through the HTTP server")
        served, text = serve_and_translate(out, runs, inputs["photo"])
        print("  " + text)
        image_sections.append(("Served: POST /v1/pipelines/photo2anime", text, served))
    elif FLAGS.train_steps:
        print("  (no photos or no anime faces: translator training skipped)")

    print(f"[{steps}/{steps}] writing the HTML page")
    page = os.path.join(out, "index.html")
    write_gallery(page, "anime-face-kit demo: faces, translators, serving", sections, notes,
                  image_sections)
    print(f"done in {time.time() - start:.0f} s: open {page}")


def run():
    cliboot.run(main)


if __name__ == "__main__":
    run()
