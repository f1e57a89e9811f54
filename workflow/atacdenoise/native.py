"""Small C libraries compiled for the machine they run on, cached, loaded with ctypes.

Why: a few inner loops (the model's convolutions on a CPU) are arithmetic-bound
in ways NumPy cannot vectorise; a page of C, compiled with ``-O3
-march=native``, runs them at the machine's speed.

Where the C lives: in ``.c`` files beside the Python module that loads them
(e.g. ``atacdenoise/model/cpuconv_direct.c``), shipped as package data. Each
file is plain C; its parameters come as ``-D`` defines (``-DCOB=5``), which
the loader declares next to the code that depends on them; the file stops
at an ``#error`` when one is missing.

How: :func:`build` compiles a file on first use with the system C compiler
(``cc``, else ``gcc`` or ``clang``; ``$CC`` overrides) into a cache directory
(``$ATACDENOISE_CACHE``, else ``$XDG_CACHE_HOME/atacdenoise`` or
``~/.cache/atacdenoise``, created with mode 0700), keyed by the file's
content, the defines, the compiler and its version, the flags and the CPU's
feature flags. The library is compiled under a temporary name in that
directory and moved into place with :func:`os.replace`, so concurrent jobs on
a shared cache each see a whole file.

Why first use, not install time: ``-march=native`` must match the CPU that
runs the code, and a cluster's nodes, which share the home directory (and the
installed package), have different CPUs; a library built at install time on a
login node could crash with an illegal instruction on an older compute node,
or leave a newer one's vector units idle. Each CPU type builds its own, once.

Ownership rule: a cached library is code this process will run, so it is
loaded only when the file and its directory are owned by the current user and
writable by nobody else (no group or world write bit), and the file is a
regular file (not a symbolic link). Otherwise it is not loaded: a warning names
the rejected path and why, and the library is rebuilt into a private temporary
directory (:func:`tempfile.mkdtemp`, mode 0700) and loaded from there.

Failures: without a compiler, or when a part is turned off (:func:`off`),
the caller gets None (logged) and uses its pure-Python/PyTorch path. A
compiler that fails on our C is a bug of ours, not a missing feature: it is
logged as an error with the compiler's first and last lines; the run still
falls back, and the tests fail (``tests/test_native.py``). In CI
(``$ATACDENOISE_CI`` set, by ``.ci/run``) the native libraries are required:
a build that fails, or a library that cannot be loaded, raises
:class:`BuildError` instead of falling back (a missing compiler still falls
back; the tests that need the kernels then skip, which CI counts as failures).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from atacdenoise.atomic import scratch_dir

log = logging.getLogger(__name__)

#: flags of every runtime build (the defines are added per file)
FLAGS = ["-O3", "-march=native", "-shared", "-fPIC"]
#: compiler output lines quoted from each end when a build fails
ERROR_LINES = 12
#: set (to anything but 0/off/false/no) in CI: a library that does not build raises instead of falling back
CI_ENV = "ATACDENOISE_CI"


class BuildError(RuntimeError):
    """The compiler failed on a source file; the message quotes its first and last lines."""


def cpu_flags() -> str:
    """Return the CPU's feature flags (``/proc/cpuinfo``), or the platform's name where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_dir() -> Path:
    """Return where compiled libraries are kept (see the module docstring)."""
    base = os.environ.get("ATACDENOISE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "atacdenoise"
    )
    return Path(base)


def off(env: str) -> bool:
    """Tell whether the environment variable ``env`` turns a native part off (0, off, false, no)."""
    return os.environ.get(env, "1").strip().lower() in ("0", "off", "false", "no")


def required() -> bool:
    """Tell whether a failed build must raise (``$ATACDENOISE_CI`` set: a CI run) rather than fall back."""
    return os.environ.get(CI_ENV, "").strip().lower() not in ("", "0", "off", "false", "no")


def compiler() -> list[str] | None:
    """Return the C compiler's command (``$CC``, split like a shell would, else cc, gcc or clang), or None if absent."""
    cmd = shlex.split(os.environ.get("CC", ""))
    if cmd:
        return cmd if shutil.which(cmd[0]) else None
    found = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    return [found] if found else None


def define_flags(defines: Mapping[str, int | str]) -> list[str]:
    """Return ``defines`` as compiler flags: ``{"COB": 5}`` -> ``["-DCOB=5"]``."""
    return [f"-D{name}={value}" for name, value in defines.items()]


def compile_library(
    cc: list[str], source: Path, defines: Mapping[str, int | str], out: Path, flags: Sequence[str] | None = None
) -> None:
    """Compile ``source`` with ``defines`` into the shared library ``out`` (with ``flags``, by default :data:`FLAGS`).

    Raises
    ------
    BuildError
        When the compiler fails (its first and last lines are in the message).
    """
    cmd = [*cc, *(FLAGS if flags is None else flags), *define_flags(defines), "-o", str(out), str(source)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        lines = (res.stderr or res.stdout).strip().splitlines()
        if len(lines) > 2 * ERROR_LINES:  # the first error (often the cause) and the last ones
            lines = [*lines[:ERROR_LINES], "...", *lines[-ERROR_LINES:]]
        raise BuildError(f"{shlex.join(cmd)} exited with {res.returncode}:\n" + "\n".join(lines))


def library_path(name: str, source: Path, defines: Mapping[str, int | str], cc: list[str]) -> Path:
    """Return the cached library's path: ``name`` and a hash of what the build depends on (see the module docstring)."""
    try:
        version = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    try:
        text = Path(source).read_bytes()
    except OSError as exc:  # the package ships its C files: a missing one is a packaging bug
        raise BuildError(f"cannot read the C source {source}: {exc.strerror or exc}") from exc
    parts = [
        text,
        *(s.encode() for s in define_flags(defines)),
        *(s.encode() for s in cc),
        version.encode(),
        " ".join(FLAGS).encode(),
        platform.machine().encode(),
        cpu_flags().encode(),
    ]
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    return cache_dir() / f"{name}-{key}.so"


def unsafe(path: Path, directory: bool = False) -> str | None:
    """Say why ``path`` must not be trusted (not ours, writable by others, of the wrong kind), or None when it may be.

    ``directory``: ``path`` is a directory (followed if a symbolic link, as a
    cache under a linked home is); else a library, which must be a regular file.
    """
    st = os.stat(path) if directory else os.lstat(path)
    kind = "a directory" if directory else "a regular file"
    if not (stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)):
        return f"not {kind}"
    if st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by its group or by others (mode {stat.filemode(st.st_mode)})"
    return None


def _compile_into(cc: list[str], source: Path, defines: Mapping[str, int | str], path: Path) -> None:
    """Compile to a temporary name in ``path``'s directory, then move it into place atomically."""
    with scratch_dir(path.name, path.parent) as tmp:  # a killed compile's directory goes next time
        out = Path(tmp) / path.name
        compile_library(cc, source, defines, out)
        os.chmod(out, 0o755)  # whatever the umask: a group-writable library would be refused next time
        os.replace(out, path)  # atomic: concurrent jobs on a shared cache each see a whole file


def _build_private(name: str, cc: list[str], source: Path, defines: Mapping[str, int | str]) -> ctypes.CDLL:
    """Compile into a fresh private directory (mode 0700), load, and remove the directory (the mapping stays)."""
    tmp = Path(tempfile.mkdtemp(prefix="atacdenoise-"))
    try:
        out = tmp / f"{name}.so"
        compile_library(cc, source, defines, out)
        return ctypes.CDLL(str(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load(name: str, cc: list[str], source: Path, defines: Mapping[str, int | str], what: str) -> ctypes.CDLL:
    """Load the cached library (compiled first if absent), or a private build when the cache may not be trusted."""
    path = library_path(name, source, defines, cc)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        why = unsafe(path.parent, directory=True)
    except OSError as exc:
        why = f"unusable ({exc.strerror or exc})"
    if why is not None:
        log.warning("not using the cache directory %s for the %s: %s; building a private copy", path.parent, what, why)
        return _build_private(name, cc, source, defines)
    if os.path.lexists(path):
        why = unsafe(path)
        if why is None:
            return ctypes.CDLL(str(path))
        log.warning("not loading %s: %s; building a private copy of the %s", path, why, what)
        return _build_private(name, cc, source, defines)
    try:
        _compile_into(cc, source, defines, path)
    except OSError as exc:  # e.g. a read-only cache: the library still builds elsewhere
        log.warning("cannot write into %s (%s); building a private copy of the %s", path.parent, exc, what)
        return _build_private(name, cc, source, defines)
    log.info("compiled the %s: %s", what, path)
    return ctypes.CDLL(str(path))


def build(name: str, source: Path, defines: Mapping[str, int | str], what: str) -> ctypes.CDLL | None:
    """Return ``source`` compiled with ``defines`` (once per machine, see the module docstring) and loaded, or None.

    Parameters
    ----------
    name
        Names the cached file (``{name}-{hash}.so``).
    source
        The C file.
    defines
        Its ``-D`` defines.
    what
        The library, in log lines.

    Returns
    -------
    ctypes.CDLL or None
        None when there is no compiler (logged as info), when the compiler
        fails (logged as an error with its output: a bug of ours, or
        unusual settings) or when the library cannot be written or loaded (a
        warning); the caller then uses its fallback.

    Raises
    ------
    BuildError
        In CI (:func:`required`), where the last two cases are errors; the
        message quotes the compiler's output.
    """
    cc = compiler()
    if cc is None:
        log.info("no C compiler found (cc, gcc, clang or $CC): the %s is not built; using the slower fallback", what)
        return None
    try:
        return _load(name, cc, Path(source), defines, what)
    except BuildError as exc:
        if required():
            raise BuildError(f"the C compiler failed on the {what} ({CI_ENV} is set: no fallback). {exc}") from exc
        log.error("the C compiler failed on the %s (please report it); using the slower fallback. %s", what, exc)
    except (OSError, subprocess.SubprocessError) as exc:
        if required():
            raise BuildError(f"the {what} is unavailable ({CI_ENV} is set: no fallback): {exc}") from exc
        log.warning("the %s is unavailable (%s); using the slower fallback", what, exc)
    return None
