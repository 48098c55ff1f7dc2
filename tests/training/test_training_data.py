"""Training input pipelines and recipes: every kind of source, the
augmentations against NumPy, determinism, schedules and bad inputs."""

import numpy as np
import pytest
import tensorflow as tf

from keras_bam.data import load_digits
from keras_bam.data.images import load_images
from keras_bam.data.sources import Source
from keras_bam.training import augment, recipes
from keras_bam.training.data import DataError, make_datasets, resolve_source


def batches(dataset, count):
    return [(x.numpy(), y.numpy()) for x, y in dataset.take(count)]


def write_folder(root, sizes, gray_every=0, seed=0):
    """Two classes of random PNGs, sizes cycling through `sizes`."""
    rng = np.random.default_rng(seed)
    for index in range(16):
        folder = root / ("cat" if index % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        height, width = sizes[index % len(sizes)]
        channels = 1 if gray_every and index % gray_every == 0 else 3
        pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        (folder / f"{index:02d}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    return root


# ---- sources ----------------------------------------------------------------

def test_digits_eval_is_the_raw_test_split_and_train_is_batched():
    train, evaluation, info = make_datasets(None, image_size=32, channels=3,
                                            global_batch_size=64, seed=0)
    (_, _), (x_test, y_test) = load_digits(image_size=32, channels=3)
    assert (info.num_classes, info.num_train, info.num_eval) == (10, 1347, 450)
    assert (info.recipe, info.source, info.image_size) == ("digits", "digits", (32, 32))
    images = np.concatenate([x for x, _ in evaluation.as_numpy_iterator()])
    labels = np.concatenate([y for _, y in evaluation.as_numpy_iterator()])
    # Unaugmented, in order: the test split itself, to uint8 rounding.
    np.testing.assert_allclose(images, x_test * 255.0, atol=0.5)
    np.testing.assert_array_equal(labels, y_test)
    for x, y in batches(train, 3):
        assert x.shape == (64, 32, 32, 3) and x.dtype == np.float32
        assert y.dtype == np.int32 and 0 <= y.min() and y.max() < 10
        assert 0.0 <= x.min() and x.max() <= 255.0 and x.max() > 200.0
    assert info.steps_per_epoch(64) == 1347 // 64


def test_tfds_cifar10_through_mock_data():
    """The real TFDS path, offline: mock_data serves random examples with
    cifar10's features."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=20):
        train, evaluation, info = make_datasets("cifar10", image_size=32, channels=1,
                                                global_batch_size=8, seed=0)
        x, y = batches(train, 1)[0]
        sizes = [len(y) for _, y in evaluation.as_numpy_iterator()]
    assert (info.num_classes, info.recipe, info.source) == (10, "cifar", "tfds:cifar10")
    assert len(info.class_names) == 10 and (info.num_train, info.num_eval) == (20, 20)
    assert x.shape == (8, 32, 32, 1) and y.dtype == np.int32 and y.max() < 10
    assert sizes == [8, 8, 4]  # finite, last batch kept


@pytest.mark.parametrize("name", ["imagenet2012", "tfds:imagenette"])
def test_tfds_photos_get_the_imagenet_recipe(name, tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        train, evaluation, info = make_datasets(
            name, image_size=(24, 20), channels=3, global_batch_size=4,
            data_dir=tmp_path, manual_dir=tmp_path / "manual", seed=0)
        x, _ = batches(train, 1)[0]
        eval_x = np.concatenate([x for x, _ in evaluation.as_numpy_iterator()])
    assert info.recipe == "imagenet" and info.source == "tfds:" + name.removeprefix("tfds:")
    assert x.shape == (4, 24, 20, 3) and eval_x.shape == (6, 24, 20, 3)
    assert 0.0 <= x.min() and x.max() <= 255.0


def test_unprepared_tfds_dataset_says_how_to_prepare_it(tmp_path):
    with pytest.raises(DataError, match=r"not prepared in .*nothing is downloaded.*"
                                        r"tfds build cifar10"):
        make_datasets("cifar10", image_size=32, channels=3, global_batch_size=8,
                      data_dir=tmp_path)
    manual = tmp_path / "manual"
    with pytest.raises(DataError, match=rf"manual download into {manual}.*"
                                        r"ILSVRC2012_img_train\.tar"):
        make_datasets("imagenet2012", image_size=224, channels=3, global_batch_size=8,
                      data_dir=tmp_path, manual_dir=manual)


def test_manual_dataset_is_prepared_from_its_files_without_downloading(tmp_path):
    from keras_bam.data import reader

    class Builder:
        MANUAL_DOWNLOAD_INSTRUCTIONS = "Put the tars in manual_dir."
        config = None

        def download_and_prepare(self, download_config):
            Builder.config = download_config

    (tmp_path / "manual").mkdir()
    (tmp_path / "manual" / "ILSVRC2012_img_val.tar").write_bytes(b"")
    import tensorflow_datasets as tfds

    with pytest.raises(DataError, match="downloads/manual .*Put the tars"):
        reader.prepare_manual(tfds, Builder(), "imagenet2012", str(tmp_path), None)
    assert Builder.config is None
    reader.prepare_manual(tfds, Builder(), "imagenet2012", None, str(tmp_path / "manual"))
    assert str(Builder.config.manual_dir) == str(tmp_path / "manual")
    assert Builder.config.try_download_gcs is False


def test_folder_eval_is_the_quarter_export_verifies_on(tmp_path):
    folder = write_folder(tmp_path / "photos", [(20, 30), (40, 24)], gray_every=5)
    for source in (f"folder:{folder}", str(folder)):
        train, evaluation, info = make_datasets(source, image_size=16, channels=3,
                                                global_batch_size=4, seed=0)
        assert (info.num_train, info.num_eval, info.class_names) == (12, 4, ("cat", "dog"))
        assert info.recipe == "cifar"  # 16 pixels: small images
    _, held_out = load_images(str(folder), (16, 16), 3)
    eval_x = np.concatenate([x for x, _ in evaluation.as_numpy_iterator()])
    eval_y = np.concatenate([y for _, y in evaluation.as_numpy_iterator()])
    np.testing.assert_allclose(eval_x, held_out.images, atol=0.5)
    np.testing.assert_array_equal(eval_y, held_out.labels)
    x, y = batches(train, 1)[0]
    assert x.shape == (4, 16, 16, 3) and set(y) <= {0, 1}


# ---- augmentation -------------------------------------------------------------

def windows(image, pad):
    """Every crop of the zero-padded image, and their mirror images."""
    height, width = image.shape[:2]
    padded = np.pad(image, [(pad, pad), (pad, pad), (0, 0)])
    crops = [padded[i:i + height, j:j + width]
             for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
    return crops, [crop[:, ::-1] for crop in crops]


@pytest.mark.parametrize("flip", [True, False])
def test_cifar_augmentation_is_a_padded_crop_flipped_only_when_asked(flip, rng):
    image = rng.integers(1, 256, (32, 32, 3)).astype("float32")
    crops, mirrored = windows(image, 4)
    flipped = 0
    for index in range(40):
        out = augment.cifar_train(tf.constant(image), tf.constant([7, index], tf.int64),
                                  flip=flip).numpy()
        plain = any(np.array_equal(out, crop) for crop in crops)
        mirror = any(np.array_equal(out, crop) for crop in mirrored)
        assert plain or mirror
        flipped += mirror and not plain
    assert (flipped > 5) if flip else flipped == 0


def test_random_resized_crop_covers_8_to_100_percent_at_3_4_to_4_3():
    # Channel 0 is x, channel 1 is y: the output says which box it came from.
    ramp = np.arange(200, dtype="float32")
    image = np.stack([np.tile(ramp, (200, 1)), np.tile(ramp[:, None], (1, 200)),
                      np.zeros((200, 200), "float32")], -1)
    areas, crops = [], set()
    for index in range(30):
        out = augment.imagenet_train(tf.constant(image), tf.constant([1, index], tf.int64),
                                     (32, 32)).numpy()
        assert out.shape == (32, 32, 3) and 0.0 <= out.min() and out.max() <= 255.0
        width = abs(out[16, -1, 0] - out[16, 0, 0]) * 32 / 31
        height = (out[-1, 16, 1] - out[0, 16, 1]) * 32 / 31
        areas.append(width * height / 200**2)
        assert 3 / 4 - 0.1 < width / height < 4 / 3 + 0.1
        crops.add((round(out[0, 0, 0]), round(out[0, 0, 1])))
    assert 0.08 - 0.02 < min(areas) < 0.3 and 0.7 < max(areas) < 1.02
    assert len(crops) > 20  # different crops for different positions


def test_imagenet_eval_resizes_to_256_over_224_and_crops_the_center():
    ramp = np.arange(200, dtype="float32")
    image = np.stack([np.tile(ramp, (100, 1))] * 3, -1)  # 100 x 200, x in every channel
    out = augment.imagenet_eval(tf.constant(image), (56, 56)).numpy()
    # Shorter side 100 -> 64 (= 56 * 256 / 224): scale 0.64, 64 x 128, crop
    # 56 x 56 at (4, 36), i.e. x from 36 / 0.64 = 56.25 to 92 / 0.64 = 143.75.
    assert out.shape == (56, 56, 3)
    np.testing.assert_allclose([out[28, 0, 0], out[28, -1, 0]], [57.0, 143.0], atol=1.5)


# ---- determinism ----------------------------------------------------------------

@pytest.mark.parametrize("source, recipe", [(None, None), ("folder", "imagenet")])
def test_same_seed_same_batches(source, recipe, tmp_path):
    if source == "folder":
        source = str(write_folder(tmp_path / "photos", [(48, 40), (30, 60)]))

    def run(seed):
        train, _, _ = make_datasets(source, image_size=24, channels=3, recipe=recipe,
                                    global_batch_size=4, seed=seed)
        return batches(train, 5)  # more than one epoch of the folder

    first, again, other = run(3), run(3), run(4)
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))


# ---- recipes --------------------------------------------------------------------

def test_recipes_carry_the_papers_optimizer():
    cifar, imagenet = recipes.RECIPES["cifar"], recipes.RECIPES["imagenet"]
    assert (cifar.momentum, cifar.weight_decay, cifar.base_learning_rate,
            cifar.reference_batch_size) == (0.9, 1e-4, 0.1, 128)
    assert (imagenet.reference_batch_size, imagenet.epochs) == (256, 90)
    optimizer = imagenet.optimizer(imagenet.learning_rate(1024))
    assert optimizer.momentum == 0.9 and optimizer.weight_decay == 1e-4
    assert float(optimizer.learning_rate) == pytest.approx(0.4)
    assert recipes.scaled_learning_rate(0.1, 64, 128) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="global_batch must be a positive"):
        recipes.scaled_learning_rate(0.1, 0, 128)


@pytest.mark.parametrize("recipe, steps, epochs, boundaries", [
    ("cifar", 10, 200, [1000, 1500]),
    ("digits", 3, 10, [15, 22]),
    ("imagenet", 100, 90, [3000, 6000]),
    ("imagenet", 100, 100, [3000, 6000, 9000]),
    ("imagenet", 5, 30, [150]),  # too short to decay: a boundary at the end
    ("cifar", 1, 1, [1]),
])
def test_schedule_boundaries(recipe, steps, epochs, boundaries):
    schedule = recipes.learning_rate_schedule(recipe, 0.4, steps, epochs)
    assert list(schedule.boundaries) == boundaries
    for k, boundary in enumerate(boundaries):
        assert float(schedule(boundary)) == pytest.approx(0.4 * 0.1**k)
        assert float(schedule(boundary + 1)) == pytest.approx(0.4 * 0.1**(k + 1))


def test_source_names(tmp_path):
    """One grammar for training, export, QAT and the figures."""
    assert resolve_source(None) == Source("digits")
    assert resolve_source("embedded") == resolve_source("digits") == Source("digits")
    assert resolve_source("cifar100") == Source("tfds", "cifar100")
    assert resolve_source("tfds:mnist") == Source("tfds", "mnist")
    assert resolve_source("tfds:mnist:3.0.1").known is None
    assert resolve_source("folder:x/y") == Source("folder", "x/y")
    assert resolve_source(tmp_path) == Source("folder", str(tmp_path))
    assert [str(resolve_source(s)) for s in (None, "cifar10", "folder:x/y")] == [
        "digits", "tfds:cifar10", "folder:x/y"]
    assert resolve_source("cifar10").known.images == "small"
    assert resolve_source("imagenette").known.eval_split == "validation"
    with pytest.raises(DataError, match="names no dataset"):
        resolve_source("tfds:")
    with pytest.raises(TypeError, match="Received: 3 of type int"):
        resolve_source(3)


# ---- bad inputs -------------------------------------------------------------------

@pytest.mark.parametrize("source, pattern", [
    ("cifar11", r"'cifar11' is neither a folder nor a known dataset\. Close matches: "
                r"cifar10.*'digits', 'cifar10'"),
    ("no/such/folder", r"neither a folder nor a known dataset"),
    ("folder:/no/such/folder", r"'/no/such/folder' is not a folder"),
    ("tfds:no_such_dataset_xyz", r"cannot open 'no_such_dataset_xyz'.*tfds.list_builders"),
])
def test_unknown_sources_list_the_valid_ones(source, pattern):
    with pytest.raises(DataError, match=pattern):
        make_datasets(source, image_size=32, channels=3, global_batch_size=8)


def test_bad_folders(tmp_path):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "cat" / "notes.txt").write_text("skipped, as Keras does")
    with pytest.raises(DataError, match="No images found under .*one sub-folder per class"):
        make_datasets(tmp_path / "empty", image_size=32, channels=3, global_batch_size=8)
    folder = write_folder(tmp_path / "photos", [(8, 8)])
    (folder / "cat" / "broken.jpg").write_text("not a JPEG")
    with pytest.raises(DataError, match=r"1 file\(s\) .* not JPEG, PNG, GIF or BMP.*"
                                        r"broken\.jpg"):
        make_datasets(folder, image_size=8, channels=3, global_batch_size=2)


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"global_batch_size": 2048}, DataError, "1347 training images, fewer than one "
                                             "global batch of 2048"),
    ({"global_batch_size": 0}, ValueError, "global_batch_size must be a positive"),
    ({"recipe": "cifra"}, ValueError, "Unknown recipe 'cifra'.*Did you mean 'cifar'"),
    ({"image_size": (32,)}, ValueError, r"image_size must be .* Received: "
                                        r"image_size=\(32,\)"),
    ({"channels": 4}, ValueError, "channels must be 1 or 3"),
])
def test_bad_arguments(kwargs, error, pattern):
    arguments = {"image_size": 32, "channels": 3, "global_batch_size": 8, **kwargs}
    with pytest.raises(error, match=pattern):
        make_datasets("digits", **arguments)
