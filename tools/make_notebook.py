"""Write lesson.ipynb from docs/lesson.md, its one source: the prose as Markdown cells and each code
block as a code cell, in order, without outputs.

Usage: python -m tools.make_notebook [--check]   (--check: exit 1 if lesson.ipynb is not what it makes)
"""
import argparse
import json
import os
import re

from common import run_main
from tools import ROOT, write_or_check

LESSON = os.path.join(ROOT, "docs", "lesson.md")
NOTEBOOK = os.path.join(ROOT, "lesson.ipynb")


def cell(kind, text, number):
    """One notebook cell of kind 'markdown' or 'code' holding text."""
    lines = text.strip("\n").splitlines(keepends=True)
    made = {"cell_type": kind, "id": f"cell-{number}", "metadata": {}, "source": lines}
    return {**made, "execution_count": None, "outputs": []} if kind == "code" else made


def from_the_top(markdown):
    """The lesson's links, written from docs/, as they read from the notebook at the top level."""
    # First results.md -> docs/results.md, then ../README.md -> README.md (in this order, or the
    # second's result would be taken for a file of docs/ too).
    markdown = re.sub(r"\]\((?![a-z]+:|#)([\w-]+\.md)", r"](docs/\1", markdown)
    return re.sub(r"\]\(\.\./", "](", markdown)


def notebook_of(markdown):
    """The notebook (a dict in nbformat 4.5) of the lesson written in markdown."""
    pieces = re.split(r"^```python\n(.*?)^```\n", markdown, flags=re.S | re.M)
    cells = []
    for index, piece in enumerate(pieces):  # prose, code, prose, code, ..., prose
        kind = "code" if index % 2 else "markdown"
        text = piece if kind == "code" else from_the_top(piece)
        if text.strip():
            cells.append(cell(kind, text, len(cells) + 1))
    return {"cells": cells, "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}


def notebook_text():
    with open(LESSON, encoding="utf-8") as file:
        return json.dumps(notebook_of(file.read()), indent=1, ensure_ascii=False) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description="Make lesson.ipynb from docs/lesson.md.")
    parser.add_argument("--check", action="store_true",
                        help="only check that lesson.ipynb is up to date (default: write it)")
    args = parser.parse_args(argv)
    write_or_check(NOTEBOOK, notebook_text().encode("utf-8"), "docs/lesson.md", "tools.make_notebook",
                   args.check)

if __name__ == "__main__":
    run_main(main)
