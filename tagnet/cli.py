"""What tagnet's entry points (train.py, evaluate.py, predict.py, export.py, build_dataset.py)
share: the project's start-up (cliboot.run: --help exits 0, deprecated flag names, quiet
TensorFlow) and the user-facing errors. Twin of translate/cli.py (same names, same API).

    cli.run(main, deprecated={"old_flag": "new_flag"})

A known error (bad input, bad dataset, bad flag value) raised by `main` prints `error: message`
and exits with status 1, never a traceback.
"""
from __future__ import annotations

import cliboot


class TagnetError(Exception):
    """A user-facing error raised by tagnet library code."""


def user_errors():
    from tagnet.backbones import BackboneError
    from tagnet.build import BuildError
    from tagnet.model_dir import ModelDirError
    from tagnet.records import DatasetError
    return (TagnetError, BackboneError, BuildError, DatasetError, ModelDirError, FileNotFoundError)


def run(main, deprecated=None) -> None:
    cliboot.run(main, errors=user_errors, deprecated=deprecated)
