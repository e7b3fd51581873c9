"""Holding back what native libraries print.

PISA's C++ indexer logs each stage and counts percentages on the process's own standard output and error, which
redirecting Python's ``sys.stdout`` / ``sys.stderr`` never reaches.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import TextIO

_TAIL_CHARS = 4000


@contextlib.contextmanager
def native_output_held_back() -> Iterator[TextIO]:
    """Sends everything written to file descriptors 1 and 2 inside the block to a temporary file.

    Yields the stream that progress bars inside the block should write to (the terminal's standard error as it was,
    or ``sys.stderr`` itself where that is not file descriptor 2, as in a notebook). When the block raises, the
    tail of what was held back is written to that stream, so that nothing a failure explains is lost. While the
    block runs, other threads' native output is held back too.
    """
    try:
        python_stderr_is_fd2 = sys.stderr is not None and sys.stderr.fileno() == 2
    except (AttributeError, OSError, io.UnsupportedOperation):
        python_stderr_is_fd2 = False
    _flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    console = os.fdopen(os.dup(saved[2]), "w", buffering=1) if python_stderr_is_fd2 else sys.stderr
    with tempfile.TemporaryFile() as held:
        try:
            for fd in saved:
                os.dup2(held.fileno(), fd)
            yield console
        except BaseException:
            _restore(saved)
            held.seek(0)
            tail = held.read().decode("utf-8", "replace")[-_TAIL_CHARS:]
            if tail.strip():
                print(f"(the native library's last output)\n{tail}", file=console)
            raise
        finally:
            _restore(saved)
            if console is not sys.stderr:
                console.close()


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()


def _restore(saved: dict[int, int]) -> None:
    """Points file descriptors 1 and 2 back where they were (once; later calls do nothing)."""
    _flush()
    for fd, copy in list(saved.items()):
        os.dup2(copy, fd)
        os.close(copy)
        del saved[fd]
