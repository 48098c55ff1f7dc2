"""The model `python export/to_tflite.py` exports when given none.

A CIFAR-style CNN (`keras_bam.applications.SmallCNN`: three stages at 32,
16 and 8 pixels) with BAM inserted by `keras_bam.insert_bam` after its
first two stages, trained on 32 x 32 RGB renderings of scikit-learn's
handwritten digits: 1,797 real scans in 10 classes that ship with a
package, so the command runs offline, and real images, so calibration and
the accuracy comparison mean something.

Why not BAM-MobileNetV2: on two CPU cores it needs about 50 s of training
to reach 88 % here (Keras runs its 150 small layers slowly at this size),
which leaves no room in the command's one-minute budget; this network
reaches about 97 % in half that. `benchmarks/tflite_resnet50.py` covers the
keras.applications models.
"""

import keras

from keras_bam.applications import SmallCNN
from keras_bam.rewrite import insert_bam

IMAGE_SIZE = 32


def build_default_model(classes=10, image_size=IMAGE_SIZE, seed=0):
    """BAM-SmallCNN taking float32 pixels in [0, 255]; outputs logits."""
    keras.utils.set_random_seed(seed)
    backbone = insert_bam(
        SmallCNN(input_shape=(image_size, image_size, 3), classes=classes,
                 use_bam=False), share_weights=True, name="bam_small_cnn")
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255.0, name="to_unit_range")(inputs)
    return keras.Model(inputs, backbone(x), name="bam_small_cnn_digits")


def train_default_model(train, epochs=6, seed=0, batch_size=64, verbose=0):
    """Builds and trains the default model on an `images.ImageSet`.

    The learning rate decays to zero (cosine), so that the weights, and
    with them the batch-norm moving statistics, have settled when training
    stops: inference-mode accuracy then matches training accuracy.
    """
    model = build_default_model(classes=len(train.class_names), seed=seed)
    steps = epochs * -(-len(train) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, steps)
    model.compile(keras.optimizers.Adam(schedule),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(train.images, train.labels, batch_size=batch_size, epochs=epochs,
              shuffle=True, verbose=verbose)
    return model
