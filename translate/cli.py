"""What translate's entry points (train.py, evaluate.py, export.py, photo2anime.py) share: the
project's start-up (cliboot.run: --help exits 0, deprecated flag names, quiet TensorFlow) and
one user-facing error type. Twin of tagnet/cli.py (same names, same API).

    cli.run(main, deprecated={"old_flag": "new_flag"})

A `TranslateError` (bad flags, inputs or runs) raised by `main` prints `error: message` and
exits with status 1, never a traceback.
"""
from __future__ import annotations

import cliboot


class TranslateError(Exception):
    """A user-facing error of a translate entry point: one line, exit status 1."""


def user_errors():
    return (TranslateError,)


def run(main, deprecated=None) -> None:
    cliboot.run(main, errors=user_errors, deprecated=deprecated)
