"""Generate `notebooks/*.ipynb` from their percent-format sources `notebooks/*.py`.

    python scripts/build_notebooks.py            # (re)write every .ipynb next to its .py source
    python scripts/build_notebooks.py --check    # exit 1 when an .ipynb is missing, stale or orphaned

The `.py` files are the source of truth (reviewable diffs, greppable, importable by linters); the
`.ipynb` files are generated, committed without outputs, and opened on Kaggle / Colab / Jupyter.

Percent format (the subset of jupytext's that the sources use):

    # %% [markdown]          a markdown cell; its lines are comments, "# " (or a lone "#") is removed
    # %%                     a code cell; its lines are copied as they are
    # %% tags=["parameters"] a code cell with cell tags (papermill's `parameters` tag marks the
                             defaults that a runner may override by inserting a cell after it)

Leading and trailing blank lines of a cell are dropped. Nothing but blank lines may precede the
first marker. Cell ids are `cell-NN` (the cell's position), so the output is byte-for-byte a
function of the source.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"

MARKER = re.compile(r"^# %%(?P<rest>.*)$")
MARKDOWN = re.compile(r"^\s*\[markdown\]\s*")
TAGS = re.compile(r"^\s*tags=(?P<tags>\[.*\])\s*$")

NOTEBOOK_METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python", "pygments_lexer": "ipython3"},
}


class FormatError(ValueError):
    """A source that is not valid percent format; the message names the file and line."""


@dataclasses.dataclass
class Cell:
    """One notebook cell: kind "code" | "markdown", its text, and its cell tags."""

    kind: str
    source: str
    tags: list[str] = dataclasses.field(default_factory=list)


def _strip_blank_edges(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _markdown_line(line: str, where: str) -> str:
    if line.strip() == "#" or not line.strip():
        return ""
    if not line.startswith("# "):
        raise FormatError(f"{where}: a markdown cell's lines must start with '# ' (got {line!r})")
    return line[2:]


def _parse_marker(rest: str, where: str) -> tuple[str, list[str]]:
    """The text after '# %%' -> (kind, tags)."""
    kind = "code"
    match = MARKDOWN.match(rest)
    if match:
        kind, rest = "markdown", rest[match.end():]
    if not rest.strip():
        return kind, []
    match = TAGS.match(rest)
    if not match:
        raise FormatError(f"{where}: unknown cell options {rest.strip()!r} (only [markdown] and tags=[...])")
    try:
        tags = json.loads(match.group("tags"))
    except json.JSONDecodeError:
        raise FormatError(f"{where}: tags must be a JSON list of strings, got {match.group('tags')}") from None
    if not all(isinstance(tag, str) for tag in tags):
        raise FormatError(f"{where}: tags must be a JSON list of strings, got {match.group('tags')}")
    return kind, tags


def parse_percent(text: str, name: str = "<source>") -> list[Cell]:
    """Percent-format source text -> cells, in order. Raises FormatError naming `name` and the line."""
    cells: list[Cell] = []
    current: tuple[str, list[str], int] | None = None  # (kind, tags, first line number)
    lines: list[str] = []

    def close() -> None:
        if current is None:
            return
        kind, tags, start = current
        body = _strip_blank_edges(lines)
        if kind == "markdown":
            body = [_markdown_line(line, f"{name}:{start + i}") for i, line in enumerate(body)]
        if not body:
            raise FormatError(f"{name}:{start}: empty {kind} cell")
        cells.append(Cell(kind, "\n".join(body), tags))

    for number, line in enumerate(text.splitlines(), start=1):
        match = MARKER.match(line)
        if match:
            close()
            kind, tags = _parse_marker(match.group("rest"), f"{name}:{number}")
            current, lines = (kind, tags, number + 1), []
        elif current is None:
            if line.strip():
                raise FormatError(f"{name}:{number}: text before the first '# %%' cell marker")
        else:
            lines.append(line)
    close()
    if not cells:
        raise FormatError(f"{name}: no cells (a cell starts with a '# %%' line)")
    return cells


def build_notebook(cells: list[Cell]):
    """Cells -> an nbformat v4 notebook without outputs (validated)."""
    import nbformat

    notebook = nbformat.v4.new_notebook(metadata=json.loads(json.dumps(NOTEBOOK_METADATA)))
    for index, cell in enumerate(cells):
        metadata = {"tags": list(cell.tags)} if cell.tags else {}
        if cell.kind == "markdown":
            new = nbformat.v4.new_markdown_cell(cell.source, metadata=metadata)
        else:
            new = nbformat.v4.new_code_cell(cell.source, metadata=metadata)
        new["id"] = f"cell-{index:02d}"
        notebook.cells.append(new)
    nbformat.validate(notebook)
    return notebook


def render(source: pathlib.Path) -> str:
    """The .ipynb text generated from the percent-format file `source`."""
    import nbformat

    cells = parse_percent(source.read_text(encoding="utf-8"), str(source))
    return nbformat.writes(build_notebook(cells)) + "\n"


def sources(folder: pathlib.Path = NOTEBOOKS) -> list[pathlib.Path]:
    """The notebook sources: `NN_name.py` files (other .py files, e.g. helpers, are not notebooks)."""
    return sorted(p for p in folder.glob("*.py") if re.match(r"^\d\d_", p.name))


def out_of_sync(folder: pathlib.Path = NOTEBOOKS) -> list[str]:
    """One line per problem: a missing or stale .ipynb, or an .ipynb without a source."""
    problems = []
    expected = set()
    for source in sources(folder):
        target = source.with_suffix(".ipynb")
        expected.add(target.name)
        if not target.exists():
            problems.append(f"{target}: missing (generate it from {source.name})")
        elif target.read_text(encoding="utf-8") != render(source):
            problems.append(f"{target}: differs from what {source.name} generates")
    for notebook in sorted(folder.glob("*.ipynb")):
        if notebook.name not in expected:
            problems.append(f"{notebook}: no percent-format source {notebook.with_suffix('.py').name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when any .ipynb is out of sync")
    parser.add_argument("--dir", type=pathlib.Path, default=NOTEBOOKS, help="folder of the sources (default: notebooks/)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = out_of_sync(args.dir)
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                print("run: python scripts/build_notebooks.py", file=sys.stderr)
                return 1
            print(f"{len(sources(args.dir))} notebooks in sync")
            return 0
        for source in sources(args.dir):
            target = source.with_suffix(".ipynb")
            text = render(source)
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                target.write_text(text, encoding="utf-8")
                print(f"wrote {target}")
    except FormatError as error:
        print(f"build_notebooks: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
