"""Shared plumbing for the entry points (train.py, evaluate.py, predict.py, build_dataset.py).

Only entry points import absl; this module gives them the same error handling: a known error
(bad input, bad dataset, bad flag value) prints one clear line and exits with code 1, never a
traceback.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class TagnetError(Exception):
    """A user-facing error raised by tagnet library code."""


def user_errors():
    from tagnet.backbones import BackboneError
    from tagnet.build import BuildError
    from tagnet.model_dir import ModelDirError
    from tagnet.records import DatasetError
    return (TagnetError, BackboneError, BuildError, DatasetError, ModelDirError, FileNotFoundError)


def run(main):
    """absl.app.run(main) with user errors turned into `error: ...` and exit code 1."""
    from absl import app, logging
    logging.set_verbosity(logging.WARNING)

    def wrapped(argv):
        try:
            return main(argv)
        except user_errors() as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
    run_app(wrapped)


def run_app(main):
    """absl.app.run(main), except that --help exits 0 (absl exits 1; users and shells expect 0)."""
    from absl import app
    try:
        app.run(main)
    except SystemExit as e:
        if e.code == 1 and any(a.split("=", 1)[0] in ("-h", "-?", "--help", "--helpshort", "--helpfull")
                               for a in sys.argv[1:]):
            sys.exit(0)
        raise
