"""Every relative link of the README, the results pages (docs/results/) and the recipes' READMEs points
to a file that exists and, with a ``#anchor``, to a heading of that file (GitHub's heading slugs)."""

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _documents():
    paths = [os.path.join(ROOT, "README.md")]
    paths += glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
    paths += glob.glob(os.path.join(ROOT, "recipes", "**", "README.md"), recursive=True)
    return sorted(paths)


def _prose_lines(path):
    """The file's lines outside fenced code blocks."""
    inside = False
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            if line.startswith("```"):
                inside = not inside
            elif not inside:
                yield line.rstrip("\n")


def heading_anchors(path):
    """GitHub's anchors of a markdown file's headings (lower case, punctuation dropped, spaces to
    hyphens, a repeated heading numbered ``-1``, ``-2``...)."""
    seen, anchors = {}, set()
    for line in _prose_lines(path):
        if re.match(r"#{1,6} ", line):
            base = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            count = seen.get(base, 0)
            seen[base] = count + 1
            anchors.add(base if count == 0 else f"{base}-{count}")
    return anchors


def test_heading_anchors_follow_github(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A: b (c)\n## Results\n```\n# not a heading\n```\n### Results\n")
    assert heading_anchors(str(page)) == {"a-b-c", "results", "results-1"}


@pytest.mark.parametrize("document", _documents(), ids=lambda p: os.path.relpath(p, ROOT))
def test_relative_links_resolve(document):
    broken = []
    for line in _prose_lines(document):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked here (no internet)
                continue
            path, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(document), path)) if path else document
            if not os.path.exists(resolved):
                broken.append(f"{target}: no such file")
            elif anchor and resolved.endswith(".md") and anchor not in heading_anchors(resolved):
                broken.append(f"{target}: no such heading")
    assert not broken, f"{os.path.relpath(document, ROOT)}: " + "; ".join(broken)
