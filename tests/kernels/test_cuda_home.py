"""Finding the CUDA toolkit without CUDA_HOME: a wrapper nvcc outside the toolkit, symlinks, the
usual folders, the warning that says what to set, and the JIT loader using what was found."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import types
from pathlib import Path

import pytest

from kernels import _build, cuda_home


def _toolkit(folder: Path, layout: str = "targets") -> Path:
    """A fake toolkit whose nvcc prints a TOP= line for --dryrun, as the real one does."""
    (folder / "bin").mkdir(parents=True)
    inc = folder / ("targets/x86_64-linux/include" if layout == "targets" else "include")
    inc.mkdir(parents=True)
    (inc / "cuda_runtime.h").write_text("")
    _script(folder / "bin" / "nvcc", f'echo "#\\$ _HERE_={folder}/bin" >&2\necho "#\\$ TOP={folder}/bin/.." >&2\n')
    return folder


def _script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("CUDA_HOME", "CUDA_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cuda_home, "usual_folders", lambda version=None: [])
    return monkeypatch


def test_wrapper_outside_the_toolkit_is_followed(clean_env, tmp_path):
    kit = _toolkit(tmp_path / "cuda-13.0")
    _script(tmp_path / "wrappers" / "nvcc", f'exec {kit}/bin/nvcc "$@"\n')
    clean_env.setenv("PATH", f"{tmp_path / 'wrappers'}:/usr/bin:/bin")
    folder, how = cuda_home.find_cuda_home()
    assert folder == str(kit.resolve())
    assert "TOP=" in how and str(tmp_path / "wrappers" / "nvcc") in how
    # torch's own guess would have been two folders above the wrapper: not a toolkit
    assert not cuda_home.is_toolkit(tmp_path)


def test_symlinked_nvcc_is_resolved(clean_env, tmp_path):
    kit = _toolkit(tmp_path / "kit", layout="include")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvcc").symlink_to(kit / "bin" / "nvcc")
    clean_env.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    folder, how = cuda_home.find_cuda_home()
    assert folder == str(kit.resolve()) and how.startswith("nvcc on PATH")


def test_environment_wins_and_usual_folders_prefer_torchs_version(clean_env, tmp_path):
    clean_env.setenv("CUDA_PATH", "/opt/somewhere")
    assert cuda_home.find_cuda_home() == ("/opt/somewhere", "$CUDA_PATH")
    clean_env.delenv("CUDA_PATH")
    clean_env.setenv("PATH", "/nonexistent")
    old, new = _toolkit(tmp_path / "cuda-12.4"), _toolkit(tmp_path / "cuda-13.0")
    clean_env.setattr(cuda_home, "usual_folders", lambda version=None: [str(tmp_path / "cuda"), str(new), str(old)])
    assert cuda_home.find_cuda_home()[0] == str(new)


def test_usual_folder_order(monkeypatch):
    monkeypatch.setattr(cuda_home.glob, "glob", lambda pattern: ["/usr/local/cuda-11.8", "/usr/local/cuda-12.10",
                                                                  "/usr/local/cuda-12.4", "/usr/local/cuda-13.0"])
    order = cuda_home.usual_folders("12.4")
    assert order == ["/usr/local/cuda", "/usr/local/cuda-12.4", "/usr/local/cuda-13.0", "/usr/local/cuda-12.10",
                     "/usr/local/cuda-11.8", "/opt/cuda", "/usr/lib/cuda"]


def test_nothing_found_warns_what_to_set(clean_env, caplog):
    clean_env.setenv("PATH", "/nonexistent")
    with caplog.at_level(logging.WARNING, logger="kernels.cuda_home"):
        assert cuda_home.ensure_cuda_home() is None
    [record] = caplog.records
    message = record.getMessage()
    assert "no nvcc on PATH" in message
    assert "set CUDA_HOME to the CUDA toolkit folder that holds bin/nvcc and include/cuda_runtime.h" in message


def test_wrong_cuda_home_is_kept_with_a_warning(clean_env, tmp_path, caplog):
    clean_env.setenv("CUDA_HOME", str(tmp_path))
    ext = types.SimpleNamespace(CUDA_HOME="/usr/local")
    with caplog.at_level(logging.WARNING, logger="kernels.cuda_home"):
        assert cuda_home.ensure_cuda_home(ext) == str(tmp_path)
    assert ext.CUDA_HOME == str(tmp_path)
    assert f"CUDA_HOME={tmp_path} is not a CUDA toolkit" in caplog.text


def test_jit_build_uses_the_found_toolkit(clean_env, tmp_path):
    """The JIT loader corrects torch's import-time guess before it compiles."""
    from torch.utils import cpp_extension

    kit = _toolkit(tmp_path / "cuda-13.0")
    _script(tmp_path / "wrappers" / "nvcc", f'exec {kit}/bin/nvcc "$@"\n')
    clean_env.setenv("PATH", f"{tmp_path / 'wrappers'}:{os.environ['PATH']}")
    clean_env.setattr(cpp_extension, "CUDA_HOME", str(tmp_path))  # torch's guess from the wrapper
    seen = {}

    def fake_load(**kwargs):
        seen["home"] = cpp_extension.CUDA_HOME
        return types.SimpleNamespace()

    clean_env.setattr(cpp_extension, "load", fake_load)
    _build._compile("m", tmp_path / "build", [])
    assert seen["home"] == str(kit.resolve())


def test_jit_build_without_toolkit_is_a_kernel_build_error(clean_env, tmp_path):
    from torch.utils import cpp_extension

    clean_env.setenv("PATH", "/nonexistent")
    clean_env.setattr(cpp_extension, "load", pytest.fail)
    with pytest.raises(_build.KernelBuildError, match="no CUDA toolkit found.*set CUDA_HOME"):
        _build._compile("m", tmp_path / "build", [])


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc on PATH")
def test_this_machines_nvcc(monkeypatch):
    """Here nvcc is /usr/local/bin/nvcc, a wrapper script: found through the real toolkit."""
    for name in ("CUDA_HOME", "CUDA_PATH"):
        monkeypatch.delenv(name, raising=False)
    folder, how = cuda_home.find_cuda_home()
    assert folder is not None and cuda_home.is_toolkit(folder), how
