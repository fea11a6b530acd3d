"""Find the CUDA toolkit the kernels are compiled with, for ``setup.py`` and the JIT loader alike.

torch guesses ``CUDA_HOME`` once, when ``torch.utils.cpp_extension`` is imported: ``$CUDA_HOME``
or ``$CUDA_PATH``, else two folders above the ``nvcc`` found on PATH, else ``/usr/local/cuda``. When
that ``nvcc`` is a wrapper script placed outside the toolkit (``/usr/local/bin/nvcc`` running
``/usr/local/cuda-13.0/bin/nvcc``), the guess is ``/usr/local`` and the build stops at
``cuda_runtime.h: No such file or directory``. :func:`find_cuda_home` asks the real compiler
instead. In order:

1. ``$CUDA_HOME`` / ``$CUDA_PATH`` when set: the user's word, kept even when it looks wrong
   (the warning of :func:`ensure_cuda_home` then says what is missing);
2. the ``nvcc`` on PATH with symbolic links resolved, when two folders up is a toolkit;
3. where that ``nvcc`` really runs from: the ``TOP=`` line of ``nvcc -v --dryrun`` (nvcc prints
   its own folder there, whatever script started it);
4. the usual install folders: ``/usr/local/cuda``, ``/usr/local/cuda-X.Y`` (the version torch was
   built with first, then newest first), ``/opt/cuda``, ``/usr/lib/cuda``.

A toolkit is a folder with ``bin/nvcc`` and ``cuda_runtime.h`` (in ``include/`` or
``targets/*/include/``). Nothing here imports torch, so ``setup.py`` can use it before torch's
build helpers are imported.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

logger = logging.getLogger(__name__)

ENV_NAMES = ("CUDA_HOME", "CUDA_PATH")
USUAL_FOLDERS = ("/usr/local/cuda", "/opt/cuda", "/usr/lib/cuda")
_TOP = re.compile(r"^#\$ TOP=(.+?)\s*$", re.MULTILINE)


def is_toolkit(folder: str | os.PathLike[str]) -> bool:
    """True when ``folder`` holds ``bin/nvcc`` and ``cuda_runtime.h`` (``include/`` or ``targets/*/include/``)."""
    root = Path(folder)
    if not (root / "bin" / "nvcc").is_file():
        return False
    headers = [root / "include" / "cuda_runtime.h", *root.glob("targets/*/include/cuda_runtime.h")]
    return any(h.is_file() for h in headers)


def nvcc_top(nvcc: str, timeout: float = 30.0) -> str | None:
    """The toolkit folder ``nvcc`` reports on its ``TOP=`` line (``nvcc -v --dryrun``), resolved; None
    when it cannot be run or prints no such line."""
    with tempfile.TemporaryDirectory(prefix="facestyle-nvcc-") as tmp:
        probe = Path(tmp) / "probe.cu"
        probe.write_text("")
        try:
            proc = subprocess.run(
                [nvcc, "-v", "--dryrun", "-c", str(probe), "-o", str(Path(tmp) / "probe.o")],
                capture_output=True, text=True, timeout=timeout, cwd=tmp,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
    match = _TOP.search(proc.stderr + proc.stdout)
    return str(Path(match.group(1).strip().strip('"')).resolve()) if match else None


def _version_key(folder: str) -> tuple[int, ...]:
    tail = folder.rsplit("-", 1)[-1]
    return tuple(int(p) for p in tail.split(".") if p.isdigit())


def usual_folders(cuda_version: str | None = None) -> list[str]:
    """Install folders to try, in order: ``/usr/local/cuda``, ``/usr/local/cuda-<cuda_version>``,
    the other ``/usr/local/cuda-X.Y`` newest first, ``/opt/cuda``, ``/usr/lib/cuda``."""
    versioned = sorted(glob.glob("/usr/local/cuda-*"), key=_version_key, reverse=True)
    if cuda_version:
        versioned.sort(key=lambda f: f != f"/usr/local/cuda-{cuda_version}")  # stable: match first
    return [USUAL_FOLDERS[0], *versioned, *USUAL_FOLDERS[1:]]


def find_cuda_home(cuda_version: str | None = None) -> tuple[str | None, str]:
    """The CUDA toolkit folder and how it was found (steps 1-4 of the module docstring).

    Args:
        cuda_version: the CUDA version torch was built with (``torch.version.cuda``, e.g. ``"13.0"``);
            among the usual folders the one with this version is preferred.

    Returns:
        ``(folder, how)``; ``folder`` is None when no toolkit was found, and ``how`` then says what
        was tried.
    """
    for name in ENV_NAMES:
        if os.environ.get(name):
            return os.environ[name], f"${name}"
    nvcc = shutil.which("nvcc")
    if nvcc:
        beside = Path(nvcc).resolve().parent.parent
        if is_toolkit(beside):
            return str(beside), f"nvcc on PATH ({nvcc})"
        top = nvcc_top(nvcc)
        if top and is_toolkit(top):
            return top, f"where {nvcc} runs nvcc from (nvcc -v --dryrun: TOP={top})"
    for folder in usual_folders(cuda_version):
        if is_toolkit(folder):
            return str(Path(folder).resolve()), f"usual install folder {folder}"
    tried = f"nvcc on PATH ({nvcc})" if nvcc else "no nvcc on PATH"
    folders = ", ".join([USUAL_FOLDERS[0], "/usr/local/cuda-*", *USUAL_FOLDERS[1:]])
    return None, f"{tried}; no toolkit in {folders}"


def hint(folder_example: str = "/usr/local/cuda-X.Y") -> str:
    """The one sentence that says exactly what to set."""
    return (f"set CUDA_HOME to the CUDA toolkit folder that holds bin/nvcc and include/cuda_runtime.h "
            f"(e.g. export CUDA_HOME={folder_example}) or put that toolkit's bin/ first on PATH")


def ensure_cuda_home(cpp_extension: ModuleType | None = None, cuda_version: str | None = None) -> str | None:
    """The toolkit folder to build with; given the imported ``torch.utils.cpp_extension``, make it
    use that folder (it guessed its ``CUDA_HOME`` at import, see the module docstring).

    Logs one warning that says exactly what to set when no toolkit is found or ``$CUDA_HOME`` is not
    one. ``setup.py`` exports the result as ``$CUDA_HOME`` before importing torch's build helpers.

    Returns:
        The toolkit folder in use, or None.
    """
    folder, how = find_cuda_home(cuda_version)
    if folder is None:
        logger.warning("facestyle kernels: no CUDA toolkit found (%s): %s", how, hint())
        return None
    if not is_toolkit(folder):
        logger.warning("facestyle kernels: %s=%s is not a CUDA toolkit (no bin/nvcc or cuda_runtime.h): %s",
                       how.lstrip("$"), folder, hint())
    elif not how.startswith("$"):
        logger.info("facestyle kernels: CUDA_HOME=%s, found from %s", folder, how)
    if cpp_extension is not None:
        cpp_extension.CUDA_HOME = folder
    return folder


def main(argv: list[str]) -> int:
    """``python -m kernels.cuda_home``: print the toolkit folder and how it was found (exit 1 if none)."""
    folder, how = find_cuda_home(argv[0] if argv else None)
    if folder is None:
        print(f"no CUDA toolkit found ({how}): {hint()}", file=sys.stderr)
        return 1
    print(f"{folder}\t{how}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
