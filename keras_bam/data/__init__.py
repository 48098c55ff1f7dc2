"""Images: one grammar of source strings, one reader, one pixel map.

- `sources`: the source strings (`resolve_source`), shared errors.
- `reader`: a source's training and held-out splits as `tf.data`.
- `images`: the same splits in memory at a model's input size.
- `views`: how an image meets that size: resized straight, or the centre
  crop of photos that training evaluates and export calibrates on.
- `preprocessing`: pixels in [0, 255] to what a network was trained on.
- `digits`: the embedded offline dataset.
"""

from keras_bam.data.digits import load_digits
from keras_bam.data.images import ImageSet, load_images
from keras_bam.data.preprocessing import SCHEMES, preprocessing_layers, with_preprocessing
from keras_bam.data.reader import Splits, open_splits
from keras_bam.data.sources import (
    DATASETS,
    DataError,
    Source,
    describe_sources,
    resolve_source,
)

__all__ = [
    "DATASETS",
    "SCHEMES",
    "DataError",
    "ImageSet",
    "Source",
    "Splits",
    "describe_sources",
    "load_digits",
    "load_images",
    "open_splits",
    "preprocessing_layers",
    "resolve_source",
    "with_preprocessing",
]
