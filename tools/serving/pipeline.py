"""POST /v1/pipelines/photo2anime: a photo in, the anime face of its best usable face out (PNG).

Detection (MTCNN), the usability filter, alignment, keypoints and colours come from
translate.inference.pipeline (imported on first use, so the server runs taggers without it); the
translator is any SavedModel under the model base path that follows translate/export.py's
serving contract. The best-scoring usable face is translated; 422 when there is none.
Query options as translate/translate.py's flags: hair / skin / eye colour overrides (#rrggbb),
seed (pix2pix noise condition), anime_proportions=0 (keypoints as measured on the photo).
"""
from __future__ import annotations

import base64
import binascii
import collections
import io
import json
import os
import threading
from typing import Optional, Tuple

import numpy as np

from tools.serving import image_limits
from tools.serving.app import check_image, run_signature
from tools.serving.repository import Repository, ServingError, parse_number

TRANSLATOR_JSON = os.path.join("assets.extra", "translator.json")


def image_bytes(body: bytes, content_type: str) -> bytes:
    """The photo's bytes from a raw JPEG/PNG body or a JSON {"b64": ...} body."""
    if not body:
        raise ServingError(400, "empty request body: send a JPEG/PNG photo or {\"b64\": ...}")
    if "json" in content_type or body[:1] == b"{":
        try:
            req = json.loads(body)
            return base64.b64decode(req["b64"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error, RecursionError):
            raise ServingError(400, "a JSON body must be {\"b64\": \"<base64 JPEG/PNG>\"}") from None
    return body


def decode_photo(data: bytes, max_pixels: int) -> np.ndarray:
    """RGB pixels of a photo whose size (read from its header) is within `max_pixels`; over
    Pillow's own decompression-bomb limit (a --max_image_pixels above it) is a 413 too, with the
    size the header gives."""
    import warnings

    from PIL import Image, ImageOps
    check_image(data, max_pixels, "the photo")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # sized above
            with Image.open(io.BytesIO(data)) as img:
                img = ImageOps.exif_transpose(img)
                return np.asarray(img.convert("RGB"), np.uint8)
    except Image.DecompressionBombError:
        w, h, _ = image_limits.image_pixels(data)
        raise ServingError(413, f"the photo: image of {w}x{h} = {w * h} pixels is over the image "
                                f"reader's limit of {2 * Image.MAX_IMAGE_PIXELS} pixels") from None
    except Exception as e:  # noqa: BLE001 - anything PIL cannot read is a client error
        raise ServingError(400, f"the body is not a readable image ({type(e).__name__})") from None


class Photo2Anime:
    def __init__(self, repository: Repository, max_image_pixels: int = 40_000_000,
                 default_model: Optional[str] = None):
        self.repo = repository
        self.max_image_pixels = int(max_image_pixels)
        self.default_model = default_model
        self._detector = None
        self._detector_lock = threading.Lock()

    def detect(self, rgb: np.ndarray, image_size: int, colors=None):
        from translate.inference import pipeline as photo2anime
        rejected = collections.Counter()
        with self._detector_lock:  # one MTCNN, used by one thread at a time
            if self._detector is None:
                self._detector = photo2anime.default_detector("photo")
            faces = photo2anime.prepare_faces(rgb, image_size, detector=self._detector,
                                              colors=colors, max_faces=1, rejected=rejected)
        return faces, rejected

    @staticmethod
    def parse_options(options: Optional[dict]):
        """Query options -> (colour overrides, seed, anime_proportions); 400 on bad values."""
        from translate.inference import pipeline as photo2anime
        options = options or {}
        try:
            colors = photo2anime.color_overrides(hair=options.get("hair"), skin=options.get("skin"),
                                                 eye=options.get("eye"))
        except ValueError as e:
            raise ServingError(400, f"colour option: {e}") from None
        seed = options.get("seed")
        if seed is not None:
            seed = parse_number(seed, "seed")
        proportions = options.get("anime_proportions", "1").lower()
        if proportions not in ("0", "1", "true", "false"):
            raise ServingError(400, "anime_proportions must be 0 or 1")
        return colors, seed, proportions in ("1", "true")

    @staticmethod
    def image_size(model) -> int:
        try:
            with open(os.path.join(model.path, TRANSLATOR_JSON), encoding="utf-8") as f:
                return int(json.load(f)["image_size"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        for spec in model.inputs.get("predict_raw", {}).values():
            if spec.shape.rank == 4 and spec.shape[1] is not None:
                return int(spec.shape[1])
        raise ServingError(400, f"model {model.name!r} is not a translator (no predict_raw image "
                                f"input and no {TRANSLATOR_JSON})")

    def run(self, body: bytes, content_type: str, model_name: Optional[str],
            version: Optional[int], options: Optional[dict] = None) -> Tuple[bytes, dict]:
        """-> (PNG bytes, response headers: the face box and score in the photo)."""
        from translate.inference import export
        model_name = model_name or self.default_model
        if not model_name:
            raise ServingError(400, "name the translator: /v1/pipelines/photo2anime?model=NAME")
        model = self.repo.get(model_name, version)
        sig = "serving_default"
        if sig not in model.signatures or export.OUTPUT_IMAGE not in model.outputs.get(sig, {}):
            raise ServingError(400, f"model {model_name!r} is not a translator (its serving_default "
                                    f"has no '{export.OUTPUT_IMAGE}' output)")
        size = self.image_size(model)
        colors, seed, anime_proportions = self.parse_options(options)
        rgb = decode_photo(image_bytes(body, content_type), self.max_image_pixels)
        faces, rejected = self.detect(rgb, size, colors)
        if not faces:
            why = ", ".join(f"{k}: {v}" for k, v in sorted(rejected.items())) or "no face"
            raise ServingError(422, f"no usable face in the photo ({why})")
        from translate.inference import pipeline as photo2anime
        try:
            inputs = photo2anime.serving_inputs(faces, sorted(model.inputs[sig]), seed=seed,
                                                anime_proportions=anime_proportions)
        except ValueError as e:
            raise ServingError(400, f"model {model_name!r}: {e}") from None
        out = run_signature(model, sig, inputs)
        box = ",".join(str(int(round(v))) for v in faces[0].box)
        return bytes(out[export.OUTPUT_IMAGE][0]), {"X-Face-Box": box, "X-Face-Score": f"{faces[0].score:.4f}"}
