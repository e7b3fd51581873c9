"""Inference does not load training code, and the command line parses without the heavy libraries."""

import subprocess
import sys

import pytest


def _passes_in_a_fresh_interpreter(code: str) -> None:
    """Runs ``code`` in a new Python process (nothing imported yet) and fails with its output if it fails."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_importing_the_package_does_not_import_training():
    code = (
        "import sys, pyterrier_shallow as pts\n"
        "pts.CrossEncoder, pts.BiEncoder, pts.PolyEncoder, pts.SparseCrossEncoder, pts.TextLoader\n"
        "pts.DocStateIndex, pts.PrecomputedCrossEncoder\n"
        "import pyterrier_shallow.gated, pyterrier_shallow.dense, pyterrier_shallow.bm25\n"
        "import pyterrier_shallow.gated.build, pyterrier_shallow.anchor, pyterrier_shallow.budget.sweep\n"
        "training = ('pyterrier_shallow.train', 'pyterrier_shallow.poly.train')\n"
        "loaded = [m for m in sys.modules if m.startswith(training)]\n"
        "print(loaded)\n"
        "assert not loaded, loaded\n"
    )
    _passes_in_a_fresh_interpreter(code)


def test_training_names_still_resolve():
    import pyterrier_shallow as pts
    from pyterrier_shallow.poly import train_codes

    assert callable(train_codes)
    assert hasattr(pts.train, "train")


def test_the_command_line_parses_without_torch_or_pyterrier():
    """``pyterrier-shallow --help`` and argument errors answer at once: parsing loads no heavy library."""
    code = (
        "import sys\n"
        "from pyterrier_shallow.cli import build_parser\n"
        "parser = build_parser()\n"
        "parser.parse_args(['train', '--out', 'x', '--loss', 'soft-label'])\n"
        "parser.parse_args(['sweep', 'bi-encoder:@2'])\n"
        "heavy = [m for m in ('torch', 'transformers', 'pyterrier', 'pandas', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    _passes_in_a_fresh_interpreter(code)


def test_the_loss_choices_are_the_losses():
    from pyterrier_shallow.train.cli_args import LOSS_NAMES
    from pyterrier_shallow.train.losses import LOSSES

    assert list(LOSS_NAMES) == sorted(LOSSES)


def test_lazy_names_resolve_and_list():
    import pyterrier_shallow as pts
    from pyterrier_shallow import CrossEncoder
    from pyterrier_shallow.cross_encoder import CrossEncoder as Defined

    assert CrossEncoder is Defined is pts.CrossEncoder
    assert set(pts.__all__) <= set(dir(pts))
    for name in pts.__all__:
        assert getattr(pts, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Missing'"):
        pts.Missing  # noqa: B018


def test_a_name_shared_with_its_submodule_stays_the_exported_function():
    code = (
        "import pyterrier_shallow.budget.sweep, pyterrier_shallow.datasets.vaswani\n"
        "import pyterrier_shallow.train.pseudo_queries\n"
        "from pyterrier_shallow.budget import sweep\n"
        "from pyterrier_shallow.datasets import vaswani\n"
        "from pyterrier_shallow.train import pseudo_queries\n"
        "assert callable(sweep) and callable(vaswani) and callable(pseudo_queries)\n"
    )
    _passes_in_a_fresh_interpreter(code)


@pytest.mark.parametrize(
    "package", ["", ".budget", ".datasets", ".dense", ".gated", ".poly", ".precomputed", ".sparse", ".train"]
)
def test_every_lazy_name_is_public_and_every_public_name_lazy(package):
    """``__all__`` stays literal for static tools; it must list exactly the names the package loads lazily."""
    import importlib

    module = importlib.import_module(f"pyterrier_shallow{package}")
    assert set(module.__all__) - {"__version__"} == set(module._EXPORTS)
