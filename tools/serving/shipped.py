"""The shipped models as a model base path (tools/serve.py without --model_base_path).

The packages ship trained models as weights + config (tagnet/pretrained/<name>/), not as
SavedModels, to keep the repository small. Each is exported once into a cache folder named by a
hash of its files, so an unchanged model starts the server in seconds and new weights get a new
export. Served names: `tagger` for the default tagger, `tagger_<name>` for any other.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Callable, Dict


def cache_root() -> str:
    """$XDG_CACHE_HOME/anime-face-kit (default ~/.cache/...), or a temporary folder if that
    cannot be written."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    root = os.path.join(base, "anime-face-kit", "shipped")
    try:
        os.makedirs(root, exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    return os.path.join(tempfile.gettempdir(), "anime-face-kit-shipped")


def _digest(folder: str) -> str:
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            h.update(name.encode())
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def shipped_taggers() -> Dict[str, str]:
    """{served name: tagger folder} of the taggers in this installation."""
    from tagnet import pretrained
    return {("tagger" if name == pretrained.DEFAULT else f"tagger_{name}"): pretrained.path(name)
            for name in pretrained.available()}


def base_path(cache: str = "", log: Callable[[str], None] = print) -> str:
    """A TF Serving model base path holding every shipped model (exported on first use).
    Raises FileNotFoundError when this installation ships none."""
    models = shipped_taggers()
    if not models:
        raise FileNotFoundError("this installation ships no model; pass --model_base_path")
    key = hashlib.sha256("".join(f"{n}:{_digest(p)}" for n, p in sorted(models.items()))
                         .encode()).hexdigest()[:16]
    base = os.path.join(cache or cache_root(), key)
    for name, folder in sorted(models.items()):
        target = os.path.join(base, name)
        if os.path.isfile(os.path.join(target, "1", "saved_model.pb")):
            continue
        from tagnet import exporting
        log(f"exporting the shipped model {name} from {folder} to {target} (once)")
        try:
            exporting.export(folder, target, version=1, log=lambda *_: None)
        except exporting.ExportError:
            if not os.path.isfile(os.path.join(target, "1", "saved_model.pb")):
                raise  # not a concurrent export of the same model finishing first
    return base
