"""The CUDA extension built ahead of time as users build it (``setup.py build_ext`` with
``FACESTYLE_BUILD_KERNELS=1``) against a CUDA build of torch, with ``CUDA_HOME`` unset, for sm_80 and
sm_90, and imported (not run: no GPU is needed). ``scripts/editor_hosts.py`` builds it once per key
(``scripts/build_kernels.py``); if it has not, the first test here does (about a minute)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess

import pytest

from tests.conftest import REPO


def _script():
    spec = importlib.util.spec_from_file_location("build_kernels", REPO / "scripts" / "build_kernels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_kernels = _script()


@pytest.fixture(scope="module")
def built():
    state, folder = build_kernels.build(str(build_kernels.DEFAULT_PYTHON), build_kernels.DEFAULT_ARCHS)
    if state.startswith("unavailable"):
        pytest.skip(state)
    assert state == "ready", state  # a toolkit and a CUDA torch are here: the build must work
    return folder


def test_extension_built_for_sm80_and_sm90_and_imports(built):
    ready = json.loads((built / "ready").read_text())
    assert set(build_kernels.EXPORTS) <= set(ready["names"])
    assert ready["cuda"] and "+cu" in ready["torch"]
    log = (built / "build.log").read_text()
    assert "CUDA_HOME=" in log and "found without CUDA_HOME set" in log
    for arch in ("80", "90"):
        assert f"arch=compute_{arch},code=sm_{arch}" in log
    # imported again now, in a fresh process, the way kernels/_build.py imports the prebuilt module
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_HOME", "CUDA_PATH")}
    proc = subprocess.run([str(build_kernels.DEFAULT_PYTHON), "-c", build_kernels.IMPORT_CHECK,
                           str(built / "lib" / "kernels")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = json.loads(proc.stdout.strip().splitlines()[-1])["names"]
    assert {"bias_act", "upfirdn2d", "probe"} <= set(names)


def test_torchs_own_guess_misses_the_toolkit_here(built):
    """Why the discovery exists: with a wrapper nvcc outside the toolkit, torch's guess has no headers."""
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_HOME", "CUDA_PATH")}
    code = "import torch.utils.cpp_extension as c; print(c.CUDA_HOME)"
    proc = subprocess.run([str(build_kernels.DEFAULT_PYTHON), "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)
    guess = proc.stdout.strip().splitlines()[-1]
    from kernels.cuda_home import find_cuda_home, is_toolkit

    found, _ = find_cuda_home()
    assert is_toolkit(found)
    if is_toolkit(guess):
        pytest.skip(f"torch's guess {guess} is a toolkit on this machine: nothing to show")
    assert found != guess
