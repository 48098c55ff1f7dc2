"""The package's layering, read from the source: who may import whom, who
may speak in flags, who may print."""

import ast
import pathlib
import re

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_bam"
ROOT = PACKAGE.parent
# Test helpers inside the package (pytest's doctest namespace) are no library.
NOT_LIBRARY = {"conftest.py"}


def modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name not in NOT_LIBRARY)


def imported(path):
    """Every module name an `import` or `from ... import` statement names
    (with `from a import b`, both `a` and `a.b`)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def part(path):
    """'export', 'qat', 'commands', ... for a file of the package."""
    relative = path.relative_to(PACKAGE).parts
    return relative[0].removesuffix(".py")


def test_no_library_module_imports_the_package_face():
    offenders = [str(p.relative_to(ROOT)) for p in modules()
                 if "keras_bam" in imported(p) and p.name != "__init__.py"]
    offenders += [str(p.relative_to(ROOT)) for p in modules()
                  if p.name == "__init__.py" and p.parent != PACKAGE
                  and "keras_bam" in imported(p)]
    assert offenders == []


@pytest.mark.parametrize("library, forbidden", [
    ("export", ("keras_bam.qat", "keras_bam.training", "keras_bam.commands")),
    ("qat", ("keras_bam.training", "keras_bam.commands", "keras_bam.export.exporter")),
    ("training", ("keras_bam.export", "keras_bam.qat", "keras_bam.commands")),
    ("data", ("keras_bam.export", "keras_bam.qat", "keras_bam.training",
              "keras_bam.commands")),
])
def test_dependencies_point_one_way(library, forbidden):
    """Only the commands combine training, export and QAT; QAT uses the
    export library's converter, and the export library never uses QAT."""
    found = {}
    for path in modules():
        if part(path) != library:
            continue
        bad = sorted(n for n in imported(path)
                     if any(n == f or n.startswith(f + ".") for f in forbidden))
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    assert found == {}


def test_only_the_commands_speak_in_flags_and_print():
    """argparse and print() belong to the command layer (and to the QAT
    worker, a child process with its own command line)."""
    allowed = {"commands"}
    # child-process entry points: they report to their parent on stdout
    children = {"qat/worker.py", "export/litert.py", "export/clients_worker.py",
                "export/metadata.py"}
    offenders = []
    for path in modules():
        relative = str(path.relative_to(PACKAGE))
        if part(path) in allowed or relative in children:
            continue
        tree = ast.parse(path.read_text())
        if "argparse" in imported(path):
            offenders.append(f"{relative}: argparse")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "print"):
                offenders.append(f"{relative}:{node.lineno}: print")
    assert offenders == []


def test_scripts_are_thin():
    """export/ and examples/ parse nothing: each calls a command's main()."""
    for script in sorted((ROOT / "export").glob("*.py")) + sorted(
            (ROOT / "examples").glob("*.py")):
        names = imported(script)
        assert "argparse" not in names, script
        ours = {n for n in names if n.startswith("keras_bam")}
        mains = {n for n in ours if n.startswith("keras_bam.commands.")
                 and n.endswith(".main")}
        assert len(mains) == 1, (script, names)
        assert ours == mains | {n.removesuffix(".main") for n in mains}, (script, names)


def test_scripts_start_alike():
    """Every script mutes TensorFlow's start-up lines with the same code (it
    must run before `import keras_bam`, so it cannot live in the package);
    alike, the fresh-process run of export/to_tflite.py in
    tests/export/test_export.py checks it for all of them."""
    scripts = sorted((ROOT / "export").glob("*.py")) + sorted(
        (ROOT / "examples").glob("*.py"))
    starts = {}
    for script in scripts:
        text = script.read_text()
        code = text[text.index("\nimport os\n"):]
        starts.setdefault(re.sub(r"keras_bam\.commands\.\w+", "COMMAND", code),
                          []).append(script.name)
    assert len(scripts) == 7 and len(starts) == 1, list(starts.values())


def test_the_commands_cover_every_script():
    from keras_bam.commands import ablation, attention, export, plot_training, train

    for command in (ablation, attention, export, plot_training, train):
        parser = command.build_parser()
        assert parser.prog.startswith("python "), command
        script = ROOT / parser.prog.split()[1]
        assert script.is_file(), script
