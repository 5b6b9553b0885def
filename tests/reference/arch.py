"""The small face-model architecture both sides build: a Keras model (side venv) and its torch twin.

No imports beyond numpy: this file is read by the TensorFlow script in the side environment and by
the torch twin in the project environment, so both build exactly the same network from exactly
the same weights.

Network (input 112x112x3, channels last on the Keras side, channels first in torch):
scale -> conv 5x5/2 -> tanh -> conv 3x3/2 -> tanh -> conv 3x3/2 -> tanh -> 3x3 average pool
-> flatten (in height, width, channel order) -> linear to ``EMBED``. No biases, no padding:
with "valid" convolutions and a pool that tiles 12x12 exactly, the two frameworks compute the
same function with no convention to translate except the weight layout. Random tanh nets without
biases keep different faces' features apart (see tests/cloaks_testlib.py's TinyNet).
"""

from __future__ import annotations

import numpy as np

SIZE = 112
WIDTH = 16
EMBED = 128
GAIN = 2.0
# (kernel, stride, out channels) of the three convolutions.
CONVS = ((5, 2, WIDTH), (3, 2, 2 * WIDTH), (3, 2, 4 * WIDTH))
POOL = 3  # 112 -> 54 -> 26 -> 12 -> pool 3 -> 4x4
FLAT = 4 * 4 * 4 * WIDTH


def random_weights(seed: int) -> list[np.ndarray]:
    """Seeded weights in Keras layout: conv kernels (kh, kw, in, out), dense kernel (in, out)."""
    rng = np.random.default_rng(seed)
    weights, cin = [], 3
    for k, _, cout in CONVS:
        fan_in = k * k * cin
        weights.append((GAIN * rng.standard_normal((k, k, cin, cout)) / fan_in ** 0.5)
                       .astype(np.float32))
        cin = cout
    weights.append((GAIN * rng.standard_normal((FLAT, EMBED)) / FLAT ** 0.5).astype(np.float32))
    return weights


# Input conventions of the two originals, as (channel order, scale of the network's first step):
# Fawkes 1.0 feeds its models RGB in [0, 1] ("raw" pixels / 255); our Keras model maps that to
# [-1, 1]. Fawkes 0.0.8 feeds ImageNet-style input (BGR, 0..255 minus the channel means); our
# model divides it by 127.5.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
