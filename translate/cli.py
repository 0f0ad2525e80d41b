"""absl entry-point plumbing for translate/ and tools/: `run(main)` is `app.run(main)` except that
`--help` (and --helpshort/--helpfull/-h/-?) exits 0, as users and shells expect; absl exits 1.
"""
from __future__ import annotations

import sys

HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml")


def asked_for_help(argv) -> bool:
    return any(a in HELP_FLAGS or a.split("=", 1)[0] in HELP_FLAGS[2:] for a in argv[1:])


def run(main, argv=None) -> None:
    from absl import app
    argv = sys.argv if argv is None else argv
    try:
        app.run(main, argv=argv)
    except SystemExit as e:
        if e.code == 1 and asked_for_help(argv):
            sys.exit(0)
        raise
