"""Start-up of every command-line entry point: tools/, translate/, tagnet/ and benchmarks/ scripts.

An entry point imports this module first, before anything that imports TensorFlow:

    import cliboot  # noqa: F401  (first: sys.path, TensorFlow's start-up notices)
    ...
    def run():  # also the console script (setup.cfg) and `python -m package.module`
        cliboot.run(main, errors=..., deprecated={"old_flag": "new_flag"})

    if __name__ == "__main__":
        run()

Importing it does two things, and nothing else:

1. The script form. `python translate/train.py` puts translate/ first on sys.path, where
   translate/translate.py would shadow the `translate` package (and a module of any folder could
   shadow a library of the same name). When the running script sits one folder below a checkout
   (the folder holding this file), that first entry becomes the checkout. `python -m ...` and the
   console scripts are left as they are.
2. TensorFlow's start-up notices. TensorFlow prints, while it is imported, "All log messages
   before absl::InitializeLog() ...", "oneDNN custom operations are on ..." and the CPU feature
   notice through absl's C++ logging, which TF_CPP_MIN_LOG_LEVEL does not reach. The first
   `import tensorflow` therefore runs with file descriptor 2 captured; afterwards the captured
   text is written back without the C++ log records below the level --verbosity asks for
   (absl's scale: 1 debug, 0 info, -1 warning, -2 error; not given: errors only). The same level
   goes to TF_CPP_MIN_LOG_LEVEL for later messages (a value in the environment wins). Numerics
   are untouched: oneDNN stays on.

`run` is absl's app.run plus what every CLI of the project shares: `--help` exits 0; arguments
that are not flags are an error; deprecated
flag names are accepted, rewritten to their new names with a one-line notice on stderr; absl
logging stays at WARNING unless --verbosity is given; the exceptions in `errors` print one line
`error: ...` and exit with status 1; Ctrl-C prints "interrupted" and exits with status 130.

This module imports neither TensorFlow nor the project's packages (translate and tagnet stay
independent of each other).
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from typing import Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Type, Union

ROOT = os.path.dirname(os.path.abspath(__file__))
HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml")
QUIET_LEVEL = 2  # TF_CPP_MIN_LOG_LEVEL without --verbosity: errors only


# --- 1. the script form --------------------------------------------------------------------------
def _script_checkout() -> None:
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if not main_file or not sys.path:
        return
    script_dir = os.path.dirname(os.path.abspath(main_file))
    checkout = os.path.dirname(script_dir)
    if (os.path.abspath(sys.path[0] or ".") == script_dir
            and os.path.isfile(os.path.join(checkout, os.path.basename(__file__)))):
        sys.path[0] = checkout


# --- 2. TensorFlow's start-up notices ------------------------------------------------------------
def verbosity(argv: Sequence[str]) -> Optional[int]:
    """The --verbosity (-v) value on a command line, read before absl parses it; None if absent."""
    value = None
    args = list(argv[1:])
    for i, a in enumerate(args):
        if a == "--":
            break
        name, eq, v = a.partition("=")
        if name in ("--verbosity", "-verbosity", "--v", "-v"):
            v = v if eq else (args[i + 1] if i + 1 < len(args) else "")
            try:
                value = int(v)
            except ValueError:
                pass  # absl reports the bad value
    return value


def cpp_min_log_level(argv: Sequence[str]) -> int:
    """TF_CPP_MIN_LOG_LEVEL (0 info, 1 warning, 2 error, 3 fatal) for this command line."""
    v = verbosity(argv)
    return QUIET_LEVEL if v is None else min(3, max(0, -v))


_RECORD = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ \S+:\d+\] ")  # absl: I0000 00:00:<time> <tid> file:line]
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
_BEFORE_INIT = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CONTINUED = ("To enable the following instructions:",)  # the CPU feature notice's second line


def filter_notices(text: str, min_level: int) -> str:
    """`text` without absl C++ log records below `min_level` (and their known second lines)."""
    kept, hiding = [], False
    for line in text.splitlines(keepends=True):
        m = _RECORD.match(line)
        if m:
            hiding = _SEVERITY[m.group(1)] < min_level
        elif line.rstrip("\n") == _BEFORE_INIT:
            hiding = min_level > 1
        elif not (hiding and line.startswith(_CONTINUED)):
            hiding = False
        if not hiding:
            kept.append(line)
    return "".join(kept)


class _QuietLoader(importlib.abc.Loader):
    """Runs the real loader of `tensorflow` with fd 2 captured, then writes back what counts."""

    def __init__(self, loader, min_level: int):
        self._loader, self._min_level = loader, min_level

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                self._loader.exec_module(module)
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                captured.seek(0)
                rest = filter_notices(captured.read().decode("utf-8", "replace"), self._min_level)
                if rest:
                    sys.stderr.write(rest)
                    sys.stderr.flush()

    def __getattr__(self, name):  # is_package, get_code, resource readers...
        return getattr(self._loader, name)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    def __init__(self, min_level: int):
        self.min_level = min_level

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once; and find_spec below must not come back here
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, self.min_level)
        return spec


def _quiet_tensorflow(argv: Sequence[str]) -> None:
    level = cpp_min_log_level(argv)
    if verbosity(argv) is not None:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = str(level)
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", str(level))
    level = int(os.environ["TF_CPP_MIN_LOG_LEVEL"]) if os.environ["TF_CPP_MIN_LOG_LEVEL"].isdigit() else level
    if level > 0 and "tensorflow" not in sys.modules and not any(
            isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport(level))


# --- deprecated flag names -----------------------------------------------------------------------
def rename_flags(argv: Sequence[str], deprecated: Mapping[str, str], prog: str = "",
                 notice: Callable[[str], None] = None) -> list:
    """argv with every deprecated flag name (old -> new, absl spellings: --old=v, --old v, --old,
    --noold, -old) replaced by its new name; one notice line per old name used."""
    notice = notice or (lambda s: print(s, file=sys.stderr, flush=True))
    out, told = [argv[0]] if argv else [], set()
    for i, a in enumerate(argv[1:]):
        if a == "--":
            out.extend(argv[1 + i:])
            break
        m = re.match(r"^(--?)(no)?([A-Za-z0-9_]+)(=.*)?$", a)
        if m and m.group(3) in deprecated:
            old, new = m.group(3), deprecated[m.group(3)]
            a = f"{m.group(1)}{m.group(2) or ''}{new}{m.group(4) or ''}"
            if old not in told:
                told.add(old)
                notice(f"{prog + ': ' if prog else ''}warning: --{old} is deprecated; use --{new}")
        out.append(a)
    return out


# --- run -----------------------------------------------------------------------------------------
def asked_for_help(argv: Sequence[str]) -> bool:
    return any(a in HELP_FLAGS or a.split("=", 1)[0] in HELP_FLAGS[2:] for a in argv[1:])


Errors = Union[Tuple[Type[BaseException], ...], Callable[[], Iterable[Type[BaseException]]]]


def run(main: Callable, argv: Optional[Sequence[str]] = None, *, errors: Errors = (),
        deprecated: Optional[Dict[str, str]] = None) -> None:
    """absl.app.run(main) with the project's conventions (see the module docstring).

    `errors`: exception classes (or a function returning them, called only when an exception
    arrives, so that TensorFlow-importing modules load late) printed as `error: message`, exit 1.
    `deprecated`: {old flag name: new flag name}.
    """
    from absl import app, flags, logging

    argv = list(sys.argv if argv is None else argv)
    if deprecated:
        argv = rename_flags(argv, deprecated, prog=os.path.basename(argv[0]) if argv else "")

    def wrapped(args):
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)  # no INFO lines from TF's Python side
        if len(args) > 1:  # every input is a flag
            print(f"error: unexpected arguments: {' '.join(args[1:])}", file=sys.stderr, flush=True)
            sys.exit(1)
        try:
            return main(args)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr, flush=True)
            sys.exit(130)
        except Exception as e:  # noqa: BLE001 - filtered on `errors` just below
            known = tuple(errors() if callable(errors) else errors)
            if known and isinstance(e, known):
                print(f"error: {e}", file=sys.stderr, flush=True)
                sys.exit(1)
            raise

    try:
        app.run(wrapped, argv=argv)
    except SystemExit as e:
        if e.code == 1 and asked_for_help(argv):
            sys.exit(0)
        raise


_script_checkout()
_quiet_tensorflow(sys.argv)
