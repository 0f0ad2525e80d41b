"""cliboot: the start-up every CLI shares (deprecated flag names, --verbosity, TensorFlow's
start-up notices, the script form), and the deprecated flag names of the translate CLIs."""
import os
import subprocess
import sys

import pytest

import cliboot
from tests.helpers import ROOT


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def test_rename_flags_every_absl_spelling_and_one_notice_per_name():
    told = []
    argv = ["prog", "--max_steps=5", "--max_steps", "6", "-log_every=2", "--nobool_old",
            "--other=1", "--", "--max_steps=7"]
    out = cliboot.rename_flags(argv, {"max_steps": "max_number_of_steps",
                                      "log_every": "log_every_n_steps", "bool_old": "bool_new"},
                               prog="train.py", notice=told.append)
    assert out == ["prog", "--max_number_of_steps=5", "--max_number_of_steps", "6",
                   "-log_every_n_steps=2", "--nobool_new", "--other=1", "--", "--max_steps=7"]
    assert told == ["train.py: warning: --max_steps is deprecated; use --max_number_of_steps",
                    "train.py: warning: --log_every is deprecated; use --log_every_n_steps",
                    "train.py: warning: --bool_old is deprecated; use --bool_new"]
    assert cliboot.rename_flags(["prog", "--max_number_of_steps=5"], {"max_steps": "x"},
                                notice=told.append) == ["prog", "--max_number_of_steps=5"]
    assert len(told) == 3


@pytest.mark.parametrize("argv, verbosity, level", [
    (["p"], None, 2),
    (["p", "--verbosity=0"], 0, 0),
    (["p", "-v", "1"], 1, 0),
    (["p", "--verbosity", "-1"], -1, 1),
    (["p", "--v=-2"], -2, 2),
    (["p", "--", "--verbosity=0"], None, 2),
])
def test_verbosity_sets_the_cpp_log_level(argv, verbosity, level):
    assert cliboot.verbosity(argv) == verbosity
    assert cliboot.cpp_min_log_level(argv) == level


def test_filter_notices_keeps_what_is_not_below_the_level():
    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 00:00:1796680129.278202    4737 port.cc:153] oneDNN custom operations are on.\n"
            "I0000 00:00:1796680129.518303    4737 cpu_feature_guard.cc:227] This binary is optimized\n"
            "To enable the following instructions: AVX2 FMA, in other operations, rebuild.\n"
            "W0000 00:00:1796680129.6    4737 some.cc:1] a warning\n"
            "E0000 00:00:1796680129.7    4737 some.cc:2] an error\n"
            "a line of our own\n")
    assert cliboot.filter_notices(text, 2) == ("E0000 00:00:1796680129.7    4737 some.cc:2] an error\n"
                                               "a line of our own\n")
    kept = cliboot.filter_notices(text, 1).splitlines()
    assert kept[0].startswith("WARNING: All log messages") and "a warning" in kept[1]
    assert not any("oneDNN" in k or "To enable" in k for k in kept)
    assert cliboot.filter_notices(text, 0) == text


def test_train_accepts_the_old_step_and_logging_flags_with_a_notice(tmp_path):
    r = _run("translate/train.py", f"--dataset_dir={tmp_path / 'none'}", f"--train_dir={tmp_path / 'run'}",
             "--max_steps=5", "--log_every=2", "--save_every=3", "--summary_every=4")
    assert r.returncode == 1, r.stderr
    lines = r.stderr.splitlines()
    for old, new in (("max_steps", "max_number_of_steps"), ("log_every", "log_every_n_steps"),
                     ("save_every", "save_interval_steps"), ("summary_every", "save_summaries_steps")):
        assert f"train.py: warning: --{old} is deprecated; use --{new}" in lines, r.stderr
    assert any(line.startswith("error:") and "no such dataset folder" in line for line in lines), r.stderr
    assert "Unknown command line flag" not in r.stderr and "Traceback" not in r.stderr


def test_photo2anime_accepts_model_dir_with_a_notice(tmp_path):
    photo = tmp_path / "p.png"
    photo.write_bytes(b"")
    for script in ("translate/translate.py", "translate/photo2anime.py"):
        r = _run(script, f"--model_dir={tmp_path / 'none'}", f"--input={photo}",
                 f"--output_dir={tmp_path / 'out'}")
        lines = r.stderr.splitlines()
        assert r.returncode == 1, r.stderr
        assert f"{os.path.basename(script)}: warning: --model_dir is deprecated; use --train_dir" in lines
        assert any(line.startswith("error: --train_dir") and "no such folder" in line
                   for line in lines), r.stderr


@pytest.mark.parametrize("module", ["translate.photo2anime", "translate.train", "tools.detect_faces",
                                    "tagnet.predict"])
def test_module_form_runs_the_same_cli(module):
    r = _run("-m", module, "--help", timeout=120)
    assert r.returncode == 0 and "--" in r.stdout, r.stderr
