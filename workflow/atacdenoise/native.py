"""Small C libraries compiled for the machine they run on, cached, loaded with ctypes.

Why: a few inner loops (the model's convolutions on a CPU) are sequential or
arithmetic-bound in ways NumPy cannot vectorise; a page of C, compiled with ``-O3 -march=native``, runs them at the
machine's speed without a build step at install time.

How: the source is compiled on first use with the system C compiler (``cc``;
``$CC`` overrides) into a cache directory (``$ATACDENOISE_CACHE`` or
``~/.cache/atacdenoise``), keyed by the source, the compiler and the CPU's
feature flags, so nodes with other CPUs sharing a home directory build their
own; the file appears atomically, so concurrent jobs on a shared cache each
see a whole library. Without a compiler, or when the build fails, the caller
gets None (logged) and uses its pure-Python/PyTorch path.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

FLAGS = ["-O3", "-march=native", "-shared", "-fPIC"]


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
    """Return where compiled libraries are kept.

    ``$ATACDENOISE_CACHE``, else ``$XDG_CACHE_HOME/atacdenoise`` or ``~/.cache/atacdenoise``.
    """
    base = os.environ.get("ATACDENOISE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "atacdenoise"
    )
    return Path(base)


def off(env: str) -> bool:
    """Tell whether the environment variable ``env`` turns a native part off (0, off, false, no)."""
    return os.environ.get(env, "1").strip().lower() in ("0", "off", "false", "no")


def build(name: str, source: str, what: str) -> ctypes.CDLL | None:
    """``source`` compiled (once per machine, see the module docstring) and loaded; None when it cannot be.

    ``name`` names the cached file, ``what`` the library in log lines.
    """
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        log.info("no C compiler found (cc, gcc, clang or $CC): the %s is not built; using the slower fallback", what)
        return None
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    key = hashlib.sha256(
        "\0".join([source, cc, version, " ".join(FLAGS), platform.machine(), cpu_flags()]).encode()
    ).hexdigest()[:16]
    path = cache_dir() / f"{name}-{key}.so"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                src = Path(tmp) / f"{name}.c"
                src.write_text(source)
                out = Path(tmp) / path.name
                res = subprocess.run(
                    [cc, *FLAGS, "-o", str(out), str(src)], capture_output=True, text=True, timeout=300
                )
                if res.returncode != 0:
                    log.warning(
                        "could not compile the %s with %s (%s); using the slower fallback",
                        what,
                        cc,
                        (res.stderr or res.stdout).strip().splitlines()[-1:],
                    )
                    return None
                os.replace(out, path)  # atomic: concurrent jobs on a shared cache each see a whole file
            log.info("compiled the %s: %s", what, path)
        return ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("the %s is unavailable (%s); using the slower fallback", what, exc)
        return None
