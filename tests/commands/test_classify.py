"""`python examples/classify.py`: bad input. The end-to-end run on the
default export is in tests/export/test_export.py (it reuses that export)."""

import re

import pytest

from keras_bam.commands import classify


def run(argv, capsys):
    code = classify.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_missing_model_points_at_make_export(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run([tmp_path], capsys)
    assert code == 2 and out == ""
    assert re.fullmatch(r"error: --model out/export/\S+\.tflite does not exist\. "
                        r"Run `make export`.*\n", err), err


def test_a_file_that_is_not_tflite(tmp_path, capsys):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"not a flatbuffer")
    code, _, err = run(["--model", model, tmp_path], capsys)
    assert code == 2 and "is not a .tflite file LiteRT can read" in err


@pytest.mark.parametrize("make, pattern", [
    (lambda p: p / "nothing-here.png", r"neither an image file nor a folder"),
    (lambda p: p, r"holds no image"),
    (lambda p: (p / "bad.png").write_bytes(b"no png") and p / "bad.png",
     r"bad\.png cannot be read as an image"),
])
def test_bad_images(tmp_path, capsys, make, pattern):
    from conftest import pixel_model

    from keras_bam.export import to_tflite

    model = tmp_path / "m.tflite"
    model.write_bytes(to_tflite(pixel_model(), "float32"))
    folder = tmp_path / "images"
    folder.mkdir()
    code, _, err = run(["--model", model, make(folder)], capsys)
    assert code == 2 and re.search(pattern, err), err
