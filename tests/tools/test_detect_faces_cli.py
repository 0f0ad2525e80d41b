"""tools/detect_faces.py end to end: output format, bad files, resume, clear errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from translate.faces.schema import read_faces
from translate.faces.synthetic import render_face
from tests.helpers import ROOT

TOOL = os.path.join(ROOT, "tools", "detect_faces.py")


def run(*args, check=True):
    proc = subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def anime_dir(tmp_path_factory):
    """Eight synthetic faces (two in a sub-folder, one as JPEG), a corrupt file and a text file."""
    root = tmp_path_factory.mktemp("anime")
    (root / "sub").mkdir()
    rng = np.random.default_rng(7)
    for i in range(8):
        image, _ = render_face(rng, 192)
        name = f"sub/f{i}.png" if i < 2 else f"f{i}.{'jpg' if i == 2 else 'png'}"
        image.save(root / name)
    (root / "notes.jpg").write_text("not an image at all")
    (root / "broken.png").write_bytes((root / "f3.png").read_bytes()[:200])
    return root


def test_detects_crops_and_reports_bad_files(anime_dir, tmp_path):
    out = tmp_path / "out" / "faces.jsonl"
    proc = run(f"--input_dir={anime_dir}", "--domain=anime", f"--output={out}",
               f"--crops_dir={tmp_path / 'out' / 'crops'}", "--crop_size=128")
    faces = list(read_faces(str(out)))
    summary = json.loads((tmp_path / "out" / "faces.jsonl.summary.json").read_text())
    assert summary["images"] == 10 and summary["unreadable"] == 2
    assert set(summary["errors"]) == {"notes.jpg", "broken.png"}
    assert "notes.jpg" in proc.stderr and "broken.png" in proc.stderr
    assert summary["faces"] == len(faces) >= 5
    assert sum(summary["rejected"].values()) + summary["images_with_faces"] >= 8
    for face in faces:
        assert face.domain == "anime" and not os.path.isabs(face.source)
        assert os.path.exists(os.path.join(anime_dir, face.source))
        crop = Image.open(out.parent / face.crop.path)
        assert crop.size == (128, 128)
        le, re = face.crop.points["left_eye"], face.crop.points["right_eye"]
        assert le[0] < re[0] and abs(le[1] - re[1]) < 1e-3, "eyes level after alignment"
    assert any(f.source.startswith("sub/") for f in faces), "input folder is searched recursively"
    assert "usable faces" in proc.stdout


def test_resume_skips_done_images_and_repairs_a_cut_line(anime_dir, tmp_path):
    out = tmp_path / "faces.jsonl"
    run(f"--input_dir={anime_dir}", "--domain=anime", f"--output={out}")
    full = out.read_text().splitlines()
    progress = (tmp_path / "faces.jsonl.progress").read_text().splitlines()
    # Simulate a run killed mid-way: 4 images done, the last face line cut in half.
    done = [json.loads(line)["source"] for line in progress[:4]]
    kept = [line for line in full if json.loads(line)["source"] in done]
    (tmp_path / "faces.jsonl.progress").write_text("\n".join(progress[:4]) + "\n")
    out.write_text("\n".join(kept) + "\n" + full[-1][: len(full[-1]) // 2])
    proc = run(f"--input_dir={anime_dir}", "--domain=anime", f"--output={out}", "--resume")
    assert "4 images already done, 6 to go" in proc.stderr
    got = out.read_text().splitlines()
    assert sorted(got) == sorted(full), "same faces, none twice, no half line"


def test_refuses_to_overwrite_without_a_flag(anime_dir, tmp_path):
    out = tmp_path / "faces.jsonl"
    out.write_text("")
    proc = run(f"--input_dir={anime_dir}", "--domain=anime", f"--output={out}", check=False)
    assert proc.returncode == 1 and "--resume" in proc.stderr and "Traceback" not in proc.stderr
    run(f"--input_dir={anime_dir}", "--domain=anime", f"--output={out}", "--overwrite")
    assert out.read_text().count("\n") >= 5


@pytest.mark.parametrize("args, message", [
    (["--input_dir=/nonexistent/dir", "--domain=anime"], "not a folder"),
    (["--domain=anime"], "input_dir"),
    (["--input_dir=.", "--domain=cartoon"], "domain"),
])
def test_bad_flags_give_clear_errors(args, message, tmp_path):
    proc = run(*args, f"--output={tmp_path / 'f.jsonl'}", check=False)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr


def test_empty_folder_is_an_error_not_silent_success(tmp_path):
    (tmp_path / "in").mkdir()
    proc = run(f"--input_dir={tmp_path / 'in'}", "--domain=anime", f"--output={tmp_path / 'f.jsonl'}", check=False)
    assert proc.returncode == 1 and "no images" in proc.stderr


def test_bomb_and_unreadable_folder_are_skipped_and_counted(tmp_path):
    """A 30000x30000 PNG header is skipped as unreadable (the run and --resume finish); a folder
    that cannot be listed is counted and reported."""
    from tests.helpers import bomb_png

    root = tmp_path / "in"
    (root / "locked").mkdir(parents=True)
    image, _ = render_face(np.random.default_rng(3), 128)
    image.save(root / "face.png")
    image.save(root / "locked" / "hidden.png")
    bomb_png(root / "bomb.png")
    out = tmp_path / "out" / "faces.jsonl"
    # Tests run as root, which reads any folder: refuse "locked" in the tool's process instead.
    wrapper = ("import os, runpy, sys\n"
               "real = os.scandir\n"
               "def scandir(path='.'):\n"
               "    if os.path.basename(os.fspath(path)) == 'locked':\n"
               "        raise PermissionError(13, 'Permission denied', os.fspath(path))\n"
               "    return real(path)\n"
               "os.scandir = scandir\n"
               "sys.argv = sys.argv[1:]\n"
               "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    args = [f"--input_dir={root}", "--domain=anime", f"--output={out}"]
    proc = subprocess.run([sys.executable, "-c", wrapper, TOOL, *args], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "faces.jsonl.summary.json").read_text())
    assert summary["images"] == 2 and summary["unreadable"] == 1
    assert "too large" in summary["errors"]["bomb.png"]
    assert summary["unreadable_folders"] == 1 and list(summary["folder_errors"]) == ["locked"]
    assert "skipped folder locked" in proc.stderr and "1 folders" in proc.stdout
    assert "Traceback" not in proc.stderr
    proc = run(*args, "--resume", "--max_image_pixels=100")
    assert "2 images already done, 1 to go" in proc.stderr  # locked/ is readable this time
    summary = json.loads((tmp_path / "out" / "faces.jsonl.summary.json").read_text())
    assert summary["errors"]["locked/hidden.png"].startswith("too large: 128x128")
