"""Models under a base folder, laid out as TensorFlow Serving expects: BASE/NAME/<version>/.

A version is an integer folder holding saved_model.pb (exporters write a hidden temporary folder
and rename it, so a half-written version is never seen). The newest version is served by default;
a version dropped in later is found on the next request (a stat of the model folder per request, no
restart, no watcher thread). Loaded models are kept in a small LRU cache. A version that fails to
load is remembered (until its saved_model.pb changes) and the newest loadable one is served
instead, as TF Serving keeps serving the previous version.

Model names resolve only to direct sub-folders of BASE: names are a restricted character set,
never '.' or '..', and the resolved real path must still lie inside BASE.
"""
from __future__ import annotations

import collections
import os
import re
import threading
import time
from typing import Dict, List, Optional, Tuple

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
VERSION_RE = re.compile(r"^[0-9]{1,18}$")
SAVED_MODEL = "saved_model.pb"


class ServingError(Exception):
    """An error with an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class LoadedModel:
    """One loaded SavedModel version: its signatures and their input/output specs."""

    def __init__(self, name: str, version: int, path: str):
        import tensorflow as tf
        from tools.serving import tfjson
        self.name, self.version, self.path = name, version, path
        self.obj = tf.saved_model.load(path)
        self.signatures = dict(self.obj.signatures)
        self.inputs: Dict[str, Dict[str, tf.TensorSpec]] = {}
        self.outputs: Dict[str, Dict[str, tf.TensorSpec]] = {}
        for key, fn in self.signatures.items():
            self.inputs[key] = dict(fn.structured_input_signature[1])
            self.outputs[key] = dict(fn.structured_outputs)
        self.metadata = tfjson.signature_metadata(path)


class Repository:
    def __init__(self, base_path: str, max_loaded: int = 8):
        if not os.path.isdir(base_path):
            raise ValueError(f"--model_base_path {base_path!r} is not a folder")
        self.base = os.path.realpath(base_path)
        self.max_loaded = max(1, int(max_loaded))
        self._cache: "collections.OrderedDict[Tuple[str, int], LoadedModel]" = collections.OrderedDict()
        self._failed: Dict[Tuple[str, int], Tuple[float, str]] = {}
        self._lock = threading.Lock()
        self._key_locks: Dict[Tuple[str, int], threading.Lock] = {}
        self._listing: Dict[str, Tuple[int, float, List[int]]] = {}

    # --- discovery --------------------------------------------------------------------------
    def model_names(self) -> List[str]:
        return sorted(d for d in os.listdir(self.base) if NAME_RE.match(d) and self.versions(d))

    def model_dir(self, name: str) -> str:
        """The folder of model NAME, or ServingError 404 (also for names that try to escape)."""
        if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", ".."):
            raise ServingError(404, f"Servable not found for request: Latest({name}): not a valid "
                                    f"model name (letters, digits, '.', '_', '-')")
        path = os.path.realpath(os.path.join(self.base, name))
        if os.path.dirname(path) != self.base or not os.path.isdir(path):
            raise ServingError(404, f"Servable not found for request: Latest({name}): no such "
                                    f"model under the model base path")
        return path

    def versions(self, name: str) -> List[int]:
        """Version folders with a saved_model.pb; re-listed whenever the model folder changes
        (adding or renaming a version folder changes its mtime: one stat per request)."""
        path = os.path.join(self.base, name)
        try:
            stamp = os.stat(path).st_mtime_ns
        except OSError:
            return []
        cached = self._listing.get(name)
        if cached and cached[0] == stamp and time.monotonic() - cached[1] < 5.0:
            return cached[2]
        try:
            entries = os.listdir(path)
        except OSError:
            return []
        found = sorted(int(d) for d in entries if VERSION_RE.match(d)
                       and os.path.isfile(os.path.join(path, d, SAVED_MODEL)))
        self._listing[name] = (stamp, time.monotonic(), found)
        return found

    # --- loading ----------------------------------------------------------------------------
    def _pb_mtime(self, name: str, version: int) -> float:
        try:
            return os.path.getmtime(os.path.join(self.base, name, str(version), SAVED_MODEL))
        except OSError:
            return -1.0

    def failure(self, name: str, version: int) -> Optional[str]:
        rec = self._failed.get((name, version))
        if rec and rec[0] == self._pb_mtime(name, version):
            return rec[1]
        return None

    def loaded(self, name: str, version: int) -> bool:
        return (name, version) in self._cache

    def _load(self, name: str, version: int) -> LoadedModel:
        key = (name, version)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one load per version, other requests for it wait
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            failed = self.failure(name, version)
            if failed:
                raise ServingError(500, failed)
            try:
                model = LoadedModel(name, version, os.path.join(self.base, name, str(version)))
            except Exception as e:  # noqa: BLE001 - any loader failure becomes a status message
                msg = f"model {name} version {version} failed to load: {type(e).__name__}: {e}"
                self._failed[key] = (self._pb_mtime(name, version), msg)
                raise ServingError(500, msg) from None
            with self._lock:
                self._cache[key] = model
                while len(self._cache) > self.max_loaded:
                    self._cache.popitem(last=False)
            return model

    def get(self, name: str, version: Optional[int] = None) -> LoadedModel:
        """The model NAME at `version`, or its newest loadable version. Blocking (loads)."""
        self.model_dir(name)
        available = self.versions(name)
        if version is not None:
            if version not in available:
                raise ServingError(404, f"Servable not found for request: Specific({name}, {version})"
                                        f"; versions on disk: {available or 'none'}")
            return self._load(name, version)
        if not available:
            raise ServingError(404, f"Servable not found for request: Latest({name}): "
                                    f"no version folder with {SAVED_MODEL}")
        errors = []
        for v in reversed(available):
            try:
                return self._load(name, v)
            except ServingError as e:
                errors.append(e.message)
        raise ServingError(500, "; ".join(errors))

    def forget_missing(self, name: str) -> None:
        """Drops cached versions whose folder is gone."""
        on_disk = set(self.versions(name))
        with self._lock:
            for key in [k for k in self._cache if k[0] == name and k[1] not in on_disk]:
                del self._cache[key]
