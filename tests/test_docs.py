"""The documentation stays readable: a short README, lines of at most 120 characters, and relative
markdown links that point to files of the repository. Fast, no network, no package import."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README_MAX_LINES = 250
MAX_WIDTH = 120
# `](target)` or `](target "title")`; the target ends at whitespace or the closing parenthesis
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "config" / "README.md"]


def relative_links(text: str) -> list[str]:
    """Link targets that name a file of the repository (no scheme, no mailto, no in-page anchor)."""
    targets = (m.group(1) for m in LINK.finditer(text))
    return [t for t in targets if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", t) and not t.startswith("#")]


def overlong_lines(path: Path) -> list[str]:
    return [
        f"{path.name}:{n}: {len(line)} characters"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if len(line) > MAX_WIDTH
    ]


def broken_links(path: Path) -> list[str]:
    return [
        f"{path.name}: ]({target}): {target.split('#', 1)[0]} does not exist"
        for target in relative_links(path.read_text(encoding="utf-8"))
        if not (path.parent / target.split("#", 1)[0]).exists()
    ]


def test_the_documents_exist():
    for path in doc_files():
        assert path.is_file(), path
    assert len(doc_files()) > 3  # docs/*.md found


def test_readme_is_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_lines_are_at_most_120_characters(path):
    assert not overlong_lines(path), "\n".join(overlong_lines(path))


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_to_existing_files(path):
    assert not broken_links(path), "\n".join(broken_links(path))


def test_the_checks_catch_what_they_check(tmp_path):
    """The helpers find an overlong line and a missing link target, and accept the forms that are fine."""
    (tmp_path / "there.md").write_text("x\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "y" * MAX_WIDTH + "\n" + "x" * (MAX_WIDTH + 1) + "\n"
        "[a](there.md) [b](there.md#part) [c](missing.md#part) [d](https://example.org/x) [e](#top)\n"
    )
    assert overlong_lines(doc) == [f"doc.md:2: {MAX_WIDTH + 1} characters"]
    assert relative_links(doc.read_text()) == ["there.md", "there.md#part", "missing.md#part"]
    assert broken_links(doc) == ["doc.md: ](missing.md#part): missing.md does not exist"]


def test_every_row_of_the_fault_table_is_a_test():
    """docs/testing.md's fault-injection table names a test per row; each exists (a renamed or deleted test
    fails here until the table follows)."""
    text = (REPO / "docs" / "testing.md").read_text(encoding="utf-8")
    section = text.split("## Fault injection", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"^- \*\*.+?\*\*\s+\(`(test_\w+\.py)::(\w+)", section, re.M | re.S)
    assert len(named) >= 20, named
    for module, name in named:
        assert f"def {name}(" in (REPO / "tests" / module).read_text(encoding="utf-8"), (module, name)
