"""Every notebook runs top to bottom offline, cleans up after itself, and stores outputs that can be published."""

import importlib.util
from pathlib import Path

import pytest

from pyterrier_shallow import datasets

FOLDER = Path(__file__).resolve().parent.parent / "notebooks"
_spec = importlib.util.spec_from_file_location("notebook_execute", FOLDER / "execute.py")
notebook_execute = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(notebook_execute)
NOTEBOOKS = notebook_execute.notebooks()


def _missing_collections(path: Path) -> list[str]:
    missing = []
    for name in notebook_execute.needed_collections(path):
        try:
            datasets.get(name)
        except FileNotFoundError:
            missing.append(name)
    return missing


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_stored_outputs_are_whole_and_carry_no_machine_paths(path):
    import nbformat

    assert notebook_execute.output_problems(nbformat.read(path, as_version=4)) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_offline_and_cleans_up(path, tmp_path):
    missing = _missing_collections(path)
    if missing:
        pytest.skip(f"{path.name} reads {', '.join(missing)}, which are not in the collections folder here")
    notebook, left = notebook_execute.execute(path, tmp_path)
    assert left == [], f"{path.name} left these in the temporary folder"
    assert notebook_execute.output_problems(notebook) == []


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no notebook"


def test_the_checks_find_paths_warnings_and_cells_never_run():
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("print(path)", execution_count=1, outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="/tmp/abc/model\n"),
            nbformat.v4.new_output("stream", name="stderr", text="x.py:3: UserWarning: careful\n"),
        ]),
        nbformat.v4.new_code_cell("1 + 1"),
    ])
    problems = notebook_execute.output_problems(notebook)
    assert len(problems) == 3
    assert any("path" in problem for problem in problems)
    assert any("warning" in problem for problem in problems)
    assert any("not been run" in problem for problem in problems)
