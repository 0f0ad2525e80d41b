"""TensorFlow Serving's REST JSON: predict requests to numpy inputs, outputs to JSON, metadata.

Request (https://www.tensorflow.org/tfx/serving/api_rest):
  {"signature_name": "...", "instances": [...]}   row format: one item per batch element; with
                                                  several inputs each item is {name: value}
  {"signature_name": "...", "inputs": ...}        columnar: the single input's value, or {name: value}
Binary values are {"b64": "..."}. Responses: "predictions" (row) / "outputs" (columnar); the
name is dropped when there is one output. String outputs go out as {"b64": ...} when the output
name ends in "_bytes" (TF Serving's rule) or the bytes are not UTF-8 text (PNG images), so that
the JSON is always valid.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Dict, Tuple

import numpy as np

from tools.serving.repository import ServingError


def bad(message: str) -> ServingError:
    return ServingError(400, message)


def parse_json(body: bytes) -> Dict:
    if not body:
        raise bad("empty request body: expected a JSON object")
    try:
        req = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(f"invalid JSON: {e}") from None
    except RecursionError:
        raise bad("invalid JSON: nested too deeply") from None
    if not isinstance(req, dict):
        raise bad("the request body must be a JSON object")
    return req


def _is_b64(v) -> bool:
    return isinstance(v, dict) and set(v) == {"b64"}


def _b64(v: Dict, where: str) -> bytes:
    s = v["b64"]
    if not isinstance(s, str):
        raise bad(f"{where}: 'b64' must be a string")
    try:
        if "-" in s or "_" in s:  # the URL-safe alphabet some clients send
            return base64.b64decode(s, altchars=b"-_", validate=True)
        try:
            return binascii.a2b_base64(s, strict_mode=True)  # Python >= 3.11: the fast path
        except TypeError:
            return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise bad(f"{where}: 'b64' is not valid base64") from None


def _strings(v, where: str):
    """Nested lists of str / {"b64"} -> the same nesting of bytes."""
    if isinstance(v, list):
        return [_strings(x, where) for x in v]
    if _is_b64(v):
        return _b64(v, where)
    if isinstance(v, str):
        return v.encode("utf-8")
    raise bad(f"{where}: expected a string or {{\"b64\": ...}}, got {type(v).__name__}")


def _shape_of(v) -> Tuple[int, ...]:
    shape = []
    while isinstance(v, list):
        shape.append(len(v))
        if not v:
            break
        v = v[0]
    return tuple(shape)


def to_array(value, spec, name: str) -> np.ndarray:
    """A JSON value -> numpy array of the spec's dtype; shape checked against the spec."""
    import tensorflow as tf
    where = f"input {name!r}"
    if spec.dtype == tf.string:
        data = _strings(value, where)
        shape = _shape_of(data)
        arr = np.empty(shape, dtype=object)
        try:
            arr[...] = data
        except ValueError:
            raise bad(f"{where}: ragged nested lists (every row must have the same length)") from None
    else:
        if _contains_non_number(value):
            raise bad(f"{where}: expected numbers ({spec.dtype.name}), got strings or objects")
        try:
            arr = np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
        except (ValueError, TypeError, OverflowError) as e:
            msg = str(e)
            hint = "ragged nested lists" if "inhomogeneous" in msg or "sequence" in msg else msg
            raise bad(f"{where}: cannot make a {spec.dtype.name} tensor ({hint})") from None
    check_shape(arr.shape, spec, name)
    return arr


def _contains_non_number(v) -> bool:
    if isinstance(v, list):
        return any(_contains_non_number(x) for x in v)
    return not isinstance(v, (int, float, bool)) or v is None


def check_shape(shape: Tuple[int, ...], spec, name: str) -> None:
    want = spec.shape
    if want.rank is None:
        return
    if len(shape) != want.rank:
        raise bad(f"input {name!r}: expected a tensor of rank {want.rank} with shape "
                  f"{_fmt(want)}, got shape {list(shape)}")
    for i, (got, w) in enumerate(zip(shape, want.as_list())):
        if w is not None and got != w:
            raise bad(f"input {name!r}: dimension {i} is {got}, the model expects {w} "
                      f"(shape {_fmt(want)})")
    if want.rank >= 1 and want.as_list()[0] is None and shape[0] == 0:
        raise bad(f"input {name!r}: empty batch (no instances)")


def _fmt(shape) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape.as_list()) + "]"


def check_batch_size(n: int, max_batch: int) -> None:
    if max_batch and n > max_batch:
        raise ServingError(413, f"batch of {n} instances is over the limit of {max_batch} "
                                f"(--max_batch_size); split the request")


def parse_predict(req: Dict, inputs: Dict, max_batch: int = 0) -> Tuple[Dict[str, np.ndarray], bool]:
    """-> ({input name: array}, row_format). `inputs` maps names to TensorSpecs; 413 when a batch
    has more than `max_batch` elements (0: no limit), checked before any array is built."""
    has_rows, has_cols = "instances" in req, "inputs" in req
    if has_rows == has_cols:
        raise bad("the request must have exactly one of 'instances' (row format) or "
                  "'inputs' (columnar format)")
    names = sorted(inputs)
    if has_cols:
        cols = req["inputs"]
        if not names:
            if cols not in ({}, [], None):
                raise bad("this signature takes no inputs; send \"inputs\": {}")
            return {}, False
        if isinstance(cols, dict) and not _is_b64(cols):
            _check_names(set(cols), names)
        elif len(names) == 1:
            cols = {names[0]: cols}
        else:
            raise bad(f"'inputs' must be an object with the named inputs {names}")
        for n in names:
            spec = inputs[n]
            if spec.shape.rank and spec.shape.as_list()[0] is None and isinstance(cols[n], list):
                check_batch_size(len(cols[n]), max_batch)
        arrays = {n: to_array(cols[n], inputs[n], n) for n in names}
        _check_batch(arrays, inputs)
        return arrays, False
    rows = req["instances"]
    if not names:
        raise bad("this signature takes no inputs; use \"inputs\": {} (columnar format)")
    if not isinstance(rows, list):
        raise bad("'instances' must be a list (one item per batch element)")
    if not rows:
        raise bad("'instances' is empty: empty batch")
    check_batch_size(len(rows), max_batch)
    if all(isinstance(r, dict) and not _is_b64(r) for r in rows):
        for i, r in enumerate(rows):
            try:
                _check_names(set(r), names)
            except ServingError as e:
                raise bad(f"instance {i}: {e.message}") from None
        cols = {n: [r[n] for r in rows] for n in names}
    elif len(names) == 1:
        cols = {names[0]: rows}
    else:
        raise bad(f"with several inputs {names}, each instance must be an object "
                  f"{{name: value}}")
    return {n: to_array(cols[n], inputs[n], n) for n in names}, True


def _check_names(given, names) -> None:
    missing, extra = sorted(set(names) - given), sorted(given - set(names))
    if missing or extra:
        raise bad("inputs do not match the signature: "
                  + (f"missing {missing}" if missing else "")
                  + ("; " if missing and extra else "")
                  + (f"unknown {extra}" if extra else "") + f" (expected {names})")


def _check_batch(arrays: Dict[str, np.ndarray], inputs: Dict) -> None:
    sizes = {n: a.shape[0] for n, a in arrays.items()
             if inputs[n].shape.rank and inputs[n].shape.as_list()[0] is None and a.ndim}
    if len(set(sizes.values())) > 1:
        raise bad(f"inputs have different batch sizes {sizes}")


# --- outputs ------------------------------------------------------------------------------------
def _jsonable(arr: np.ndarray, name: str):
    if arr.dtype == object or arr.dtype.kind == "S":
        binary = name.endswith("_bytes")

        def enc(b):
            if isinstance(b, bytes):
                if not binary:
                    try:
                        return b.decode("utf-8")
                    except UnicodeDecodeError:
                        pass
                return {"b64": base64.b64encode(b).decode("ascii")}
            return b
        flat = [enc(b) for b in arr.reshape(-1).tolist()]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(arr.shape).tolist()
    return arr.tolist()


def format_outputs(outputs: Dict[str, np.ndarray], row_format: bool) -> Dict:
    names = sorted(outputs)
    if not row_format:
        if len(names) == 1:
            return {"outputs": _jsonable(outputs[names[0]], names[0])}
        return {"outputs": {n: _jsonable(outputs[n], n) for n in names}}
    sizes = {n: (outputs[n].shape[0] if outputs[n].ndim else None) for n in names}
    if None in sizes.values() or len(set(sizes.values())) > 1:
        raise ServingError(400, f"outputs do not share a batch dimension {sizes}; use the "
                                f"columnar format (\"inputs\") for this signature")
    cols = {n: _jsonable(outputs[n], n) for n in names}
    if len(names) == 1:
        return {"predictions": cols[names[0]]}
    n_rows = sizes[names[0]]
    return {"predictions": [{n: cols[n][i] for n in names} for i in range(n_rows)]}


def dumps(obj) -> bytes:
    """JSON with NaN / Infinity tokens, as TF Serving writes them."""
    return json.dumps(obj, allow_nan=True, separators=(",", ":")).encode("utf-8")


# --- metadata -----------------------------------------------------------------------------------
def signature_metadata(path: str) -> Dict:
    """{"signature_def": {name: SignatureDef as proto JSON}} read from saved_model.pb, the shape of
    TF Serving's GetModelMetadata "signature_def" entry."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    graphs = [mg for mg in sm.meta_graphs if "serve" in mg.meta_info_def.tags] or list(sm.meta_graphs)
    defs = {}
    if graphs:
        for key, sig in graphs[0].signature_def.items():
            defs[key] = json_format.MessageToDict(sig, preserving_proto_field_name=True)
    return {"signature_def": defs}
