"""The package as a user meets it: imports and the README's examples."""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_import_leaves_keras_3_in_charge(fresh_import):
    """A fresh `import keras_bam` imports neither tfmot nor tf_keras (either
    would switch tf.keras to legacy Keras) and leaves Keras 3 in charge."""
    alone = fresh_import["alone"]
    assert "tensorflow_model_optimization" not in alone["modules"]
    assert "tf_keras" not in alone["modules"]
    assert alone["legacy_keras"] is None
    assert alone["keras"].startswith("3."), alone["keras"]
    assert alone["tf_keras"] == alone["keras"], alone


def test_import_leaves_the_garbage_collector_running(fresh_import):
    """keras_bam/__init__.py pauses it while Keras loads, and only then."""
    assert fresh_import["alone"]["gc_enabled"] is True


def test_package_never_uses_tf_keras():
    # tf.keras flips to legacy Keras once tfmot is imported anywhere.
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "keras_bam").rglob("*.py")
        if re.search(r"\btf\.keras\b", path.read_text())
    ]
    assert offenders == []


@pytest.mark.slow
def test_readme_examples_run_as_written(fresh_import):
    """Each python block, in order, in its own namespace, in a fresh
    interpreter right after its first `import keras_bam` (the `fresh_import`
    fixture; tests/test_docs.py runs them here and checks what they print)."""
    assert fresh_import["readme_blocks"], "README.md has no ```python block"
    ran = fresh_import["readme"]
    failed = [r for r in ran if r != "ok"]
    assert not failed, failed[0]
    assert len(ran) == fresh_import["readme_blocks"]


# ------------------------------------------------------------ the sources


PACKAGE = ROOT / "keras_bam"
# Test support, not library code: the doctests see the public names.
NOT_LIBRARY = {"keras_bam/__init__.py", "keras_bam/conftest.py"}
# The one module allowed to use Keras' private API.
KERAS_INTERNALS = "keras_bam/rewrite/keras_internals.py"
# Underscore attributes of objects that are not Keras': LiteRT's interpreter
# lists its operators only through `_get_ops_details`, argparse its options
# only through `_actions`.
NOT_KERAS = {"_get_ops_details", "_actions"}


def _sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield str(path.relative_to(ROOT)), ast.parse(path.read_text())


def _imports_face(tree):
    """`import keras_bam` or `from keras_bam import X`, anywhere in a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(
                alias.name == "keras_bam" for alias in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "keras_bam" \
                and node.level == 0:
            return True
    return False


def test_no_library_module_imports_the_package_face():
    offenders = {name for name, tree in _sources()
                 if name not in NOT_LIBRARY and _imports_face(tree)}
    assert offenders == set()


def test_the_face_check_can_fail():
    assert _imports_face(ast.parse("def f():\n    from keras_bam import qat\n"))
    assert _imports_face(ast.parse("import keras_bam\n"))
    assert not _imports_face(ast.parse("from keras_bam.layers import bam\n"))
    assert not _imports_face(ast.parse("import keras_bam.layers.bam\n"))


def _private_uses(tree):
    """Lines that import keras.src or read an underscore attribute of an
    object other than self/cls."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "keras.src"):
            found.append(node.lineno)
        elif isinstance(node, ast.Import) and any(
                a.name.startswith("keras.src") for a in node.names):
            found.append(node.lineno)
        elif (isinstance(node, ast.Attribute) and node.attr.startswith("_")
              and not node.attr.startswith("__") and node.attr not in NOT_KERAS
              and not (isinstance(node.value, ast.Name)
                       and node.value.id in ("self", "cls"))):
            found.append(node.lineno)
    return found


def test_private_keras_api_is_used_in_one_module_only():
    offenders = {name for name, tree in _sources()
                 if name != KERAS_INTERNALS and _private_uses(tree)}
    assert offenders == set()
    tree = ast.parse((ROOT / KERAS_INTERNALS).read_text())
    assert _private_uses(tree), "the check reads nothing: it could not fail"


def test_every_package_init_names_its_exports_and_none_star_imports():
    without_all = set()
    for name, tree in _sources():
        stars = [node.lineno for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)
                 and any(alias.name == "*" for alias in node.names)]
        assert stars == [], name
        if name.endswith("__init__.py"):
            assigned = [target.id for node in tree.body
                        if isinstance(node, ast.Assign)
                        for target in node.targets
                        if isinstance(target, ast.Name)]
            if "__all__" not in assigned:
                without_all.add(name)
    assert without_all == set()


def test_keras_pin_matches_the_versions_the_internals_are_tested_on():
    from keras_bam.rewrite import keras_internals

    setup = (ROOT / "setup.cfg").read_text()
    pins = re.findall(r"^\s*keras(>=[^\s#]+)", setup, flags=re.M)
    assert pins == [keras_internals.TESTED_KERAS_VERSIONS]
    import keras

    major, minor = (int(p) for p in keras.__version__.split(".")[:2])
    assert (3, 10) <= (major, minor) < (3, 16), keras.__version__
