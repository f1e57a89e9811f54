"""Atomic, durable outputs: write under a temporary name beside the target, fsync, rename on success.

A crash or a kill never leaves a truncated file under the final name, so
Snakemake (and a user) never mistakes a partial output for a finished one.

Temporary names are hidden and carry who wrote them:
``.STEM.tmp-HOST-PID-NONCE.SUFFIX`` for a file (the suffix kept: tools sniff
it; index companions such as ``.bai``/``.tbi`` share the name) and
``.NAME.tmp-HOST-PID-NONCE`` for a directory. ``HOST`` is this machine's host
name (:func:`host_name`), ``PID`` the writing process, ``NONCE`` 8 random hex
digits (two writers never share a name, not even processes of the same pid in
two containers).

The next attempt at an output deletes what killed runs left
(:func:`remove_stale_temps`), but only temporaries of *this* host whose process
is gone: on a file system shared by many nodes a pid means nothing on another
node, so temporaries of other hosts are never deleted automatically (one
untouched for :data:`FOREIGN_WARN_DAYS` days is logged once, so that a user
can delete it once no job on that host runs). Names of earlier versions
(``.STEM.tmp-PID.SUFFIX``, no host) are treated as this host's, as those
versions did: only finished or killed runs of an older version can have left
them, and running two versions on one results folder at once is not supported.

Limitation: processes that share a host name but not a PID namespace
(containers started with the host's name) look like one host; give each
container its own host name (the default of Docker and Podman).

Before the rename the finished temporary is fsynced (whatever wrote it:
pyBigWig, samtools, ``torch.save``), and after it the directory, so that after
a node crash, or on NFS, a final name never points at an empty or partial file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: a temporary of another host untouched this long is logged (once per process), never deleted
FOREIGN_WARN_DAYS = 7
#: index files written beside a temporary BAM/fragments file under the same name (``.x.tmp-T.bam.bai``)
COMPANIONS = r"(?:\.gz)?(?:\.bai|\.csi|\.tbi)?"
_TOKEN = re.compile(r"^(?:(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)-[0-9a-f]{8}|(?P<legacy>\d+))$")
_HOST_MAX = 63
#: errors of fsync on file systems that cannot sync (some FUSE and pseudo file systems): nothing to do there
_NO_SYNC = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EROFS, errno.EBADF}
_warned: set[str] = set()


def host_name() -> str:
    """Return this machine's host name as used in temporary names: ``[A-Za-z0-9_-]`` only, at most 63 characters.

    ``socket.gethostname()`` with every other character (the dots of a domain
    name, say) replaced by ``_``; a longer name keeps its first 54 characters
    and a hash of the whole.
    """
    raw = socket.gethostname() or "localhost"
    name = re.sub(r"[^A-Za-z0-9_-]", "_", raw)
    if len(name) > _HOST_MAX:
        name = name[:54] + "_" + hashlib.sha1(raw.encode()).hexdigest()[:8]
    return name


def _token() -> str:
    return f"{host_name()}-{os.getpid()}-{secrets.token_hex(4)}"


def temp_path_for(path: str | os.PathLike) -> Path:
    """Return a new temporary file name in the target's directory that keeps its suffix (tools sniff it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp-{_token()}{path.suffix}")


def temp_dir_for(path: str | os.PathLike) -> Path:
    """Return a new temporary directory name beside the directory ``path``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{_token()}")


def pid_alive(pid: int) -> bool:
    """Tell whether a process of this host runs under ``pid`` (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _owners(tokens: list[str]) -> list[tuple[str, int]] | None:
    """``(host, pid)`` of each ``.tmp-`` token of a name (a legacy pid-only token: this host); None if not ours."""
    here = host_name()
    owners = []
    for token in tokens:
        m = _TOKEN.match(token)
        if m is None:
            return None
        if m["legacy"]:
            owners.append((here, int(m["legacy"])))
        else:
            owners.append((m["host"], int(m["pid"])))
    return owners


def _temp_pattern(path: Path) -> re.Pattern:
    """Match the temporaries of ``path``: file form (suffix kept, maybe with an index companion) or directory form."""
    tokens = r"((?:\.tmp-[A-Za-z0-9_-]+)+)"
    stem, suffix, name = re.escape(path.stem), re.escape(path.suffix), re.escape(path.name)
    return re.compile(rf"^\.+(?:{stem}{tokens}{suffix}{COMPANIONS}|{name}{tokens})$")


def _warn_foreign(cand: str, hosts: set[str]) -> None:
    if cand in _warned:
        return
    with contextlib.suppress(OSError):
        age_days = (time.time() - os.lstat(cand).st_mtime) / 86400
        if age_days >= FOREIGN_WARN_DAYS:
            _warned.add(cand)
            log.warning(
                "%s: temporary output of a run on host %s, untouched for %.0f days; it is never deleted automatically "
                "(a job there may still be writing it): delete it if no job on that host is running",
                cand,
                ", ".join(sorted(hosts)),
                age_days,
            )


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temporaries of ``path`` left by killed processes of this host; return the deleted paths.

    A SIGKILL (a cluster's time limit, an out-of-memory kill) gives no chance to
    clean up, so the next attempt at the same output removes what the dead one
    left: files and directories whose every ``HOST-PID`` names this host
    (:func:`host_name`) and a pid that no longer runs. Temporaries of live
    processes are kept (a run in progress), and so are those of other hosts,
    whose pids cannot be checked from here (see the module docstring).
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return []
    pattern = _temp_pattern(path)
    here = host_name()
    removed = []
    with os.scandir(parent) as it:
        names = [e.name for e in it if e.name.startswith(".") and ".tmp-" in e.name]
    for name in names:
        m = pattern.match(name)
        if m is None:
            continue
        owners = _owners((m[1] or m[2]).split(".tmp-")[1:])
        if owners is None:
            continue
        cand = os.path.join(parent, name)
        foreign = {host for host, _ in owners if host != here}
        if foreign:
            _warn_foreign(cand, foreign)
            continue
        if any(pid_alive(pid) for _, pid in owners):
            continue
        if os.path.isdir(cand) and not os.path.islink(cand):
            shutil.rmtree(cand, ignore_errors=True)
            if os.path.lexists(cand):
                log.warning("%s: could not delete this temporary directory left by a killed run", cand)
                continue
            what = "directory"
        else:
            try:
                os.unlink(cand)
            except FileNotFoundError:  # another attempt on this host reaped it first
                continue
            what = "file"
        removed.append(Path(cand))
        log.info("removed %s, a temporary %s left by a killed run", cand, what)
    return removed


def _fsync(path: str | os.PathLike, directory: bool = False) -> None:
    """Flush ``path`` (a file, or a directory's entries) to stable storage; skipped where the file system cannot."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_SYNC:
            raise
        log.debug("%s: fsync not supported here (%s)", path, exc)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a finished file's data to stable storage (whatever process or library wrote it)."""
    _fsync(path)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory's entries (renames, new names) to stable storage."""
    _fsync(path, directory=True)


def fsync_tree(path: str | os.PathLike) -> None:
    """Flush every file under the directory ``path``, then each directory (deepest first)."""
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            fsync_file(os.path.join(root, name))
        for name in dirs:
            fsync_dir(os.path.join(root, name))
    fsync_dir(path)


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move the finished file ``tmp`` onto ``path`` durably: fsync it, rename it, fsync the directory."""
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)


def _check_parent(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(path.parent, os.W_OK):
        from atacdenoise.errors import InputError

        raise InputError(
            f"{path.parent}: output directory is not writable; fix its permissions or choose another results directory"
        )


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on normal exit fsync it and rename it onto ``path``, on error delete it.

    Stale temporaries of ``path`` (killed runs on this host) are deleted first.
    """
    path = Path(path)
    _check_parent(path)
    remove_stale_temps(path)
    tmp = temp_path_for(path)
    try:
        yield tmp
        commit(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new, empty temporary directory; on normal exit it replaces the directory ``path``, on error it goes.

    Every file in it is fsynced before the rename. An existing ``path`` is first
    moved aside under a temporary name and deleted after the rename, so a kill
    in between leaves the old version or the new one under ``path`` (and a
    temporary that the next attempt deletes). Stale temporaries of ``path``
    (killed runs on this host) are deleted first.
    """
    path = Path(path)
    _check_parent(path)
    remove_stale_temps(path)
    tmp = temp_dir_for(path)
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        old = None
        if path.is_dir() and not path.is_symlink():
            old = temp_dir_for(path)
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)
            raise
        fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def scratch_dir(prefix: str, directory: str | os.PathLike | None = None) -> Iterator[Path]:
    """Yield a new private (mode 0700) scratch directory in ``directory`` (None: the system's), deleted on exit.

    Named ``.PREFIX.tmp-HOST-PID-NONCE`` like the temporaries of outputs, so
    that the scratch directories of killed runs of this host (gigabytes of
    cut sites at genome scale) are deleted by the next run using ``prefix``
    in the same place, where :class:`tempfile.TemporaryDirectory` would leave
    them for ever.
    """
    directory = Path(directory if directory is not None else tempfile.gettempdir())
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(directory / prefix)
    tmp = temp_dir_for(directory / prefix)
    tmp.mkdir(mode=0o700)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
