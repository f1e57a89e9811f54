"""Logging set-up and progress bars shared by every subcommand."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(verbosity: int = 0) -> None:
    """Log to stderr with timestamps; -1 quiet (warnings), 0 info, 1+ debug."""
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    logging.basicConfig(level=level, format=FORMAT, datefmt="%Y-%m-%d %H:%M:%S", stream=sys.stderr, force=True)


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar on stderr; sparse updates when stderr is a log file, off with --quiet."""
    quiet = logging.getLogger().getEffectiveLevel() > logging.INFO
    tty = sys.stderr.isatty()
    return iter(
        tqdm(
            iterable,
            total=total,
            desc=desc,
            unit=unit,
            disable=quiet,
            mininterval=0.5 if tty else 30.0,
            file=sys.stderr,
            dynamic_ncols=tty,
        )
    )
