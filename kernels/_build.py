"""Loader of the CUDA extension behind ``kernels`` (built lazily, cached, shared between processes).

Nothing here runs at import. On the first call that needs the CUDA path, :func:`load_extension`:

1. returns the memoised module if an earlier call loaded it (or re-raises the memoised failure);
2. imports the ahead-of-time build ``kernels._C`` when it is installed (see ``kernels/aot.py``) and
   probes it on the current device;
3. otherwise looks in the cache folder ``<root>/facestyle_kernels-<sha256>``, where ``root`` is
   ``$FACESTYLE_KERNEL_CACHE`` (default ``~/.cache/facestyle/kernels``) and the SHA-256 covers the
   source files in ``kernels/csrc``, the torch, CUDA and Python versions and the compute
   capabilities of the visible GPUs; a folder with a built module is imported directly;
4. otherwise builds with ``torch.utils.cpp_extension.load`` (ninja) in a temporary folder next to
   the final one and renames it into place, so other processes never see a half-built folder
   (the module is then probed on the device: a build without an image for it is an error).
   A file lock (per cache folder) serialises builds across processes and a threading lock across
   the daemon's threads.

Environment variables (read at call time):

* ``FACESTYLE_KERNELS=ref`` forces the plain-PyTorch reference everywhere, even for ``impl="cuda"``.
* ``FACESTYLE_KERNEL_CACHE=<dir>`` moves the build cache.
* ``CUDA_HOME`` (or ``CUDA_PATH``): the toolkit to build with; when unset, the toolkit the ``nvcc``
  on PATH really runs from, or a usual install folder (``kernels/cuda_home.py``), not torch's guess.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType

import torch

logger = logging.getLogger(__name__)

ENV_FORCE = "FACESTYLE_KERNELS"
ENV_CACHE = "FACESTYLE_KERNEL_CACHE"
DEFAULT_CACHE = Path("~/.cache/facestyle/kernels")
CSRC = Path(__file__).resolve().parent / "csrc"
MODULE_PREFIX = "facestyle_kernels"
PREBUILT_MODULE = f"{__package__ or 'kernels'}._C"
IMPLS = ("auto", "cuda", "ref")


class KernelBuildError(RuntimeError):
    """The CUDA extension could not be built, loaded or run on this device."""


_lock = threading.Lock()
_module: ModuleType | None = None
_failure: KernelBuildError | None = None
_origin = ""  # where the loaded module came from, for cuda_status()
_warned = False  # "auto" has logged its fallback warning


def source_files(csrc: Path | None = None) -> list[Path]:
    """Every file the extension is built from (``.cu``, ``.cpp``, ``.h``) in ``csrc`` (default
    ``kernels/csrc``), sorted by name."""
    folder = CSRC if csrc is None else csrc
    return sorted(p for p in folder.iterdir() if p.suffix in (".cu", ".cpp", ".h") and p.is_file())


def compiled_sources(csrc: Path | None = None) -> list[Path]:
    """The translation units (``.cu`` and ``.cpp``) of the extension, sorted by name."""
    return [p for p in source_files(csrc) if p.suffix in (".cu", ".cpp")]


def source_digest(paths: Iterable[Path], extra: Sequence[str] = ()) -> str:
    """SHA-256 (hex) over the names and bytes of ``paths`` and the strings in ``extra``.

    Args:
        paths: source files; their order does not matter (they are sorted by name).
        extra: further build inputs (versions, GPU architectures), order matters.

    Returns:
        64 hex characters; any change to a file's name or content or to ``extra`` changes it.
    """
    h = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        data = path.read_bytes()
        h.update(f"{path.name}\0{len(data)}\0".encode())
        h.update(data)
    for item in extra:
        h.update(f"{item}\0".encode())
    return h.hexdigest()


def cache_root() -> Path:
    """The build cache root: ``$FACESTYLE_KERNEL_CACHE`` or ``~/.cache/facestyle/kernels``."""
    return Path(os.environ.get(ENV_CACHE) or DEFAULT_CACHE).expanduser()


def forced_reference() -> bool:
    """True when ``FACESTYLE_KERNELS=ref`` asks for the reference implementation everywhere."""
    return os.environ.get(ENV_FORCE, "").strip().lower() == "ref"


def _gpu_archs() -> list[str]:
    """Compute capabilities of the visible GPUs, e.g. ``["90"]``, sorted and without repeats."""
    caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return [f"{major}{minor}" for major, minor in sorted(caps)]


def build_key() -> tuple[str, list[str]]:
    """The cache folder name for this machine and the nvcc architecture flags to build with."""
    archs = _gpu_archs()
    if not archs:
        raise KernelBuildError("no CUDA device is visible, nothing to build the kernels for")
    extra = [
        f"torch={torch.__version__}",
        f"cuda={torch.version.cuda}",
        "archs=" + ",".join(archs),
        f"python={sys.version_info[0]}.{sys.version_info[1]}",
    ]
    digest = source_digest(source_files(CSRC), extra)
    flags = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    return f"{MODULE_PREFIX}-{digest[:32]}", flags


def _import_from_folder(name: str, folder: Path) -> ModuleType:
    """Import the extension module ``name`` from the shared library in ``folder``."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES + [".so", ".pyd"]:
        path = folder / f"{name}{suffix}"
        if path.is_file():
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                break
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise ImportError(f"no built module {name!r} in {folder}")


def _compile(name: str, build_dir: Path, arch_flags: list[str]) -> ModuleType:
    """Build (ninja) and import the extension in ``build_dir``; raises on any failure."""
    from torch.utils import cpp_extension

    from kernels.cuda_home import ensure_cuda_home, hint

    if ensure_cuda_home(cpp_extension, torch.version.cuda) is None:  # its own guess is not trusted
        raise KernelBuildError(f"no CUDA toolkit found to build the kernels with: {hint()}")
    common = ["-O3"]  # the C++ standard is torch's choice (its headers need it)
    return cpp_extension.load(
        name=name,
        sources=[str(p) for p in compiled_sources(CSRC)],
        extra_cflags=common,
        extra_cuda_cflags=common + arch_flags,
        extra_include_paths=[str(CSRC)],
        build_directory=str(build_dir),
        verbose=logger.isEnabledFor(logging.DEBUG),
        with_cuda=True,
    )


def _file_lock(path: Path):
    """A cross-process lock file (``filelock`` ships with torch)."""
    from filelock import FileLock

    return FileLock(str(path))


def _build_or_load_cached(root: Path, folder_name: str, arch_flags: list[str]) -> tuple[ModuleType, str]:
    """Steps 3 and 4 of the module docstring; returns (module, description of its origin)."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / folder_name
    module_name = folder_name.replace("-", "_")
    with _file_lock(root / f"{folder_name}.lock"):
        if final.is_dir():
            try:
                return _import_from_folder(module_name, final), f"cached build {final}"
            except ImportError as exc:  # a stale or foreign folder: rebuild it
                logger.warning("facestyle kernels: discarding unusable cache %s (%s)", final, exc)
                shutil.rmtree(final, ignore_errors=True)
        for stale in root.glob(f"{folder_name}.tmp-*"):  # left by a killed build; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{folder_name}.tmp-", dir=root))
        try:
            logger.info("facestyle kernels: building the CUDA extension in %s (once per machine)", final)
            module = _compile(module_name, tmp, arch_flags)
            try:
                os.replace(tmp, final)  # atomic: the folder appears complete or not at all
            except OSError:
                if not final.is_dir():  # someone else installed it meanwhile: keep theirs
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return module, f"JIT build {final}"


def _load_uncached() -> tuple[ModuleType, str]:
    if not torch.cuda.is_available():
        raise KernelBuildError("CUDA is not available in this torch build or on this machine")
    try:
        prebuilt = importlib.import_module(PREBUILT_MODULE)
    except ImportError:
        prebuilt = None
    if prebuilt is not None:
        try:
            prebuilt.probe()
            return prebuilt, f"prebuilt {PREBUILT_MODULE}"
        except (RuntimeError, AttributeError) as exc:
            logger.info("facestyle kernels: prebuilt %s unusable here (%s); building", PREBUILT_MODULE, exc)
    folder_name, arch_flags = build_key()
    module, origin = _build_or_load_cached(cache_root(), folder_name, arch_flags)
    module.probe()
    return module, origin


def load_extension() -> ModuleType:
    """The CUDA extension module, loaded or built on first use and memoised (steps 1-4 above).

    Raises:
        KernelBuildError: no CUDA, the build failed, or the build cannot run on this device.
            The failure is memoised too: later calls raise it again without rebuilding.
    """
    global _module, _failure, _origin
    with _lock:
        if _module is not None:
            return _module
        if _failure is not None:
            raise _failure
        try:
            _module, _origin = _load_uncached()
        except KernelBuildError as exc:
            _failure = exc
            raise
        except Exception as exc:  # compiler, linker, import and probe errors all end up here
            _failure = KernelBuildError(f"building the facestyle CUDA kernels failed: {exc}")
            raise _failure from exc
        return _module


def select_impl(impl: str, device: torch.device) -> str:
    """Resolve ``impl`` ("auto" | "cuda" | "ref") for tensors on ``device`` to "cuda" or "ref".

    1. Unknown ``impl`` -> ValueError. ``"ref"`` or ``FACESTYLE_KERNELS=ref`` -> "ref".
    2. ``"cuda"``: ValueError for a non-CUDA device, else the extension must load
       (KernelBuildError otherwise).
    3. ``"auto"``: "ref" off CUDA; on CUDA "cuda" when the extension loads, else "ref" with one
       logged warning per process.
    """
    global _warned
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "ref" or forced_reference():
        return "ref"
    on_cuda = torch.device(device).type == "cuda"
    if impl == "cuda":
        if not on_cuda:
            raise ValueError(f"impl='cuda' needs CUDA tensors, got tensors on {device}")
        load_extension()
        return "cuda"
    if not on_cuda:
        return "ref"
    try:
        load_extension()
        return "cuda"
    except KernelBuildError as exc:
        with _lock:
            first, _warned = not _warned, True
        if first:
            logger.warning(
                "facestyle kernels: CUDA extension unavailable, using the PyTorch reference: %s", exc
            )
        return "ref"


def status(build: bool = False) -> str:
    """One line about the CUDA path; with ``build=True`` it first tries to load the extension."""
    if forced_reference():
        return f"reference only ({ENV_FORCE}=ref)"
    if not torch.cuda.is_available():
        return f"reference only: no CUDA (torch {torch.__version__}, CUDA {torch.version.cuda})"
    if build:
        try:
            load_extension()
        except KernelBuildError:
            pass
    module, failure, origin = _module, _failure, _origin  # no lock: never wait for a build here
    if module is not None:
        return f"CUDA kernels loaded: {origin}"
    if failure is not None:
        return f"CUDA kernels unavailable, reference in use: {failure}"
    return f"CUDA kernels not loaded yet (built on first CUDA use into {cache_root()})"


def reset() -> None:
    """Forget the memoised module or failure (tests; a daemon after fixing its toolchain)."""
    global _module, _failure, _origin, _warned
    with _lock:
        _module, _failure, _origin, _warned = None, None, "", False
