"""The native build (atacdenoise.native): every C file compiles without a warning, the cache is trusted only when safe.

A failed build falls back with a logged error, except in CI (ATACDENOISE_CI), where it raises.

Also runs the convolution kernels under the undefined-behaviour and address
sanitizers, in a child process (a finding aborts it).
"""

from __future__ import annotations

import importlib
import logging
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import atacdenoise
from atacdenoise import native

PACKAGE = Path(atacdenoise.__file__).resolve().parent
#: modules that load C files, each declaring them as NATIVE_SOURCES = {name: (path, defines)}
LOADERS = ("atacdenoise.model.cpuconv", "atacdenoise.model.compact_native")
#: the strict build every C file must pass
STRICT = ["-Wall", "-Wextra", "-Werror", "-O2", "-march=native", "-shared", "-fPIC"]

CC = native.compiler()
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler on PATH (cc, gcc, clang or $CC)")


def declared_sources() -> dict[Path, tuple[str, dict]]:
    """Return every C file a loader declares, with its library name and defines."""
    out = {}
    for module in LOADERS:
        for name, (path, defines) in importlib.import_module(module).NATIVE_SOURCES.items():
            out[Path(path).resolve()] = (name, defines)
    return out


C_FILES = sorted(PACKAGE.rglob("*.c"))


def test_every_c_file_is_declared_by_a_loader():
    assert C_FILES, f"no C files under {PACKAGE}"
    declared = declared_sources()
    assert set(C_FILES) == set(declared), (
        "each .c file in the package must be declared (with its defines) in its loader's NATIVE_SOURCES, "
        "and that loader listed in tests/test_native.py LOADERS"
    )


@needs_cc
@pytest.mark.parametrize("source", C_FILES, ids=[str(p.relative_to(PACKAGE)) for p in C_FILES])
def test_c_file_compiles_without_warnings(source, tmp_path):
    name, defines = declared_sources()[source]
    native.compile_library(CC, source, defines, tmp_path / f"{name}.so", flags=STRICT)  # BuildError shows the lines


@needs_cc
@pytest.mark.parametrize("source", C_FILES, ids=[str(p.relative_to(PACKAGE)) for p in C_FILES])
def test_c_file_stops_without_its_defines(source, tmp_path):
    with pytest.raises(native.BuildError, match="#error"):
        native.compile_library(CC, source, {}, tmp_path / "x.so")


@needs_cc
def test_compile_error_is_logged_as_error_and_falls_back(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("ATACDENOISE_CI", raising=False)  # outside CI
    monkeypatch.setenv("ATACDENOISE_CACHE", str(tmp_path / "cache"))
    source = PACKAGE / "model" / "cpuconv_direct.c"
    with caplog.at_level(logging.INFO, logger="atacdenoise.native"):
        assert native.build("direct", source, {}, "test kernel") is None
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "define COB" in errors[0].getMessage()  # the compiler's own lines
    assert not list((tmp_path / "cache").iterdir())  # no half-written library left behind


@needs_cc
@pytest.mark.parametrize("ci", ["1", "yes"])
def test_compile_error_raises_in_ci(ci, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ATACDENOISE_CI", ci)
    monkeypatch.setenv("ATACDENOISE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(native.BuildError, match=r"(?s)ATACDENOISE_CI is set: no fallback.*define COB"):
        native.build("direct", PACKAGE / "model" / "cpuconv_direct.c", {}, "test kernel")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # raised, not logged and dropped


@needs_cc
@pytest.mark.parametrize("ci", [None, "1"])
def test_library_that_does_not_load_falls_back_or_raises_in_ci(ci, tmp_path, monkeypatch, caplog):
    if ci is None:
        monkeypatch.delenv("ATACDENOISE_CI", raising=False)
    else:
        monkeypatch.setenv("ATACDENOISE_CI", ci)
    monkeypatch.setenv("ATACDENOISE_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "unresolved.c"  # compiles (-shared leaves the symbol open), fails to load: ctypes binds now
    source.write_text("extern int no_such_function(void);\nint answer(void) { return no_such_function(); }\n")
    if ci is None:
        with caplog.at_level(logging.INFO, logger="atacdenoise.native"):
            assert native.build("unresolved", source, {}, "test library") is None
        assert "no_such_function" in caplog.text and "slower fallback" in caplog.text
    else:
        with pytest.raises(native.BuildError, match=r"ATACDENOISE_CI is set: no fallback.*no_such_function"):
            native.build("unresolved", source, {}, "test library")


def test_no_compiler_is_not_an_error(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("ATACDENOISE_CACHE", str(tmp_path / "cache"))
    assert native.compiler() is None
    with caplog.at_level(logging.INFO, logger="atacdenoise.native"):
        assert native.build("direct", PACKAGE / "model" / "cpuconv_direct.c", {}, "test kernel") is None
    assert [r.levelno for r in caplog.records] == [logging.INFO] and "no C compiler" in caplog.text


def answer_source(tmp_path: Path) -> Path:
    """Return a tiny C file: ``int answer(void)`` returns the ANSWER define."""
    path = tmp_path / "answer.c"
    path.write_text("int answer(void) { return ANSWER; }\n")
    return path


@needs_cc
def test_cache_dir_is_private_and_library_reused(tmp_path, monkeypatch, caplog):
    cache = tmp_path / "home" / "cache"
    monkeypatch.setenv("ATACDENOISE_CACHE", str(cache))
    source = answer_source(tmp_path)
    umask = os.umask(0o002)  # a group-writable default (some clusters): the library must not come out so
    try:
        with caplog.at_level(logging.INFO, logger="atacdenoise.native"):
            assert native.build("answer", source, {"ANSWER": 42}, "test library").answer() == 42
            assert "compiled the test library" in caplog.text
            caplog.clear()
            assert native.build("answer", source, {"ANSWER": 42}, "test library").answer() == 42
            assert "compiled" not in caplog.text  # the cached one
    finally:
        os.umask(umask)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    (lib,) = cache.iterdir()  # the library alone: no temporary left
    assert lib.name.startswith("answer-") and native.unsafe(lib) is None


def plant(path: Path, case: str) -> None:
    """Make the library at ``path``, or its directory, untrusted the way ``case`` says."""
    if case == "dir group-writable":
        path.parent.chmod(0o770)
    elif case == "dir world-writable":
        path.parent.chmod(0o1777)  # like /tmp: sticky, but anyone can plant a file
    elif case == "dir not ours":
        os.chown(path.parent, 65534, -1)
    elif case == "lib group-writable":
        path.chmod(0o775)
    elif case == "lib world-writable":
        path.chmod(0o757)
    elif case == "lib not ours":
        os.chown(path, 65534, -1)
    elif case == "lib a symlink":
        target = path.with_name("elsewhere.so")
        path.rename(target)
        path.symlink_to(target)


@needs_cc
@pytest.mark.parametrize(
    "case,reason",
    [
        ("trusted", None),  # control: a planted library is loaded when the cache is safe (the test reaches the cache)
        ("dir group-writable", "writable by its group or by others"),
        ("dir world-writable", "writable by its group or by others"),
        ("dir not ours", "owned by uid 65534"),
        ("lib group-writable", "writable by its group or by others"),
        ("lib world-writable", "writable by its group or by others"),
        ("lib not ours", "owned by uid 65534"),
        ("lib a symlink", "not a regular file"),
    ],
)
def test_untrusted_cache_is_not_loaded(case, reason, tmp_path, monkeypatch, caplog):
    if case.endswith("not ours") and os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    cache = tmp_path / "cache"
    monkeypatch.setenv("ATACDENOISE_CACHE", str(cache))
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))  # where the private rebuild goes
    source, defines = answer_source(tmp_path), {"ANSWER": 42}
    path = native.library_path("answer", source, defines, CC)
    cache.mkdir(mode=0o700)
    poison = tmp_path / "poison.c"
    poison.write_text("int answer(void) { return 666; }\n")
    native.compile_library(CC, poison, {}, path)  # another library where the real one would be cached
    plant(path, case)
    with caplog.at_level(logging.INFO, logger="atacdenoise.native"):
        lib = native.build("answer", source, defines, "test library")
    if reason is None:
        assert lib.answer() == 666 and not caplog.records
        return
    assert lib.answer() == 42  # a private build, not the planted file
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    rejected = path.parent if case.startswith("dir") else path
    assert str(rejected) in warning and reason in warning
    assert not list(private.iterdir())  # the private directory is removed once the library is loaded


SANITIZER_RUN = textwrap.dedent(
    """
    import ctypes, sys
    import torch
    from atacdenoise.model import cpuconv

    try:
        kernels = cpuconv.bind({name: ctypes.CDLL(path) for name, path in zip(sys.argv[1::2], sys.argv[2::2])})
    except OSError as exc:  # e.g. clang, whose shared objects expect the executable to carry the runtime
        print(exc)
        sys.exit(77)
    torch.manual_seed(0)
    shapes = [  # cin, cout, taps, dilation, length, batch: vector blocks and scalar tails, odd block counts, empty
        (15, 15, 51, 8, 9_000, 2), (1, 15, 51, 8, 4_321, 1), (8, 8, 21, 16, 5_000, 3), (15, 7, 3, 1, 50, 1),
        (2, 3, 5, 2, 23, 2), (16, 16, 3, 1, 50, 2), (15, 15, 51, 8, 0, 2),
    ]
    for cin, cout, k, dil, length, batch in shapes:
        conv = torch.nn.Conv1d(cin, cout, k, dilation=dil, padding=(k - 1) * dil // 2)
        x, res = torch.randn(batch, cin, length), torch.randn(batch, cout, length)
        pool = cpuconv.ThreadPoolExecutor(2)
        with torch.inference_mode():
            want = torch.relu(conv(x) + res) if length else torch.zeros(batch, cout, 0)
            got = []
            if length:
                got.append(cpuconv.NativeConv1d(conv, kernels.dilconv1d, 2, pool)(x, residual=res, relu=True))
            if cpuconv.fft_eligible(conv):
                got.append(cpuconv.FFTConv1d(conv, kernels, 2, pool)(x, residual=res, relu=True))
            for g in got:
                torch.testing.assert_close(g, want, rtol=1e-5, atol=1e-4)
    print("clean")
    """
)


SANITIZER_COMPACT = textwrap.dedent(
    """
    import ctypes, sys
    import numpy as np
    from atacdenoise.model import compact_native as cn
    from atacdenoise.model.infer import bin_probability, bin_track, round_probability_bits

    try:
        kernels = cn.bind_rounding(ctypes.CDLL(sys.argv[2]))
    except OSError as exc:
        print(exc)
        sys.exit(77)
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 8, 9, 4_097):  # empty, one short bin, whole bins, short bins at both ends
        for start in (0, 3, 8, 1_000_003):
            p = rng.random(n).astype(np.float32)
            p[: n // 3] *= 1e-3
            t = np.where(rng.random(n) < 0.5, 0, rng.random(n) * 8).astype(np.float32)
            cuts = (0.56, 0.5)
            want = bin_probability(round_probability_bits(p), p, start, cuts)
            got = cn.compact_probability(kernels, p, start, cuts, 8, 8, 6, 2.0**-7)
            assert np.array_equal(got, want)
            assert np.array_equal(cn.compact_track(kernels, t, start, 4.0, 8, 8), bin_track(t, start, 4.0))
            assert np.array_equal(cn.round_probability(kernels, p, 8, 6, 2.0**-7), round_probability_bits(p))
    print("clean")
    """
)


@needs_cc
@pytest.mark.parametrize("library", ["cpuconv", "compact_native"])
@pytest.mark.parametrize("sanitizer", ["undefined", "address"])
def test_kernels_clean_under_sanitizer(sanitizer, library, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")]))
    if sanitizer == "address":  # its runtime must come first in the process: preloaded into Python
        runtime = subprocess.run([*CC, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
        if not os.path.isabs(runtime) or not os.path.exists(runtime):
            pytest.skip(f"{CC[0]} has no libasan.so to preload")
        env.update(LD_PRELOAD=runtime, ASAN_OPTIONS="detect_leaks=0")  # Python itself leaks by design
    flags = ["-O1", "-g", "-march=native", "-shared", "-fPIC", f"-fsanitize={sanitizer}", "-fno-sanitize-recover=all"]
    args = []
    for path, (name, defines) in declared_sources().items():
        if name.startswith(library):
            try:
                native.compile_library(CC, path, defines, tmp_path / f"{name}.so", flags=flags)
            except native.BuildError as exc:
                pytest.skip(f"{CC[0]} cannot build with -fsanitize={sanitizer}: {exc}")
            args += [name, str(tmp_path / f"{name}.so")]
    res = subprocess.run(
        [sys.executable, "-c", SANITIZER_RUN if library == "cpuconv" else SANITIZER_COMPACT, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if res.returncode == 77:
        pytest.skip(f"the -fsanitize={sanitizer} library does not load here: {res.stdout.strip()}")
    assert res.returncode == 0 and "runtime error" not in res.stderr, res.stdout + res.stderr[-4000:]
    assert res.stdout.strip().endswith("clean")
