"""Atomic outputs: write to a temporary file beside the target, rename on success.

A crash or a kill never leaves a truncated file under the final name, so
Snakemake (and a user) never mistakes a partial output for a finished one.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


def temp_path_for(path: str | os.PathLike) -> Path:
    """Return a unique temporary name in the target's directory that keeps its suffix (tools sniff it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete temporary files of ``path`` left by killed processes (their pid is no longer running).

    A SIGKILL (a cluster's time limit, an out-of-memory kill) gives no chance to clean up, so the
    next attempt at the same output removes what the dead one left. Temporaries of live processes
    are kept: on one machine they belong to a run still in progress. Returns the deleted paths.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(r"^\.+" + re.escape(path.stem) + r"\.tmp-(\d+)(?:\.tmp-\d+)*" + re.escape(path.suffix) + "$")
    removed = []
    for cand in glob.glob(os.path.join(glob.escape(str(path.parent)), ".*" + glob.escape(path.stem) + ".tmp-*")):
        m = pattern.match(os.path.basename(cand))
        if m and not _alive(int(m.group(1))):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(cand)
                removed.append(Path(cand))
                log.info("removed %s, a temporary file left by a killed run", cand)
    return removed


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on normal exit rename it onto ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(path.parent, os.W_OK):
        from atacdenoise.errors import InputError

        raise InputError(
            f"{path.parent}: output directory is not writable; fix its permissions or choose another results directory"
        )
    remove_stale_temps(path)
    tmp = temp_path_for(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
