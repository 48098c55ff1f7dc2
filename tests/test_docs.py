"""The README and the pages under docs/: size, links, and the code they show.

Each check is a function of the repository root that returns the problems it
finds, so the same functions are run on the repository (expecting none) and
on small broken copies in a temporary folder (expecting each problem to be
found): a check that cannot fail is no check.

Every ```python block in README.md and docs/*.md is executed, seeded, in a
temporary folder. A block that must not run (it downloads weights, say) is
preceded by a line `<!-- not run: why -->`; it is still compiled. A
`print(...)` line that ends in a comment states what it prints: the comment
must be one of the printed lines.
"""

import contextlib
import io
import pathlib
import re

import keras
import pytest

MAX_README_LINES = 300

# Text that points outside the repository: absolute paths on the machines
# the project was written on, the sibling folder beside the checkout, files.
OUTSIDE_PATTERNS = (
    re.compile(r"(?<![\w.])/(?:work|home|Users|root|tmp)/"),
    re.compile(r"\.\./shared\b"),
    re.compile(r"file://"),
)

_FENCE = re.compile(r"^(```|~~~)(.*)$")
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s*\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_HTML_LINK = re.compile(r"<(?:img|a|source)\b[^>]*?\b(?:src|href)\s*=\s*\"([^\"]+)\"", re.I)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_NOT_RUN = re.compile(r"^<!--\s*not run:\s*(\S.*?)\s*-->$")
_PRINT_WITH_OUTPUT = re.compile(r"^\s*print\(.*\)\s+#\s?(.+?)\s*$")


def _repository_root():
    for folder in pathlib.Path(__file__).resolve().parents:
        if (folder / "README.md").is_file() and (folder / "setup.cfg").is_file():
            return folder
    raise FileNotFoundError(
        f"No folder above {__file__} holds both README.md and setup.cfg; "
        "tests/test_docs.py expects to sit inside the keras_bam checkout.")


ROOT = _repository_root()


def documentation_files(root):
    """README.md and every Markdown page under docs/, sorted."""
    root = pathlib.Path(root)
    return [root / "README.md"] + sorted((root / "docs").glob("*.md"))


def _prose(text, keep_inline_code=False):
    """The text without fenced code blocks (and inline code, unless kept),
    lines kept."""
    lines, fence = [], None
    for line in text.splitlines():
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            lines.append("")
        elif fence is not None:
            if line.startswith(fence) and not line.strip(fence).strip():
                fence = None
            lines.append("")
        else:
            lines.append(line if keep_inline_code else _INLINE_CODE.sub("", line))
    return "\n".join(lines)


def link_targets(text):
    """Every link and image target in Markdown prose, in order."""
    prose = _prose(text)
    targets = []
    for pattern in (_LINK, _REFERENCE_LINK, _HTML_LINK):
        targets += [match.group(1) for match in pattern.finditer(prose)]
    return targets


def heading_anchor(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped,
    spaces to hyphens."""
    heading = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return heading.replace(" ", "-")


def anchors(path):
    text = _prose(path.read_text(), keep_inline_code=True)
    return {heading_anchor(h) for h in _HEADING.findall(text)}


def link_problems(root):
    """Relative links and images that do not lead to a file of the
    repository, or to a heading of it; links that leave the repository."""
    root = pathlib.Path(root).resolve()
    problems = []
    for page in documentation_files(root):
        name = page.relative_to(root)
        for target in link_targets(page.read_text()):
            if target.startswith("/") or target.lower().startswith("file:"):
                problems.append(f"{name}: {target!r} is an absolute path; "
                                "link relative to the page instead")
                continue
            if _SCHEME.match(target):
                continue  # a web address
            path_part, _, anchor = target.partition("#")
            resolved = (page.parent / path_part).resolve() if path_part else page
            if not resolved.is_relative_to(root):
                problems.append(f"{name}: {target!r} leads outside the repository")
            elif not resolved.exists():
                problems.append(f"{name}: {target!r} does not exist")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                problems.append(f"{name}: {target!r} names no heading of "
                                f"{resolved.relative_to(root)}")
    return problems


def outside_reference_problems(root):
    """Mentions of paths outside the repository, code blocks included."""
    root = pathlib.Path(root)
    problems = []
    for page in documentation_files(root):
        for number, line in enumerate(page.read_text().splitlines(), 1):
            for pattern in OUTSIDE_PATTERNS:
                if pattern.search(line):
                    problems.append(f"{page.relative_to(root)}:{number}: "
                                    f"{line.strip()!r} refers outside the repository")
                    break
    return problems


def unlinked_page_problems(root):
    """Pages under docs/ that README.md does not link to."""
    root = pathlib.Path(root).resolve()
    readme = root / "README.md"
    linked = {(root / target.partition("#")[0]).resolve()
              for target in link_targets(readme.read_text())
              if not _SCHEME.match(target) and not target.startswith("/")}
    return [f"docs/{page.name} is not linked from README.md"
            for page in sorted((root / "docs").glob("*.md"))
            if page.resolve() not in linked]


def readme_length_problems(root):
    lines = len((pathlib.Path(root) / "README.md").read_text().splitlines())
    if lines > MAX_README_LINES:
        return [f"README.md has {lines} lines; at most {MAX_README_LINES} are "
                "allowed: move details to a page under docs/"]
    return []


def python_blocks(path):
    """The ```python blocks of a page: (first line number, code, reason not to
    run it or None)."""
    blocks, code, start, reason, previous = [], None, 0, None, ""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if code is None:
            if re.match(r"^```python\s*$", line):
                code, start = [], number + 1
                not_run = _NOT_RUN.match(previous.strip())
                reason = not_run.group(1) if not_run else None
            previous = line
        elif line.startswith("```"):
            blocks.append((start, "\n".join(code) + "\n", reason))
            code, previous = None, line
        else:
            code.append(line)
    if code is not None:
        raise ValueError(f"{path}: the ```python block from line {start} is not closed")
    return blocks


def stated_outputs(code):
    """The outputs that `print(...)  # OUTPUT` lines of a block promise."""
    return [match.group(1) for line in code.splitlines()
            if (match := _PRINT_WITH_OUTPUT.match(line))]


def output_problems(code, printed):
    """Stated outputs missing from the printed lines (in order)."""
    lines = [line.rstrip() for line in printed.splitlines()]
    problems, position = [], 0
    for expected in stated_outputs(code):
        try:
            position = lines.index(expected, position) + 1
        except ValueError:
            problems.append(f"the block says it prints {expected!r}; it printed "
                            f"{lines[position:]!r}")
    return problems


def _all_blocks():
    for page in documentation_files(ROOT):
        for start, code, reason in python_blocks(page):
            yield pytest.param(page, start, code, reason,
                               id=f"{page.relative_to(ROOT)}:{start}")


# The repository's documentation.


def test_readme_is_at_most_300_lines():
    assert readme_length_problems(ROOT) == []


def test_links_and_images_point_at_files_that_exist():
    assert link_problems(ROOT) == []


def test_nothing_refers_outside_the_repository():
    assert outside_reference_problems(ROOT) == []


def test_every_docs_page_is_linked_from_the_readme():
    assert unlinked_page_problems(ROOT) == []


def test_the_readme_has_code_to_run():
    """The blocks below are the README's own examples: losing them all (a
    broken fence, say) must not pass silently."""
    runnable = [b for b in python_blocks(ROOT / "README.md") if b[2] is None]
    assert len(runnable) >= 2
    assert stated_outputs("".join(code for _, code, _ in runnable))


@pytest.mark.parametrize("page, start, code, reason", list(_all_blocks()))
def test_python_block_runs(page, start, code, reason, tmp_path, monkeypatch):
    name = f"{page.relative_to(ROOT)}, block at line {start}"
    compiled = compile(code, name, "exec")  # every block must at least compile
    if reason is not None:  # e.g. it needs the authors' checkpoint file
        assert reason.strip(), f"{name}: say why the block is not run"
        return
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(0)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compiled, {"__name__": "__main__"})
    assert output_problems(code, printed.getvalue()) == []


# The checks themselves, on small broken copies.


def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


GOOD = {
    "README.md": "# Title\n\n## Two words\n\nSee [the page](docs/page.md#a-heading) "
                 "and ![figure](docs/figure.png) and [a site](https://example.org).\n",
    "docs/page.md": "# Page\n\n## A heading\n\nBack to the [README](../README.md#two-words).\n",
    "docs/figure.png": "not really a png",
}


def test_checks_pass_a_good_tree(tmp_path):
    _write(tmp_path, GOOD)
    assert link_problems(tmp_path) == []
    assert outside_reference_problems(tmp_path) == []
    assert unlinked_page_problems(tmp_path) == []
    assert readme_length_problems(tmp_path) == []


@pytest.mark.parametrize("page, text, found", [
    ("README.md", "[gone](docs/missing.md)", "does not exist"),
    ("README.md", "![gone](docs/missing.png)", "does not exist"),
    ("README.md", '<img src="docs/missing.png">', "does not exist"),
    ("README.md", "[gone][ref]\n\n[ref]: docs/missing.md", "does not exist"),
    ("docs/page.md", "[self](#no-such-heading)", "names no heading"),
    ("README.md", "[page](docs/page.md#no-such-heading)", "names no heading"),
    ("docs/page.md", "[up](../../outside.md)", "leads outside the repository"),
    ("docs/page.md", "[shared](../../shared/notes.md)", "leads outside the repository"),
    ("docs/page.md", "[abs](/work/main/README.md)", "absolute path"),
])
def test_link_check_finds_broken_links(tmp_path, page, text, found):
    _write(tmp_path, {**GOOD, page: GOOD[page] + text + "\n"})
    problems = link_problems(tmp_path)
    assert len(problems) == 1 and found in problems[0], problems


def test_links_inside_code_are_not_links(tmp_path):
    _write(tmp_path, {**GOOD, "docs/page.md": GOOD["docs/page.md"]
                      + "`[x](missing.md)`\n\n```\n[y](gone.md)\n```\n"})
    assert link_problems(tmp_path) == []


@pytest.mark.parametrize("line", [
    "read /work/shared/notes.md first",
    "see ../shared/guide.md",
    "python /home/someone/keras_bam/export/to_tflite.py",
    "[a file](file:///tmp/x.md)",
])
def test_outside_reference_check_finds_them(tmp_path, line):
    _write(tmp_path, {**GOOD, "docs/page.md": f"# Page\n\n```\n{line}\n```\n"})
    problems = outside_reference_problems(tmp_path)
    assert len(problems) == 1 and "docs/page.md:4" in problems[0], problems


def test_unlinked_page_check_finds_one(tmp_path):
    _write(tmp_path, {**GOOD, "docs/orphan.md": "# Orphan\n"})
    assert unlinked_page_problems(tmp_path) == ["docs/orphan.md is not linked from README.md"]


def test_length_check_finds_a_long_readme(tmp_path):
    _write(tmp_path, {**GOOD, "README.md": GOOD["README.md"] + "line\n" * MAX_README_LINES})
    problems = readme_length_problems(tmp_path)
    assert len(problems) == 1 and "at most 300" in problems[0]


def test_blocks_and_their_outputs_are_read(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n```python\nprint(1 + 1)  # 2\n```\n"
                    "<!-- not run: needs a download -->\n```python\nimport x\n```\n"
                    "```\nnot python\n```\n")
    blocks = python_blocks(page)
    assert blocks == [(3, "print(1 + 1)  # 2\n", None),
                      (7, "import x\n", "needs a download")]
    assert stated_outputs(blocks[0][1]) == ["2"]
    assert output_problems(blocks[0][1], "2\n") == []
    assert output_problems(blocks[0][1], "3\n") != []
    assert output_problems("print(a)  # x\nprint(b)  # y\n", "y\nx\n") != []  # order counts
