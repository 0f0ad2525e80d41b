"""Models under a base folder, laid out as TensorFlow Serving expects: BASE/NAME/<version>/.

A version is an integer folder holding saved_model.pb (exporters write a hidden temporary folder
and rename it; a copy made by other means may be seen half-written). The newest version is served
by default; a version dropped in later is found on the next request (a stat of the model folder per
request, no restart, no watcher thread). Loaded models are kept in a small LRU cache.

A version that fails to load is retried when any file in its folder changes (size or mtime) or
after a backoff (RETRY_FIRST_S, doubling up to RETRY_MAX_S); meanwhile the newest loadable older
version is served, and when none on disk loads, the version last served stays in service from
memory (as TF Serving's availability-preserving policy keeps a version until its successor loads).

Model names resolve only to direct sub-folders of BASE: names are a restricted character set,
never '.' or '..', and the resolved real path must still lie inside BASE; version folders that are
symlinks leading outside BASE are not versions. The folder must still be trusted like code: a
SavedModel runs whatever TensorFlow ops it holds (file reads and writes included).
Error messages name the model and version, never a path on the server.
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
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 60.0
STAMP_MAX_FILES = 4096
DECODE_OPS = frozenset({"DecodeImage", "DecodeJpeg", "DecodeAndCropJpeg", "DecodePng", "DecodeGif",
                        "DecodeBmp", "DecodeWebP", "DecodeJxl"})


class ServingError(Exception):
    """An error with an HTTP status, a message for the client and optional response headers."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def parse_number(text: str, what: str) -> int:
    """A non-negative integer of at most 18 ASCII digits (str.isdigit accepts '²'), else 400."""
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]{1,18}", text):
        shown = text if isinstance(text, str) and len(text) <= 40 else f"{str(text)[:40]}..."
        raise ServingError(400, f"{what} {shown!r} is not an integer (0 or more, at most 18 ASCII digits)")
    return int(text)


_ABS_PATH_RE = re.compile(r"(?<![\w.:/])/(?:[^\s'\"/:]+/)+[^\s'\",;:]*")


def scrub_paths(message: str, base: Optional[str] = None) -> str:
    """`message` with paths under `base` made relative to it and any other absolute path hidden."""
    if base:
        for b in {base, os.path.realpath(base)}:
            message = message.replace(b.rstrip(os.sep) + os.sep, "")
    return _ABS_PATH_RE.sub("<path>", message)


def decodes_images(fn) -> bool:
    """True when a signature's graph (with the functions it calls) has an image-decoding op."""
    graph_def = fn.graph.as_graph_def()
    ops = {n.op for n in graph_def.node}
    for f in graph_def.library.function:
        ops.update(n.op for n in f.node_def)
    return bool(ops & DECODE_OPS)


def folder_stamp(path: str) -> Tuple:
    """(relative path, size, mtime) of every file under `path`: changes when any file does."""
    out = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            try:
                st = os.stat(p)
            except OSError:
                continue
            out.append((os.path.relpath(p, path), st.st_size, st.st_mtime_ns))
            if len(out) >= STAMP_MAX_FILES:
                return tuple(out)
    return tuple(out)


class Failure:
    """A failed load of one version: its message, the folder's stamp then, when to retry."""

    def __init__(self, message: str, stamp: Tuple, attempts: int):
        self.message, self.stamp, self.attempts = message, stamp, attempts
        self.retry_at = time.monotonic() + min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (attempts - 1))


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
        # string inputs of signatures that decode images: their elements are size-checked
        self.image_inputs: Dict[str, List[str]] = {}
        for key, fn in self.signatures.items():
            self.inputs[key] = dict(fn.structured_input_signature[1])
            self.outputs[key] = dict(fn.structured_outputs)
            strings = [n for n, spec in self.inputs[key].items() if spec.dtype == tf.string]
            self.image_inputs[key] = strings if strings and decodes_images(fn) else []
        self.metadata = tfjson.signature_metadata(path)


class Repository:
    def __init__(self, base_path: str, max_loaded: int = 8):
        if not os.path.isdir(base_path):
            raise ValueError(f"--model_base_path {base_path!r} is not a folder")
        self.base = os.path.realpath(base_path)
        self.max_loaded = max(1, int(max_loaded))
        self._cache: "collections.OrderedDict[Tuple[str, int], LoadedModel]" = collections.OrderedDict()
        self._failed: Dict[Tuple[str, int], Failure] = {}
        self._last_good: Dict[str, LoadedModel] = {}
        self._lock = threading.Lock()
        self._key_locks: Dict[Tuple[str, int], threading.Lock] = {}
        self._listing: Dict[str, Tuple[int, float, List[int]]] = {}

    # --- discovery --------------------------------------------------------------------------
    def model_names(self) -> List[str]:
        return sorted(d for d in os.listdir(self.base) if self._inside_base(d) and self.versions(d))

    def _inside_base(self, name: str) -> bool:
        try:
            self.model_dir(name)
            return True
        except ServingError:
            return False

    def _version_inside_base(self, path: str) -> bool:
        real = os.path.realpath(path)
        return os.path.commonpath([real, self.base]) == self.base and real != self.base

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
                       and self._version_inside_base(os.path.join(path, d))
                       and os.path.isfile(os.path.join(path, d, SAVED_MODEL)))
        self._listing[name] = (stamp, time.monotonic(), found)
        return found

    # --- loading ----------------------------------------------------------------------------
    def _version_path(self, name: str, version: int) -> str:
        return os.path.join(self.base, name, str(version))

    def failure(self, name: str, version: int) -> Optional[str]:
        """The message of this version's last failed load (None when it loaded or was not tried)."""
        rec = self._failed.get((name, version))
        return rec.message if rec else None

    def _retry_due(self, key: Tuple[str, int]) -> bool:
        rec = self._failed.get(key)
        if rec is None:
            return True
        return time.monotonic() >= rec.retry_at or folder_stamp(self._version_path(*key)) != rec.stamp

    def loaded(self, name: str, version: int) -> bool:
        return (name, version) in self._cache

    def _load(self, name: str, version: int) -> LoadedModel:
        key = (name, version)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        # A version that failed before is retried by one request at a time; the others do not
        # wait for it (they fall back to an older version).
        if not key_lock.acquire(blocking=key not in self._failed):
            raise ServingError(500, self._failed[key].message)
        try:
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            if not self._retry_due(key):
                raise ServingError(500, self._failed[key].message)
            path = self._version_path(name, version)
            stamp = folder_stamp(path)
            try:
                model = LoadedModel(name, version, path)
            except Exception as e:  # noqa: BLE001 - any loader failure becomes a status message
                detail = scrub_paths(f"{type(e).__name__}: {e}", self.base)
                if len(detail) > 500:
                    detail = detail[:500] + "..."
                rec = self._failed.get(key)
                msg = f"model {name} version {version} failed to load: {detail}"
                self._failed[key] = Failure(msg, stamp, rec.attempts + 1 if rec else 1)
                raise ServingError(500, msg) from None
            with self._lock:
                self._failed.pop(key, None)
                self._cache[key] = model
                while len(self._cache) > self.max_loaded:
                    self._cache.popitem(last=False)
            return model
        finally:
            key_lock.release()

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
                model = self._load(name, v)
                self._last_good[name] = model
                return model
            except ServingError as e:
                errors.append(e.message)
        last = self._last_good.get(name)
        if last is not None:  # every version on disk is broken: keep the one served last
            return last
        raise ServingError(500, "; ".join(errors))

    def served_version(self, name: str) -> Optional[int]:
        """The version `get(name)` returned last (it may be gone from disk and served from memory)."""
        last = self._last_good.get(name)
        return last.version if last else None

    def forget_missing(self, name: str) -> None:
        """Drops cached versions whose folder is gone."""
        on_disk = set(self.versions(name))
        with self._lock:
            for key in [k for k in self._cache if k[0] == name and k[1] not in on_disk]:
                del self._cache[key]
