"""Ahead-of-time build of the CUDA kernels, for a ``setup.py`` that wants them prebuilt.

Usage in ``setup.py`` (at the repository root, next to ``kernels/``)::

    from torch.utils.cpp_extension import BuildExtension
    ext_modules = []
    if os.environ.get("FACESTYLE_BUILD_KERNELS") == "1":
        from kernels.aot import cuda_extensions, export_cuda_home
        export_cuda_home()  # before torch's build helpers are imported: they guess it at import
        ext_modules = cuda_extensions()
    setup(..., ext_modules=ext_modules, cmdclass={"build_ext": BuildExtension})

The module installs as ``kernels._C``; ``kernels/_build.py`` imports it before trying a JIT
build and falls back to the JIT build when it cannot run on the current GPU. The architectures
come from ``TORCH_CUDA_ARCH_LIST`` (torch's own rule), e.g. ``"8.0;8.6;9.0+PTX"``; CI builds
``"8.0;9.0"`` (``scripts/build_kernels.py``). The toolkit is found as ``kernels/cuda_home.py`` says
when ``CUDA_HOME`` is not set.
"""

from __future__ import annotations

import os
from pathlib import Path

from kernels._build import CSRC, compiled_sources
from kernels.cuda_home import ensure_cuda_home


def export_cuda_home() -> str | None:
    """Set ``$CUDA_HOME`` for this build to the toolkit :func:`kernels.cuda_home.find_cuda_home`
    finds, when neither ``CUDA_HOME`` nor ``CUDA_PATH`` is set; call it before importing
    ``torch.utils.cpp_extension``. Returns the folder, or None (with a warning that says what to
    set) when no toolkit is found. Meant for ``setup.py``, a top-level build script.
    """
    import torch

    folder = ensure_cuda_home(cuda_version=torch.version.cuda)
    if folder and not any(os.environ.get(n) for n in ("CUDA_HOME", "CUDA_PATH")):
        os.environ["CUDA_HOME"] = folder
        print(f"facestyle kernels: CUDA_HOME={folder} (found without CUDA_HOME set)", flush=True)
    return folder


def cuda_extensions(root: str | os.PathLike[str] | None = None) -> list:
    """``[CUDAExtension("kernels._C", ...)]`` built from ``kernels/csrc``.

    Args:
        root: folder the source paths are made relative to (setuptools wants paths relative to
            ``setup.py``); default: the folder that holds the ``kernels`` package.

    Returns:
        A list with one ``torch.utils.cpp_extension.CUDAExtension``. torch is imported here, not
        at module import, so ``setup.py`` can import this file cheaply.
    """
    from torch.utils.cpp_extension import CUDAExtension

    base = Path(root) if root is not None else CSRC.parent.parent
    package = __package__ or "kernels"

    def rel(p: Path) -> str:
        return os.path.relpath(p, base)

    flags = ["-O3"]  # the C++ standard is left to torch (its headers decide)
    return [
        CUDAExtension(
            name=f"{package}._C",
            sources=[rel(p) for p in compiled_sources(CSRC)],
            include_dirs=[rel(CSRC)],
            extra_compile_args={"cxx": flags, "nvcc": flags},
        )
    ]
