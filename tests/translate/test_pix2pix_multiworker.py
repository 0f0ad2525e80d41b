"""pix2pix under MultiWorkerMirroredStrategy: two local worker processes (TF_CONFIG) train
together, agree on the losses, and only the chief's checkpoints stay in train_dir. ~30 s."""
import json
import os
import socket
import subprocess
import sys

import pytest

tf = pytest.importorskip("tensorflow")

from translate.datasets import builder  # noqa: E402
from translate.faces import synthetic
from tests.helpers import ROOT



def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_train_together(tmp_path):
    synthetic.write_dataset(str(tmp_path / "syn"), 6, size=64, seed=4)
    ds = str(tmp_path / "ds")
    builder.build(builder.BuildConfig(task="pix2pix", inputs=[str(tmp_path / "syn" / "faces.jsonl")],
                                      output_dir=ds, test_fraction=0.0, num_shards=1, progress=False),
                  log=lambda s: None)
    cluster = {"worker": [f"localhost:{_free_port()}", f"localhost:{_free_port()}"]}
    train_dir = tmp_path / "run"
    procs = []
    for i in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        cmd = [sys.executable, "-m", "translate.train", f"--dataset_dir={ds}", f"--train_dir={train_dir}",
               "--image_size=32", "--ngf=8", "--ndf=8", "--batch_size=2", "--max_steps=3",
               "--log_every=3", "--num_examples=1", "--strategy=multi_worker"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      cwd=ROOT, env=env))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
        assert "2 replica(s)" in out, out
    lines = [[ln for ln in out.splitlines() if ln.startswith("step 3/3")] for out in outs]
    assert lines[0] and lines[0][0].split("lr")[0] == lines[1][0].split("lr")[0]  # same losses
    assert tf.train.latest_checkpoint(str(train_dir)).endswith("ckpt-3")
    assert not [f for f in os.listdir(train_dir) if f.startswith("worker_tmp")]
