"""Embedding networks: MobileFaceNet (default, CPU-friendly), FaceNet's Inception-ResNet-v1, dlib's
face ResNet (`faceapi_resnet`, for pretrained weights), a tiny test net.

Every network takes RGB pixels in [0, 255] (uint8 or float), normalises them itself (so training
and serving feed identical pixels) and ends in an L2-normalised embedding.
"""

from __future__ import annotations

import keras
from keras import layers

# Batch-norm moving statistics follow the data within ~10 steps rather than ~100 (Keras' 0.99):
# short runs otherwise export a model whose inference-mode embeddings all point one way.
BN_MOMENTUM = 0.9


# dlib's per-channel RGB means; its network sees (pixel - mean) / 256.
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)


def build_embedding_model(architecture: str, image_size: int, embedding_dim: int, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    builders = {
        "mobilefacenet": _mobilefacenet,
        "inception_resnet_v1": _inception_resnet_v1,
        "faceapi_resnet": _faceapi_resnet,
        "tiny": _tiny,
    }
    if architecture not in builders:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(builders)}")
    if architecture == "faceapi_resnet" and embedding_dim != FACEAPI_EMBEDDING_DIM:
        raise ValueError(f"faceapi_resnet embeds in {FACEAPI_EMBEDDING_DIM} dimensions (its pretrained last layer)")
    pixels = keras.Input((image_size, image_size, 3), name="images")
    if architecture == "faceapi_resnet":
        x = layers.Rescaling(1.0 / 256.0, offset=[-m / 256.0 for m in DLIB_MEAN_RGB], name="normalise")(pixels)
    else:
        x = layers.Rescaling(1.0 / 128.0, offset=-127.5 / 128.0, name="normalise")(pixels)
    features = builders[architecture](x, embedding_dim)
    embeddings = layers.UnitNormalization(axis=-1, name="embeddings")(features)
    return keras.Model(pixels, embeddings, name=architecture)


# --- MobileFaceNet (Chen et al. 2018): ~1M parameters at 112 px and 128-d -------------------------


def _conv_bn(x, filters: int, kernel: int, stride: int = 1, linear: bool = False, depthwise: bool = False):
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False)(x)
    else:
        x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return x if linear else layers.PReLU(shared_axes=[1, 2])(x)


def _bottleneck(x, expansion: int, filters: int, stride: int):
    shortcut = x
    x = _conv_bn(x, x.shape[-1] * expansion, 1)
    x = _conv_bn(x, 0, 3, stride, depthwise=True)
    x = _conv_bn(x, filters, 1, linear=True)
    if stride == 1 and shortcut.shape[-1] == filters:
        x = layers.Add()([shortcut, x])
    return x


# (expansion t, channels c, repeats n, first stride s), as in the paper's Table 1.
_MOBILEFACENET_STAGES = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


def _mobilefacenet(x, embedding_dim: int):
    x = _conv_bn(x, 64, 3, 2)
    x = _conv_bn(x, 0, 3, depthwise=True)
    for expansion, filters, repeats, stride in _MOBILEFACENET_STAGES:
        for i in range(repeats):
            x = _bottleneck(x, expansion, filters, stride if i == 0 else 1)
    x = _conv_bn(x, 512, 1)
    # Global depthwise conv (GDConv): a learned spatial weighting instead of average pooling.
    x = layers.DepthwiseConv2D(x.shape[1], padding="valid", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    x = layers.Conv2D(embedding_dim, 1, use_bias=False)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return layers.Flatten()(x)


# --- Inception-ResNet-v1 (Szegedy et al. 2016), as FaceNet implementations use it at 160 px ---------


def _conv(x, filters: int, kernel, stride: int = 1, padding: str = "same", activation: bool = True):
    x = layers.Conv2D(filters, kernel, stride, padding=padding, use_bias=False)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, scale=False)(x)
    return layers.Activation("relu")(x) if activation else x


def _residual(x, branches: list, scale: float, activation: bool = True):
    mixed = layers.Concatenate()(branches)
    up = layers.Conv2D(x.shape[-1], 1, use_bias=True)(mixed)
    x = layers.Add()([x, layers.Rescaling(scale)(up)])
    return layers.Activation("relu")(x) if activation else x


def _block35(x):
    b0 = _conv(x, 32, 1)
    b1 = _conv(_conv(x, 32, 1), 32, 3)
    b2 = _conv(_conv(_conv(x, 32, 1), 32, 3), 32, 3)
    return _residual(x, [b0, b1, b2], 0.17)


def _block17(x):
    b0 = _conv(x, 128, 1)
    b1 = _conv(_conv(_conv(x, 128, 1), 128, (1, 7)), 128, (7, 1))
    return _residual(x, [b0, b1], 0.10)


def _block8(x, activation: bool = True):
    b0 = _conv(x, 192, 1)
    b1 = _conv(_conv(_conv(x, 192, 1), 192, (1, 3)), 192, (3, 1))
    return _residual(x, [b0, b1], 0.20, activation)


def _inception_resnet_v1(x, embedding_dim: int):
    x = _conv(x, 32, 3, 2, "valid")
    x = _conv(x, 32, 3, 1, "valid")
    x = _conv(x, 64, 3)
    x = layers.MaxPooling2D(3, 2)(x)
    x = _conv(x, 80, 1, 1, "valid")
    x = _conv(x, 192, 3, 1, "valid")
    x = _conv(x, 256, 3, 2, "valid")
    for _ in range(5):
        x = _block35(x)
    # Reduction-A (k=192, l=192, m=256, n=384)
    x = layers.Concatenate()(
        [
            _conv(x, 384, 3, 2, "valid"),
            _conv(_conv(_conv(x, 192, 1), 192, 3), 256, 3, 2, "valid"),
            layers.MaxPooling2D(3, 2)(x),
        ]
    )
    for _ in range(10):
        x = _block17(x)
    # Reduction-B
    x = layers.Concatenate()(
        [
            _conv(_conv(x, 256, 1), 384, 3, 2, "valid"),
            _conv(_conv(x, 256, 1), 256, 3, 2, "valid"),
            _conv(_conv(_conv(x, 256, 1), 256, 3), 256, 3, 2, "valid"),
            layers.MaxPooling2D(3, 2)(x),
        ]
    )
    for _ in range(5):
        x = _block8(x)
    x = _block8(x, activation=False)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    x = layers.Dense(embedding_dim, use_bias=False)(x)
    return layers.BatchNormalization(momentum=BN_MOMENTUM, scale=False)(x)


# --- tiny: a few convolutions, for tests and smoke runs -----------------------------------------


def _tiny(x, embedding_dim: int):
    for filters in (16, 32, 64):
        x = _conv_bn(x, filters, 3, 2)
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dense(embedding_dim)(x)


# --- dlib's face ResNet (dlib_face_recognition_resnet_model_v1), as face-api ports it ----------------
# A ResNet-34 variant with half the filters, no batch norm at inference: each conv is followed by an
# affine "scale" layer, folded here into the conv's kernel and bias (training.pretrained assigns them).
# Layer names follow the weights manifest ("conv64_1/conv2" -> "conv64_1_conv2").

FACEAPI_EMBEDDING_DIM = 128
# (stage, filters, residual blocks after the stage's down block); conv32 has no down block.
FACEAPI_STAGES = (("conv32", 32, 3), ("conv64", 64, 3), ("conv128", 128, 2), ("conv256", 256, 2))


@keras.saving.register_keras_serializable(package="facesim")
class ChannelZeroPad(layers.Layer):
    """Appends `extra` all-zero channels: dlib's shortcut when a down block doubles the channels."""

    def __init__(self, extra: int, **kwargs):
        super().__init__(**kwargs)
        self.extra = extra

    def call(self, x):
        return keras.ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, self.extra]])

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + self.extra)

    def get_config(self):
        return {**super().get_config(), "extra": self.extra}


def _dlib_conv(x, name: str, filters: int, kernel: int, stride: int = 1, padding: str = "same", relu: bool = True):
    x = layers.Conv2D(filters, kernel, stride, padding=padding, name=name)(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _dlib_block(x, name: str, filters: int, down: bool = False):
    """conv-ReLU-conv plus the input, ReLU. A down block halves the size (3x3 stride-2 VALID conv);
    its shortcut is a 2x2 average pool, zero-padded in channels; a conv path one pixel smaller than
    the pool is zero-padded at the bottom and right."""
    y = _dlib_conv(x, f"{name}_conv1", filters, 3, 2 if down else 1, "valid" if down else "same")
    y = _dlib_conv(y, f"{name}_conv2", filters, 3, relu=False)
    shortcut = x
    if down:
        shortcut = layers.AveragePooling2D(2, 2, name=f"{name}_pool")(x)
        if shortcut.shape[1] != y.shape[1]:
            y = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_pad")(y)
        if shortcut.shape[-1] != filters:
            shortcut = ChannelZeroPad(filters - shortcut.shape[-1], name=f"{name}_widen")(shortcut)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def _faceapi_resnet(x, embedding_dim: int):
    x = _dlib_conv(x, "conv32_down", 32, 7, 2, "valid")
    x = layers.MaxPooling2D(3, 2, name="conv32_pool")(x)
    for stage, filters, blocks in FACEAPI_STAGES:
        if stage != "conv32":
            x = _dlib_block(x, f"{stage}_down", filters, down=True)
        for i in range(1, blocks + 1):
            x = _dlib_block(x, f"{stage}_{i}", filters)
    x = _dlib_block(x, "conv256_down_out", 256, down=True)
    x = layers.GlobalAveragePooling2D(name="mean")(x)
    return layers.Dense(embedding_dim, use_bias=False, name="fc")(x)


@keras.saving.register_keras_serializable(package="facesim")
class WithMirrors(layers.Layer):
    """A batch of images [B, H, W, C] followed by their mirror images: [2B, H, W, C]."""

    def call(self, x):
        # A reversed slice, not keras.ops.flip: tf2onnx turns it into one Slice instead of ReverseSequence
        # between two Transposes (0.36 -> 0.12 ms a crop under ONNX Runtime).
        return keras.ops.concatenate([x, x[:, :, ::-1, :]], axis=0)

    def compute_output_shape(self, input_shape):
        return (None, *input_shape[1:])


@keras.saving.register_keras_serializable(package="facesim")
class SumHalves(layers.Layer):
    """[2B, D] -> [B, D]: each row of the first half plus its row in the second."""

    def call(self, x):
        half = keras.ops.shape(x)[0] // 2
        return x[:half] + x[half:]

    def compute_output_shape(self, input_shape):
        return (None, *input_shape[1:])


def with_flip_average(model: keras.Model) -> keras.Model:
    """The embedding of a crop and of its mirror image, summed and L2-normalised: the same weights, a
    steadier embedding (+0.5 point on LFW fold 10 for faceapi_resnet, docs/results.md) at twice the cost.
    Crops and mirrors go through the network as one batch of 2B (faster than two passes of B)."""
    pixels = keras.Input(model.input_shape[1:], name="images")
    both = SumHalves(name="flip_sum")(model(WithMirrors(name="mirror")(pixels)))
    return keras.Model(pixels, layers.UnitNormalization(axis=-1, name="embeddings")(both), name=f"{model.name}_flip")


def freeze_stages(model: keras.Model, stages: int) -> list[str]:
    """Freeze the first `stages` of faceapi_resnet's FACEAPI_STAGES (fine-tuning keeps early features);
    returns the frozen stage names."""
    names = [stage for stage, _, _ in FACEAPI_STAGES[:stages]]
    for layer in model.layers:
        if any(layer.name.startswith(f"{stage}_") for stage in names):
            layer.trainable = False
    return names
