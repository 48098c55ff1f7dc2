"""The embedded default dataset: scikit-learn's handwritten digits.

1,797 real 8x8 grey-scale scans of the digits 0-9 (UCI ML hand-written
digits), shipped inside scikit-learn, so every machine has them without a
download. They are upsampled so that a CNN has feature maps large enough for
two downsamplings and therefore two bottlenecks for BAM. Small enough to
train on 2 CPU cores in seconds, real enough that accuracy means something.
"""

import numpy as np

CLASS_NAMES = tuple(str(d) for d in range(10))


def load_digits(image_size=32, channels=1, test_fraction=0.25, seed=0):
    """Returns `(x_train, y_train), (x_test, y_test)`.

    Images are float32 in [0, 1], shape (N, image_size, image_size,
    channels); labels int32 in 0..9. The split is stratified and fixed by
    `seed`.

    Raises:
        ImportError: scikit-learn is missing (`pip install scikit-learn`).
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as error:
        raise ImportError(
            "The embedded digits dataset ships with scikit-learn: "
            "pip install 'keras-bam[examples]' (or scikit-learn)."
        ) from error
    import tensorflow as tf

    digits = sklearn_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    images = tf.image.resize(images, (image_size, image_size), "bilinear").numpy()
    images = np.clip(images, 0.0, 1.0)
    if channels != 1:
        images = np.repeat(images, channels, axis=-1)
    labels = digits.target.astype("int32")
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test[members[: int(round(len(members) * test_fraction))]] = True
    return (images[~test], labels[~test]), (images[test], labels[test])
