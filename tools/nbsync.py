"""Build the course notebooks from their readable sources.

    python tools/nbsync.py          # notebooks/src/NN_name.py -> notebooks/NN_name.ipynb
    python tools/nbsync.py --check  # exit 1 if a notebook is out of date (the tests run this)

Sources use the jupytext "percent" format, so `jupytext --sync` works too: `# %%` starts a code
cell, `# %% [markdown]` a markdown cell (each line prefixed with "# "), and `# %% tags=["parameters"]`
tags a cell. Notebooks are written without outputs, with the python3 kernelspec.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SRC, OUT = ROOT / "notebooks" / "src", ROOT / "notebooks"
HEADER = re.compile(r"^# %%(?P<md> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")


def parse(text: str) -> list:
    cells, kind, tags, lines = [], None, [], []

    def flush():
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in body.splitlines())
        if kind:
            cell = nbformat.v4.new_markdown_cell(body) if kind == "markdown" else nbformat.v4.new_code_cell(body)
            if tags:
                cell.metadata["tags"] = tags
            cells.append(cell)

    for line in text.splitlines():
        match = HEADER.match(line)
        if match:
            flush()
            kind = "markdown" if match["md"] else "code"
            tags, lines = json.loads(match["tags"]) if match["tags"] else [], []
        elif kind:
            lines.append(line)
    flush()
    return cells


def build(src: Path) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = parse(src.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb.cells):
        cell.id = f"{src.stem[:2]}-{i:03d}"  # stable ids: rebuilding gives the same file
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}, "colab": {"provenance": []}, "accelerator": "GPU"}
    return nbformat.writes(nb) + "\n"


def main(argv: list[str]) -> int:
    stale = []
    for src in sorted(SRC.glob("[0-9][0-9]_*.py")):
        target, text = OUT / f"{src.stem}.ipynb", build(src)
        if "--check" in argv:
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                stale.append(target.name)
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(ROOT)}")
    if stale:
        print(f"out of date (run python tools/nbsync.py): {', '.join(stale)}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
