"""The package as a user meets it: imports and the README's examples."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_import_leaves_keras_3_in_charge():
    code = (
        "import os, sys, keras, keras_bam\n"
        "assert 'tensorflow_model_optimization' not in sys.modules\n"
        "assert 'tf_keras' not in sys.modules\n"
        "assert os.environ.get('TF_USE_LEGACY_KERAS') is None\n"
        "assert keras.__version__.startswith('3.'), keras.__version__\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=ENV
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_package_never_uses_tf_keras():
    # tf.keras flips to legacy Keras once tfmot is imported anywhere.
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "keras_bam").rglob("*.py")
        if re.search(r"\btf\.keras\b", path.read_text())
    ]
    assert offenders == []


def _readme_python_blocks():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_readme_examples_run_as_written(tmp_path):
    blocks = _readme_python_blocks()
    assert blocks, "README.md has no ```python block"
    for block in blocks:
        result = subprocess.run(
            [sys.executable, "-c", block],
            capture_output=True, text=True, env=ENV, cwd=tmp_path,
        )
        assert result.returncode == 0, f"{block}\n---\n{result.stderr[-2000:]}"
