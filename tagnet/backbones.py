"""Backbone registry keyed by TF-Slim model names.

Each entry says which ``keras.applications`` constructor builds the network, its default and
minimum input size, how its inputs are preprocessed, and which named layer starts its last block
(a reliable boundary for partial fine-tuning: auto-generated layer names in InceptionV3, NASNet,
... make TF-Slim style name-prefix scopes unreliable).

Models built here always take float32 RGB images in [0, 255]; the preprocessing is a serialisable
layer inside the model, so a saved model needs no separate preprocessing code.

Adding a backbone is one ``_register(...)`` call.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from typing import Callable, Dict, List, Optional, Tuple

import keras
import numpy as np

# Preprocessing modes (as in keras.applications.imagenet_utils):
#   caffe: RGB -> BGR, subtract the ImageNet mean, no scaling (VGG, ResNet V1)
#   tf:    scale to [-1, 1] (Inception, ResNet V2, MobileNet V1/V2, NASNet, Xception)
#   torch: scale to [0, 1], normalise by ImageNet mean / std (DenseNet)
#   raw:   the Keras model preprocesses itself and wants [0, 255] (EfficientNet, ConvNeXt, MobileNetV3)
PREPROCESSING_MODES = ("caffe", "tf", "torch", "raw")


class BackboneError(ValueError):
    """A backbone name, weights value or layer boundary that cannot be used (message is for users)."""


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    name: str                      # TF-Slim name, e.g. "resnet_v1_50"
    constructor: str               # attribute of keras.applications, e.g. "ResNet50"
    default_size: int              # the size its ImageNet weights were trained at
    min_size: int                  # the smallest input keras.applications accepts
    preprocessing: str             # one of PREPROCESSING_MODES
    last_block: str                # first layer of the last block (for --trainable_from=last_block)
    kwargs: Tuple[Tuple[str, object], ...] = ()   # extra constructor arguments (alpha=1.4, ...)
    heavy: bool = False            # large enough that tests mark it slow

    def constructor_fn(self) -> Callable[..., keras.Model]:
        return getattr(keras.applications, self.constructor)


REGISTRY: Dict[str, BackboneSpec] = {}

# TF-Slim names with no keras.applications counterpart, and what to use instead.
UNAVAILABLE: Dict[str, Tuple[str, ...]] = {
    "inception_v1": ("inception_v3", "mobilenet_v2"),
    "inception_v2": ("inception_v3", "inception_resnet_v2"),
    "inception_v4": ("inception_resnet_v2", "inception_v3"),
    "pnasnet_large": ("nasnet_large", "efficientnet_b4"),
    "pnasnet_mobile": ("nasnet_mobile", "mobilenet_v2"),
    "cifarnet": ("mobilenet_v2", "resnet_v1_50"),
    "lenet": ("mobilenet_v2", "resnet_v1_50"),
    "overfeat": ("vgg_16", "resnet_v1_50"),
    "alexnet_v2": ("vgg_16", "resnet_v1_50"),
    "resnet_v1_200": ("resnet_v1_152",),
    "resnet_v2_200": ("resnet_v2_152",),
    "i3d": ("inception_v3",),
    "s3dg": ("inception_v3",),
}


def _register(name, constructor, default_size, preprocessing, last_block, min_size=32,
              heavy=False, **kwargs):
    assert preprocessing in PREPROCESSING_MODES, preprocessing
    REGISTRY[name] = BackboneSpec(name, constructor, default_size, min_size, preprocessing,
                                  last_block, tuple(sorted(kwargs.items())), heavy)


# --- the TF-Slim table -------------------------------------------------------------------------
_register("vgg_16", "VGG16", 224, "caffe", "block5_conv1")
_register("vgg_19", "VGG19", 224, "caffe", "block5_conv1")
_register("inception_v3", "InceptionV3", 299, "tf", "mixed9", min_size=75)
_register("inception_resnet_v2", "InceptionResNetV2", 299, "tf", "mixed_7a", min_size=75,
          heavy=True)
_register("resnet_v1_50", "ResNet50", 224, "caffe", "conv5_block1_1_conv")
_register("resnet_v1_101", "ResNet101", 224, "caffe", "conv5_block1_1_conv")
_register("resnet_v1_152", "ResNet152", 224, "caffe", "conv5_block1_1_conv", heavy=True)
_register("resnet_v2_50", "ResNet50V2", 224, "tf", "conv5_block1_preact_bn")
_register("resnet_v2_101", "ResNet101V2", 224, "tf", "conv5_block1_preact_bn")
_register("resnet_v2_152", "ResNet152V2", 224, "tf", "conv5_block1_preact_bn", heavy=True)
_register("mobilenet_v1", "MobileNet", 224, "tf", "conv_dw_13")
_register("mobilenet_v1_075", "MobileNet", 224, "tf", "conv_dw_13", alpha=0.75)
_register("mobilenet_v1_050", "MobileNet", 224, "tf", "conv_dw_13", alpha=0.5)
_register("mobilenet_v1_025", "MobileNet", 224, "tf", "conv_dw_13", alpha=0.25)
_register("mobilenet_v2", "MobileNetV2", 224, "tf", "block_16_expand")
_register("mobilenet_v2_140", "MobileNetV2", 224, "tf", "block_16_expand", alpha=1.4)
_register("mobilenet_v2_035", "MobileNetV2", 224, "tf", "block_16_expand", alpha=0.35)
_register("mobilenet_v3_large", "MobileNetV3Large", 224, "raw", "expanded_conv_14_expand")
_register("mobilenet_v3_small", "MobileNetV3Small", 224, "raw", "expanded_conv_10_expand")
_register("nasnet_mobile", "NASNetMobile", 224, "tf", "reduction_concat_reduce_8")
_register("nasnet_large", "NASNetLarge", 331, "tf", "reduction_concat_reduce_12", heavy=True)
# --- beyond the TF-Slim table ------------------------------------------------------------------
for _i, _size in enumerate((224, 240, 260, 300, 380, 456, 528, 600)):
    _register(f"efficientnet_b{_i}", f"EfficientNetB{_i}", _size, "raw", "block7a_expand_conv",
              heavy=_i >= 4)
for _suffix, _size, _last in (("b0", 224, "block6a_expand_conv"), ("b1", 240, "block6a_expand_conv"),
                              ("b2", 260, "block6a_expand_conv"), ("b3", 300, "block6a_expand_conv"),
                              ("s", 384, "block6a_expand_conv"), ("m", 480, "block7a_expand_conv"),
                              ("l", 480, "block7a_expand_conv")):
    _register(f"efficientnet_v2_{_suffix}", f"EfficientNetV2{_suffix.upper()}", _size, "raw", _last,
              heavy=_suffix in ("s", "m", "l"))
for _size_name in ("tiny", "small", "base", "large", "xlarge"):
    _register(f"convnext_{_size_name}", "ConvNeXt" + {"xlarge": "XLarge"}.get(_size_name, _size_name.capitalize()), 224, "raw",
              f"convnext_{_size_name}_downsampling_block_2",
              heavy=_size_name in ("base", "large", "xlarge"))
_register("xception", "Xception", 299, "tf", "block14_sepconv1", min_size=71)

# Convenience aliases (TF-Slim spelling variants).
ALIASES = {
    "mobilenet_v2_100": "mobilenet_v2",
    "mobilenet_v2_1.4": "mobilenet_v2_140",
    "mobilenet_v1_100": "mobilenet_v1",
    "mobilenet_v3": "mobilenet_v3_large",
    "resnet_50": "resnet_v1_50",
}


def names() -> List[str]:
    return sorted(REGISTRY)


def get(name: str) -> BackboneSpec:
    """Returns the registry entry, or raises BackboneError naming the nearest entries."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in REGISTRY:
        return REGISTRY[key]
    if key in UNAVAILABLE:
        raise BackboneError(
            f"backbone {name!r} is a TF-Slim network with no keras.applications counterpart; "
            f"the nearest available: {', '.join(UNAVAILABLE[key])}")
    close = difflib.get_close_matches(key, list(REGISTRY) + list(ALIASES), n=4, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise BackboneError(f"unknown backbone {name!r}.{hint} Available: {', '.join(names())}")


# --- preprocessing ------------------------------------------------------------------------------
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="tagnet")
class Preprocess(keras.layers.Layer):
    """Maps RGB images in [0, 255] to what a backbone expects (pure tensor ops, serialisable)."""

    def __init__(self, mode: str = "tf", **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, x):
        x = keras.ops.cast(x, self.compute_dtype)
        if self.mode == "caffe":
            x = x[..., ::-1]
            return x - keras.ops.cast(keras.ops.convert_to_tensor(_CAFFE_MEAN_BGR), x.dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = keras.ops.cast(keras.ops.convert_to_tensor(_TORCH_MEAN), x.dtype)
            std = keras.ops.cast(keras.ops.convert_to_tensor(_TORCH_STD), x.dtype)
            return (x / 255.0 - mean) / std
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def preprocess_numpy(images: np.ndarray, mode: str) -> np.ndarray:
    """The same mapping in numpy (for checks and non-Keras consumers)."""
    x = images.astype(np.float32)
    if mode == "caffe":
        return x[..., ::-1] - np.asarray(_CAFFE_MEAN_BGR, np.float32)
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - np.asarray(_TORCH_MEAN, np.float32)) / np.asarray(_TORCH_STD, np.float32)
    return x


# --- building -----------------------------------------------------------------------------------
def resolve_weights(weights: Optional[str]) -> Optional[str]:
    """'imagenet' | 'none' | PATH -> value checked for use by build_backbone."""
    if weights is None:
        return None
    w = str(weights).strip()
    if w.lower() in ("none", "", "random"):
        return None
    if w.lower() == "imagenet":
        return "imagenet"
    if not os.path.isfile(w):
        raise BackboneError(f"--weights={w!r}: expected 'imagenet', 'none' or an existing weights "
                            f"file (a keras.applications '*_notop.h5'); no such file")
    return w


def build_backbone(spec: BackboneSpec, image_size: int, weights: Optional[str] = None) -> keras.Model:
    """The headless keras.applications model (include_top=False), named 'backbone'."""
    if image_size < spec.min_size:
        raise BackboneError(f"{spec.name} needs an input of at least {spec.min_size}px "
                            f"(got {image_size}); its default is {spec.default_size}px")
    weights = resolve_weights(weights)
    kwargs = dict(spec.kwargs)
    if spec.constructor.startswith(("MobileNetV3", "EfficientNetV2", "ConvNeXt")):
        kwargs["include_preprocessing"] = True
    fn = spec.constructor_fn()
    keras_weights = "imagenet" if weights == "imagenet" else None
    try:
        model = fn(include_top=False, weights=keras_weights,
                   input_shape=(image_size, image_size, 3), **kwargs)
    except ValueError as e:
        raise BackboneError(f"cannot build {spec.name} at {image_size}px with weights="
                            f"{weights or 'none'}: {e}") from None
    except Exception as e:  # download failures and the like
        if keras_weights == "imagenet":
            raise BackboneError(
                f"could not get ImageNet weights for {spec.name} ({type(e).__name__}: {e}). "
                f"Without a network, download the '*_notop.h5' file elsewhere and pass "
                f"--weights=PATH, or train from scratch with --weights=none") from None
        raise
    if weights not in (None, "imagenet"):
        try:
            model.load_weights(weights)
        except Exception as e:
            raise BackboneError(f"--weights={weights}: could not load into {spec.name} "
                                f"({type(e).__name__}: {e}); it must be the headless "
                                f"('notop') weights file of the same architecture") from None
    if any(isinstance(l, keras.layers.Conv2D) and l.groups > 1 for l in model.layers):
        model = depthwise_for_grouped(model)
    # A stable name so checkpoints and the head can find it whatever keras calls the model.
    model.name = "backbone"
    return model


def depthwise_for_grouped(model: keras.Model) -> keras.Model:
    """Rebuilds a model with every depthwise-as-grouped Conv2D (groups == filters == channels,
    as in ConvNeXt) replaced by DepthwiseConv2D, weights carried over.

    TensorFlow has no CPU kernel for grouped convolutions, so Keras compiles each one with XLA on
    every eager call (ConvNeXt-Tiny: ~10 s per eager train step instead of ~2.5 s, and a long XLA
    compile in graph mode). The result computes the same function (checked in the tests).
    """
    def clone(layer):
        if isinstance(layer, keras.layers.Conv2D) and layer.groups > 1:
            c = layer.get_config()
            if layer.groups == layer.filters and c.get("dilation_rate", (1, 1)) in ((1, 1), [1, 1], 1):
                return keras.layers.DepthwiseConv2D(
                    kernel_size=c["kernel_size"], strides=c["strides"], padding=c["padding"],
                    use_bias=c["use_bias"], name=c["name"], dtype=c.get("dtype"),
                    data_format=c.get("data_format"))
        return layer.__class__.from_config(layer.get_config())

    new = keras.models.clone_model(model, clone_function=clone)
    for old_layer, new_layer in zip(model.layers, new.layers):
        w = old_layer.get_weights()
        if isinstance(new_layer, keras.layers.DepthwiseConv2D) and not isinstance(
                old_layer, keras.layers.DepthwiseConv2D):
            w = [w[0].transpose(0, 1, 3, 2)] + w[1:]
        new_layer.set_weights(w)
    return new


def build_model(backbone: str, num_outputs: int, image_size: Optional[int] = None,
                weights: Optional[str] = None, dropout: float = 0.0) -> keras.Model:
    """Images in [0, 255] -> preprocessing -> backbone -> global average pool -> logits.

    The head's Dense layer is named 'tags' and computes in float32 (safe under mixed precision).
    """
    spec = get(backbone)
    image_size = int(image_size or spec.default_size)
    net = build_backbone(spec, image_size, weights)
    inputs = keras.Input((image_size, image_size, 3), name="image", dtype="float32")
    x = Preprocess(spec.preprocessing, name="preprocess")(inputs)
    x = net(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = keras.layers.Dense(num_outputs, name="tags", dtype="float32")(x)
    return keras.Model(inputs, logits, name=f"tagnet_{spec.name}")


def backbone_of(model: keras.Model) -> keras.Model:
    return model.get_layer("backbone")


def head_layers(model: keras.Model) -> List[keras.layers.Layer]:
    return [l for l in model.layers if l.name != "backbone" and l.weights]


def set_trainable(model: keras.Model, backbone: str, freeze_backbone: bool = False,
                  trainable_from: Optional[str] = None) -> int:
    """TF-Slim's --trainable_scopes, done by layer order instead of name prefixes.

    freeze_backbone: only the head trains. trainable_from=LAYER: backbone layers from LAYER on (in
    topological order) train, earlier ones are frozen; 'last_block' means the entry's boundary.
    Frozen BatchNormalization layers run in inference mode (Keras 3 semantics).
    Returns the number of trainable backbone layers that hold weights.
    """
    spec = get(backbone)
    net = backbone_of(model)
    net.trainable = True
    for layer in net.layers:
        layer.trainable = True
    if freeze_backbone and trainable_from:
        raise BackboneError("use either --freeze_backbone or --trainable_from, not both")
    if freeze_backbone:
        net.trainable = False
        return 0
    if trainable_from:
        name = spec.last_block if trainable_from == "last_block" else trainable_from
        layer_names = [l.name for l in net.layers]
        if name not in layer_names:
            close = difflib.get_close_matches(name, layer_names, n=5, cutoff=0.6)
            raise BackboneError(
                f"--trainable_from={trainable_from}: {spec.name} has no layer {name!r}"
                + (f"; close: {', '.join(close)}" if close else "")
                + f"; 'last_block' means {spec.last_block!r}")
        start = layer_names.index(name)
        for layer in net.layers[:start]:
            layer.trainable = False
    return sum(1 for l in net.layers if l.trainable and l.weights)


def set_batch_norm_decay(model: keras.Model, decay: Optional[float]) -> int:
    """Sets the moving-average momentum of every BatchNormalization layer (TF-Slim's
    batch_norm_decay). keras.applications use 0.99 (MobileNetV2: 0.999), which leaves the
    inference statistics far behind the weights in short from-scratch runs. Returns the count."""
    if decay is None:
        return 0
    n = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(decay)
            n += 1
    return n


def count_params(model: keras.Model) -> Tuple[int, int]:
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    total = int(sum(np.prod(v.shape) for v in model.weights))
    return total, trainable


def activation_bytes(model: keras.Model, batch_size: int, bytes_per_value: int = 4) -> int:
    """Rough training memory for activations: every layer output kept for backprop, x2 for their
    gradients. Real use varies with the backend's fusion; this is for an order of magnitude."""
    total = 0

    def visit(m):
        nonlocal total
        for layer in m.layers:
            if isinstance(layer, keras.Model):
                visit(layer)
                continue
            try:
                outputs = layer.output
            except (AttributeError, ValueError):
                continue
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            for t in outputs:
                shape = getattr(t, "shape", None)
                if shape is None:
                    continue
                n = 1
                for d in shape[1:]:
                    n *= int(d or 1)
                total += n
    visit(model)
    return int(total * batch_size * bytes_per_value * 2)
