"""The two views of `keras_bam.data.views` against torchvision's arithmetic.

The expected sizes and offsets are written here from torchvision's
`Resize(256)` (shorter side 256, the other int(256 * long / short)) and
`CenterCrop(224)` (corner at round((side - 224) / 2), Python's round), not
computed by the code under test. Ramp images (a pixel's value is its
column, or its row) show where each output pixel came from: bilinear
resizing keeps a linear ramp linear away from the borders.
"""

import numpy as np
import pytest
import tensorflow as tf

from keras_bam.applications import resize_and_center_crop as public_crop
from keras_bam.data import views
from keras_bam.data.images import load_images
from keras_bam.training import augment

# (height, width) -> (resized height, width), (top, left): torchvision's numbers.
TORCHVISION = {
    (375, 500): ((256, 341), (16, 58)),  # 58.5 rounds to 58 (half to even)
    (500, 375): ((341, 256), (58, 16)),
    (333, 500): ((256, 384), (16, 80)),
    (257, 300): ((256, 298), (16, 37)),
    (300, 300): ((256, 256), (16, 16)),
}


def ramps(height, width):
    """Channel 0 the column index, channel 1 the row index, channel 2 zero."""
    cols = np.tile(np.arange(width, dtype="float32"), (height, 1))
    rows = np.tile(np.arange(height, dtype="float32")[:, None], (1, width))
    return np.stack([cols, rows, np.zeros_like(cols)], -1)


def expected_ramps(height, width, crop=224):
    """What the crop of `ramps(height, width)` holds, from torchvision's
    numbers: output pixel i of a resize by s sits at (i + 0.5) * s - 0.5."""
    (new_h, new_w), (top, left) = TORCHVISION[(height, width)]
    index = np.arange(crop)
    cols = (left + index + 0.5) * width / new_w - 0.5
    rows = (top + index + 0.5) * height / new_h - 0.5
    return np.tile(cols, (crop, 1)), np.tile(rows[:, None], (1, crop))


@pytest.mark.parametrize("size", sorted(TORCHVISION))
def test_sizes_and_offsets_are_torchvisions(size):
    out = views.resize_and_center_crop(ramps(*size)).numpy()
    assert out.shape == (224, 224, 3)
    cols, rows = expected_ramps(*size)
    # One pixel off in the corner moves every value by 1 to 1.5, one pixel
    # off in the resized size by 0.4 to 0.7 at the far side; the filter's
    # discrete taps bend the ramp by up to 0.05.
    np.testing.assert_allclose(out[..., 0], cols, atol=0.25)
    np.testing.assert_allclose(out[..., 1], rows, atol=0.25)


def test_pixels_match_pil_bilinear_at_torchvisions_size_and_corner():
    """PIL (torchvision's backend for their evaluation) in float mode,
    resized and cropped with the numbers above: the same pixels to 1e-2."""
    from PIL import Image

    rng = np.random.default_rng(7)
    small = rng.integers(0, 256, (30, 40, 3)).astype("uint8")
    photo = np.asarray(Image.fromarray(small).resize((500, 375), Image.BICUBIC))
    (new_h, new_w), (top, left) = TORCHVISION[(375, 500)]
    reference = np.stack([
        np.asarray(Image.fromarray(photo[..., c].astype("float32"), "F").resize(
            (new_w, new_h), Image.BILINEAR)) for c in range(3)], -1)
    reference = reference[top:top + 224, left:left + 224]
    out = views.resize_and_center_crop(photo).numpy()
    np.testing.assert_allclose(out, reference, atol=1e-2)


def test_no_resize_when_the_shorter_side_is_already_256():
    """Pixels copied as they are; the corner rounds half to even: (321 -
    224) / 2 = 48.5 -> 48, (323 - 224) / 2 = 49.5 -> 50."""
    rng = np.random.default_rng(5)
    for width, left in ((321, 48), (323, 50)):
        image = rng.integers(0, 256, (256, width, 3)).astype("uint8")
        out = views.resize_and_center_crop(image).numpy()
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, image[16:240, left:left + 224])


def test_graph_mode_on_unknown_sizes_matches_eager():
    """In tf.data, on images whose size is known only when decoded."""
    images = [ramps(*size) for size in ((375, 500), (500, 375), (257, 300))]
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(images), output_signature=tf.TensorSpec((None, None, 3), tf.float32))
    mapped = dataset.map(lambda image: views.resize_and_center_crop(image))
    assert mapped.element_spec.shape == (224, 224, 3)
    for image, out in zip(images, mapped.as_numpy_iterator()):
        np.testing.assert_allclose(out, views.resize_and_center_crop(image).numpy(),
                                   atol=1e-4)
    batched = tf.function(views.resize_and_center_crop, input_signature=[
        tf.TensorSpec((None, None, None, 3), tf.float32)])
    np.testing.assert_array_equal(batched(np.stack([images[0]] * 2))[1].numpy(),
                                  views.resize_and_center_crop(images[0]).numpy())


def test_one_implementation_behind_the_three_names():
    image = ramps(375, 500)
    reference = views.resize_and_center_crop(image).numpy()
    np.testing.assert_array_equal(np.asarray(public_crop(image)), reference)
    # The views hand out pixels: clipped to [0, 255] (the ramp reaches 499).
    clipped = np.clip(reference, 0, 255)
    np.testing.assert_array_equal(augment.imagenet_eval(image, (224, 224)).numpy(),
                                  clipped)
    np.testing.assert_array_equal(views.apply_view(image, 224, "center_crop").numpy(),
                                  clipped)


def test_other_input_sizes_keep_the_ratio():
    assert [views.resize_for_crop(s) for s in (224, 32, 56, (112, 100))] == [256, 37, 64, 128]
    # 100 x 200 for a 56 crop: shorter side 64, so 64 x 128, corner (4, 36).
    out = views.apply_view(ramps(100, 200), 56, "center_crop").numpy()
    assert out.shape == (56, 56, 3)
    np.testing.assert_allclose(out[0, :, 0], (36 + np.arange(56) + 0.5) * 200 / 128 - 0.5,
                               atol=0.25)


def test_bad_arguments_say_what_was_received():
    with pytest.raises(ValueError, match=r"crop <= resize.*resize=200, crop=224"):
        views.resize_and_center_crop(np.zeros((300, 300, 3)), resize=200)
    with pytest.raises(ValueError, match=r"Received shape \(300, 300\)"):
        views.resize_and_center_crop(np.zeros((300, 300)))
    with pytest.raises(ValueError, match="view=.crop."):
        views.apply_view(np.zeros((8, 8, 3)), 4, "crop")


def test_the_rule_picks_the_crop_for_photos_only(tmp_path):
    assert views.default_view("digits", 32) == "resize"
    assert views.default_view("cifar10", 224) == "resize"
    assert views.default_view("imagenette", 224) == "center_crop"
    # Unknown images: by their stored size when they all have one.
    assert views.default_view(f"folder:{tmp_path}", 224, stored_size=(32, 32)) == "resize"
    assert views.default_view(f"folder:{tmp_path}", 224, stored_size=None) == "center_crop"


def test_load_images_centre_crops_when_asked(tmp_path):
    """A folder of 120 x 160 photos: the centre crop keeps the aspect ratio
    (a square drawn in the middle stays square); "auto" follows the rule
    (a folder's images vary in size, so the input size decides)."""
    from PIL import Image

    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        for index in range(4):
            pixels = np.zeros((120, 160, 3), "uint8")
            pixels[40:80, 60:100] = 255  # a 40 x 40 white square, centred
            Image.fromarray(pixels).save(folder / f"{index}.png")
    training, held_out = load_images(str(tmp_path), (32, 32), 3, view="center_crop")
    assert training.view == held_out.view == "center_crop"
    assert training.source.endswith(", center crop")
    # Shorter side 120 -> 37, so 37 x 49 and a 32 x 32 crop at (2, 8): the
    # square spans 40 * 37 / 120 = 12.3 pixels both ways, in the middle.
    white = training.images[0, ..., 0] > 127
    rows, cols = np.flatnonzero(white.any(1)), np.flatnonzero(white.any(0))
    assert abs(len(rows) - len(cols)) <= 1 and 11 <= len(rows) <= 14
    assert abs((rows[0] + rows[-1]) / 2 - 15.5) <= 1 and abs((cols[0] + cols[-1]) / 2 - 15.5) <= 1
    straight, _ = load_images(str(tmp_path), (32, 32), 3, view="auto")
    white = straight.images[0, ..., 0] > 127
    # Resized straight, the square is squeezed: 40 / 160 * 32 = 8 wide, 40 / 120 * 32 ~ 11 high.
    assert straight.view == "resize"
    assert white.any(1).sum() - white.any(0).sum() >= 2
    assert load_images(str(tmp_path), (96, 96), 3, view="auto")[0].view == "center_crop"
