"""Inference does not load training code."""

import subprocess
import sys


def test_importing_the_package_does_not_import_training():
    code = (
        "import sys, pyterrier_shallow as pts\n"
        "pts.CrossEncoder, pts.BiEncoder, pts.PolyEncoder, pts.SparseCrossEncoder, pts.TextLoader\n"
        "import pyterrier_shallow.gated, pyterrier_shallow.dense, pyterrier_shallow.bm25\n"
        "training = ('pyterrier_shallow.train', 'pyterrier_shallow.poly.train')\n"
        "loaded = [m for m in sys.modules if m.startswith(training)]\n"
        "print(loaded)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_training_names_still_resolve():
    import pyterrier_shallow as pts
    from pyterrier_shallow.poly import train_codes

    assert callable(train_codes)
    assert hasattr(pts.train, "train")
