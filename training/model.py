"""Embedding networks: MobileFaceNet (default, CPU-friendly), FaceNet's Inception-ResNet-v1, a tiny test net.

Every network takes RGB pixels in [0, 255] (uint8 or float), normalises them itself
((x - 127.5) / 128, so training and serving feed identical pixels) and ends in an
L2-normalised embedding.
"""

from __future__ import annotations

import keras
from keras import layers

# Batch-norm moving statistics follow the data within ~10 steps rather than ~100 (Keras' 0.99):
# short runs otherwise export a model whose inference-mode embeddings all point one way.
BN_MOMENTUM = 0.9


def build_embedding_model(architecture: str, image_size: int, embedding_dim: int, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    builders = {
        "mobilefacenet": _mobilefacenet,
        "inception_resnet_v1": _inception_resnet_v1,
        "tiny": _tiny,
    }
    if architecture not in builders:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(builders)}")
    pixels = keras.Input((image_size, image_size, 3), name="images")
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
