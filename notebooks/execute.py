"""Runs the notebooks top to bottom and stores their outputs, after checking that the outputs can be published.

    python notebooks/execute.py                    # every notebook in this folder
    python notebooks/execute.py quickstart.ipynb   # some of them

A notebook's outputs are stored only when it ran offline without error, left nothing behind in the temporary folder,
printed no warnings, and shows no path of the machine it ran on. The test suite runs the same checks
(``tests/test_notebooks.py``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

FOLDER = Path(__file__).resolve().parent
NEEDS_COLLECTIONS = "needs_collections"
"""Notebook metadata key (under ``pyterrier_shallow``): the collections beyond the bundled Vaswani it reads."""

_MACHINE_PATH = re.compile(r"(/tmp/|/var/folders/|/work/|/root/|/home/|/Users/|site-packages|[A-Za-z]:\\\\)")
_WARNING = re.compile(r"\b\w*(Warning|Error)\b:")


def notebooks() -> list[Path]:
    """The notebooks of this folder, by name."""
    return sorted(FOLDER.glob("*.ipynb"))


def needed_collections(path: Path) -> list[str]:
    """The collections (other than the bundled Vaswani) that the notebook at ``path`` reads."""
    notebook = nbformat.read(path, as_version=4)
    return list(notebook.metadata.get("pyterrier_shallow", {}).get(NEEDS_COLLECTIONS, []))


def execute(path: Path, scratch: Path, *, timeout: int = 900) -> tuple[nbformat.NotebookNode, list[str]]:
    """Runs the notebook at ``path`` in its folder and returns it with its outputs, and what it left behind.

    The kernel gets ``scratch / "tmp"`` as its temporary folder and ``scratch / "cache"`` as the package's cache
    folder, with the Hugging Face hub offline.
    """
    temporary, cache = scratch / "tmp", scratch / "cache"
    temporary.mkdir(parents=True, exist_ok=True)
    saved = {name: os.environ.get(name) for name in ("TMPDIR", "PYTERRIER_SHALLOW_CACHE", "HF_HUB_OFFLINE")}
    os.environ.update(TMPDIR=str(temporary), PYTERRIER_SHALLOW_CACHE=str(cache), HF_HUB_OFFLINE="1")
    try:
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    # torch keeps its compile cache (torchinductor_<user>) in the temporary folder on purpose, shared by processes
    left = sorted(child.name for child in temporary.iterdir() if not child.name.startswith("torchinductor_"))
    return notebook, left


def output_problems(notebook: nbformat.NotebookNode) -> list[str]:
    """What keeps a notebook's stored outputs from being published: cells never run, warnings, machine paths."""
    problems = []
    for number, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type != "code":
            continue
        if cell.get("execution_count") is None:
            problems.append(f"cell {number} has not been run")
        for output in cell.get("outputs", []):
            text = _output_text(output)
            if output.get("output_type") == "error":
                problems.append(f"cell {number} ends in {output.get('ename')}: {output.get('evalue')}")
            if _WARNING.search(text) and output.get("name") == "stderr":
                problems.append(f"cell {number} prints a warning: {text.strip()[:200]}")
            match = _MACHINE_PATH.search(text)
            if match:
                start = max(0, match.start() - 60)
                problems.append(f"cell {number} shows a path of this machine: ...{text[start:match.end() + 60]}...")
    return problems


def _output_text(output: dict) -> str:
    parts = [output.get("text", "")]
    for kind, value in output.get("data", {}).items():
        if kind.startswith("text/"):
            parts.append(value if isinstance(value, str) else "".join(value))
    parts.append("\n".join(output.get("traceback", [])))
    return "\n".join(part if isinstance(part, str) else "".join(part) for part in parts)


def main(argv: list[str] | None = None) -> int:
    """Executes the named notebooks (default: all) and stores those whose outputs pass the checks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook file names in notebooks/ (default: all)")
    args = parser.parse_args(argv)
    paths = [FOLDER / name for name in args.names] if args.names else notebooks()
    failed = 0
    for path in paths:
        with tempfile.TemporaryDirectory(prefix="notebook-") as scratch:
            try:
                notebook, left = execute(path, Path(scratch))
            except CellExecutionError as err:
                failed += 1
                print(f"{path.name}: not stored, a cell failed\n{err}", file=sys.stderr)
                continue
        problems = output_problems(notebook) + [f"left behind in the temporary folder: {name}" for name in left]
        if problems:
            failed += 1
            print(f"{path.name}: not stored\n  " + "\n  ".join(problems), file=sys.stderr)
            continue
        nbformat.write(notebook, path)
        print(f"{path.name}: stored")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
