"""The extension loader: cache naming, atomic install under a lock, impl selection, the
FACESTYLE_KERNELS override, one warning on a failed build, memoisation, AOT extension list."""

from __future__ import annotations

import logging
import shutil
import threading
import time
import types
from pathlib import Path

import pytest
import torch

import kernels
from kernels import KernelBuildError, _build, bias_act, upfirdn2d

CUDA = torch.device("cuda", 0)  # a device object only: no GPU is touched


@pytest.fixture(autouse=True)
def fresh_loader(monkeypatch, tmp_path):
    """Each test starts with nothing memoised, no override, and a private cache folder."""
    monkeypatch.delenv(_build.ENV_FORCE, raising=False)
    monkeypatch.setenv(_build.ENV_CACHE, str(tmp_path / "cache"))
    _build.reset()
    yield
    _build.reset()


def _write(folder: Path, files: dict[str, str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return [folder / name for name in files]


def test_digest_changes_with_sources(tmp_path):
    paths = _write(tmp_path / "src", {"a.cu": "kernel A", "a.h": "header", "b.cpp": "binding"})
    base = _build.source_digest(paths, ["torch=2.13", "archs=90"])
    assert len(base) == 64
    assert _build.source_digest(reversed(paths), ["torch=2.13", "archs=90"]) == base  # order-free
    assert _build.source_digest(paths, ["torch=2.13", "archs=80"]) != base
    assert _build.source_digest(paths, ["torch=2.14", "archs=90"]) != base
    paths[1].write_text("header v2")
    assert _build.source_digest(paths, ["torch=2.13", "archs=90"]) != base
    paths[1].write_text("header")
    assert _build.source_digest(paths, ["torch=2.13", "archs=90"]) == base
    paths[0].rename(tmp_path / "src" / "c.cu")
    renamed = [tmp_path / "src" / "c.cu", *paths[1:]]
    assert _build.source_digest(renamed, ["torch=2.13", "archs=90"]) != base


def test_build_key_follows_csrc_and_gpu(monkeypatch, tmp_path):
    src = tmp_path / "csrc"
    shutil.copytree(_build.CSRC, src)
    monkeypatch.setattr(_build, "CSRC", src)
    monkeypatch.setattr(_build, "_gpu_archs", lambda: ["90"])
    name, flags = _build.build_key()
    assert name.startswith(_build.MODULE_PREFIX + "-")
    assert flags == ["-gencode=arch=compute_90,code=sm_90"]
    assert _build.build_key()[0] == name
    (src / "upfirdn2d.cu").write_text((src / "upfirdn2d.cu").read_text() + "\n// edited\n")
    edited = _build.build_key()[0]
    assert edited != name
    monkeypatch.setattr(_build, "_gpu_archs", lambda: ["80", "90"])
    assert _build.build_key()[0] not in (name, edited)
    monkeypatch.setattr(_build, "_gpu_archs", lambda: [])
    with pytest.raises(KernelBuildError):
        _build.build_key()


def test_source_lists():
    names = [p.name for p in _build.source_files()]
    assert "upfirdn2d.cu" in names and "bias_act_math.h" in names and "bindings.cpp" in names
    assert all(p.suffix in (".cu", ".cpp") for p in _build.compiled_sources())


def test_cache_root(monkeypatch):
    monkeypatch.delenv(_build.ENV_CACHE)
    assert _build.cache_root() == Path("~/.cache/facestyle/kernels").expanduser()
    monkeypatch.setenv(_build.ENV_CACHE, "/somewhere/else")
    assert _build.cache_root() == Path("/somewhere/else")


def test_install_is_atomic_and_cached(monkeypatch, tmp_path):
    root = tmp_path / "root"
    calls = []
    fake = types.SimpleNamespace(probe=lambda: None)

    def fake_compile(name, build_dir, flags):
        calls.append((name, build_dir))
        assert build_dir.parent == root and build_dir.name.startswith("facestyle_kernels-abc.tmp-")
        (build_dir / f"{name}.so").write_text("binary")
        return fake

    imported = []
    monkeypatch.setattr(_build, "_compile", fake_compile)
    monkeypatch.setattr(_build, "_import_from_folder", lambda name, folder: imported.append(folder) or fake)

    (root / "facestyle_kernels-abc.tmp-killed").mkdir(parents=True)  # debris of a killed build
    module, origin = _build._build_or_load_cached(root, "facestyle_kernels-abc", ["-gencode=x"])
    assert module is fake and "JIT build" in origin and len(calls) == 1
    final = root / "facestyle_kernels-abc"
    assert (final / "facestyle_kernels_abc.so").read_text() == "binary"
    assert not list(root.glob("*.tmp-*"))  # the temp folder was renamed, not copied

    module, origin = _build._build_or_load_cached(root, "facestyle_kernels-abc", ["-gencode=x"])
    assert len(calls) == 1 and imported == [final] and "cached" in origin


def test_failed_build_leaves_no_folder(monkeypatch, tmp_path):
    def broken(name, build_dir, flags):
        (build_dir / "half-written.o").write_text("")
        raise RuntimeError("nvcc exploded")

    monkeypatch.setattr(_build, "_compile", broken)
    with pytest.raises(RuntimeError, match="exploded"):
        _build._build_or_load_cached(tmp_path, "facestyle_kernels-x", [])
    assert {p.name for p in tmp_path.iterdir()} <= {"facestyle_kernels-x.lock"}


def test_cuda_impl_on_cpu_raises():
    with pytest.raises(ValueError, match="CUDA"):
        _build.select_impl("cuda", torch.device("cpu"))
    with pytest.raises(ValueError, match="CUDA"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(2, 2), impl="cuda")
    with pytest.raises(ValueError, match="CUDA"):
        bias_act(torch.zeros(2, 3), impl="cuda")
    with pytest.raises(ValueError, match="impl"):
        _build.select_impl("gpu", torch.device("cpu"))


def test_cpu_auto_is_silent_reference(monkeypatch, caplog):
    monkeypatch.setattr(_build, "_load_uncached", pytest.fail)  # must not even try
    with caplog.at_level(logging.DEBUG, logger="kernels"):
        assert _build.select_impl("auto", torch.device("cpu")) == "ref"
        y = upfirdn2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1))
    assert torch.equal(y, torch.ones(1, 1, 3, 3))
    assert not caplog.records


def test_env_forces_reference(monkeypatch):
    monkeypatch.setattr(_build, "_load_uncached", pytest.fail)
    monkeypatch.setenv(_build.ENV_FORCE, "ref")
    assert _build.select_impl("cuda", CUDA) == "ref"
    assert _build.select_impl("auto", CUDA) == "ref"
    x = torch.randn(1, 2, 5, 5)
    k = torch.rand(3, 3)
    torch.testing.assert_close(
        upfirdn2d(x, k, pad=(1, 1), impl="cuda"), upfirdn2d(x, k, pad=(1, 1), impl="ref")
    )
    torch.testing.assert_close(bias_act(x, act="tanh", impl="cuda"), torch.tanh(x))
    assert "FACESTYLE_KERNELS=ref" in kernels.cuda_status()


def test_auto_falls_back_with_one_warning(monkeypatch, caplog):
    attempts = []

    def failing():
        attempts.append(1)
        raise KernelBuildError("no nvcc here")

    monkeypatch.setattr(_build, "_load_uncached", failing)
    with caplog.at_level(logging.WARNING, logger="kernels"):
        assert [_build.select_impl("auto", CUDA) for _ in range(3)] == ["ref"] * 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no nvcc here" in warnings[0].getMessage()
    assert len(attempts) == 1  # the failure is memoised, no rebuild per call
    with pytest.raises(KernelBuildError, match="no nvcc here"):
        _build.select_impl("cuda", CUDA)


def test_unexpected_errors_become_kernel_build_error(monkeypatch):
    def crash():
        raise OSError("disk full")

    monkeypatch.setattr(_build, "_load_uncached", crash)
    with pytest.raises(KernelBuildError, match="disk full") as info:
        _build.load_extension()
    assert isinstance(info.value, RuntimeError) and isinstance(info.value.__cause__, OSError)


def test_load_is_memoised_and_thread_safe(monkeypatch):
    fake = types.SimpleNamespace(probe=lambda: None)
    attempts = []

    def slow_load():
        attempts.append(1)
        time.sleep(0.05)
        return fake, "test double"

    monkeypatch.setattr(_build, "_load_uncached", slow_load)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(_build.select_impl("auto", CUDA))) for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["cuda"] * 6 and len(attempts) == 1
    assert _build.load_extension() is fake


def test_no_build_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(KernelBuildError, match="CUDA is not available"):
        _build.load_extension()
    assert "no CUDA" in kernels.cuda_status(build=True)


def test_aot_extension_list(monkeypatch):
    from torch.utils import cpp_extension

    from kernels import aot

    if cpp_extension.CUDA_HOME is None:
        cuda_home = Path(shutil.which("nvcc") or "/nonexistent").resolve().parent.parent
        if not (cuda_home / "include" / "cuda_runtime.h").is_file():
            cuda_home = Path("/usr/local/cuda")
        if not (cuda_home / "include").is_dir():
            pytest.skip("no CUDA toolkit to describe the extension against")
        monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(cuda_home))
    root = Path(_build.CSRC).parents[1]
    (ext,) = aot.cuda_extensions()
    assert ext.name == "kernels._C"
    assert sorted(ext.sources) == sorted(f"kernels/csrc/{p.name}" for p in _build.compiled_sources())
    assert all((root / s).is_file() for s in ext.sources)
