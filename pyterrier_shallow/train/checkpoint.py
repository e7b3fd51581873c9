"""Checkpoints to resume training: the model, its tokenizer and the trainer's state, written atomically."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import torch

from .._hf import quiet_transformers
from .._io import atomic_write_bytes, atomic_write_dir, readable_dir
from ..anchor import Anchor

STATE_FILE = "trainer_state.pt"


def save_model_dir(path: str | os.PathLike, model, tokenizer, *, state: dict | None = None,
                   anchor: Anchor | None = None) -> None:
    """Saves ``model`` and ``tokenizer`` with ``save_pretrained`` (plus ``state`` when given) into ``path``, atomically.

    Args:
        path: The directory (replaced as a whole only once the new one is complete).
        model: The model.
        tokenizer: Its tokenizer.
        state: The trainer's state (optimizer, scheduler, step, curves...), saved with ``torch.save``.
        anchor: The model's anchor, saved as ``anchor.json`` (an anchored model).
    """

    def fill(folder: Path) -> None:
        with quiet_transformers():
            model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        if anchor is not None:
            anchor.save(folder)
        if state is not None:
            buffer = io.BytesIO()
            torch.save(state, buffer)
            atomic_write_bytes(folder / STATE_FILE, buffer.getvalue())

    atomic_write_dir(path, fill)


def load_state(path: str | os.PathLike) -> tuple[Path, dict] | None:
    """Returns the checkpoint folder at ``path`` (or the copy an interrupted save left) and its state, or ``None``."""
    folder = readable_dir(path)
    if folder is None or not (folder / STATE_FILE).is_file():
        return None
    return folder, torch.load(folder / STATE_FILE, map_location="cpu", weights_only=False)


def publish_files(source: str | os.PathLike, output_dir: str | os.PathLike) -> None:
    """Copies every file of ``source`` into ``output_dir``, each through a temporary name and a rename."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for file in sorted(Path(source).iterdir()):
        if file.is_file() and file.name != STATE_FILE:
            tmp = output_dir / f".{file.name}.tmp"
            shutil.copyfile(file, tmp)
            os.replace(tmp, output_dir / file.name)
