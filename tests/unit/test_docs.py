"""The README fits a first visit and links only to what exists; the guides in docs/ build as a site with MkDocs in
strict mode (a broken link or a page missing from the navigation fails it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

import streams

ROOT = Path(streams.__file__).resolve().parents[1]
README_WORDS = 1_500


def test_the_readme_fits_a_first_visit_and_its_links_resolve() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.split()) <= README_WORDS
    targets = re.findall(r"\]\(([^)#]+)\)", text)
    assert targets
    missing = [t for t in targets if not t.startswith("http") and not (ROOT / t).exists()]
    assert not missing, f"README links to {missing}"


def test_the_guides_build_as_a_site_in_strict_mode(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    assert {page for entry in nav for page in entry.values()} == {p.name for p in (ROOT / "docs").glob("*.md")}


def test_the_reference_is_what_the_code_says() -> None:
    from streams.cli.reference import render

    assert (ROOT / "docs" / "reference.md").read_text() == render(), \
        "docs/reference.md is stale: python -m streams.cli.reference > docs/reference.md"


def test_every_java_line_in_the_guides_is_in_an_example_the_tests_run() -> None:
    """The guides' Java is cut from tests/integration/java/*Example.java, which the integration tests run: a line
    changed in one and not the other fails here ("// ..." lines stand for what the guide leaves out)."""
    examples = "\n".join(path.read_text() for path in (ROOT / "tests/integration/java").glob("*Example.java"))
    lines = {line.strip() for line in examples.splitlines()}
    for guide in sorted((ROOT / "docs").glob("*.md")):
        for block in re.findall(r"```java\n(.*?)```", guide.read_text(), re.S):
            for line in block.splitlines():
                if line.strip() and not line.strip().startswith("// ..."):
                    assert line.strip() in lines, f"docs/{guide.name}: not in a Java example the tests run: {line}"
