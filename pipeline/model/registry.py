"""Official StyleGANEX checkpoints by name: the table, the cache folder, and name-or-path resolution.

Users name a model (``pixar``, ``age``...) and :func:`resolve_model` turns that into a local file::

    path = resolve_model("pixar")            # ~/.cache/facestyle/models/styleganex_toonify_pixar.pt
    model = load_model(path)

For a name, :func:`pipeline.model.download.ensure_cached` returns the cached file (checked once and
marked) or downloads it, resumably, checks its structure and only then puts it in place.

Environment (read at call time by :meth:`RegistryConfig.from_env`): ``FACESTYLE_MODEL_DIR`` is the
cache folder (default ``~/.cache/facestyle/models``), ``FACESTYLE_MODEL_URL`` a mirror replacing
:data:`OFFICIAL_BASE_URL`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import CheckpointError, ModelNotAvailableError
from pipeline.model.download import ensure_cached, format_size

OFFICIAL_BASE_URL = "https://huggingface.co/PKUWilliamYang/StyleGANEX/resolve/main/pretrained_models"
DEFAULT_MODEL_DIR = "~/.cache/facestyle/models"
ENV_MODEL_DIR = "FACESTYLE_MODEL_DIR"
ENV_MODEL_URL = "FACESTYLE_MODEL_URL"


@dataclass(frozen=True)
class ModelInfo:
    """One official checkpoint: its short name, file name, family and the official download URL."""

    name: str
    filename: str
    family: str
    description: str
    url: str
    aliases: tuple[str, ...] = ()


def _info(name: str, filename: str, family: str, description: str, *aliases: str) -> ModelInfo:
    stem = filename.removesuffix(".pt")
    alias = stem.removeprefix("styleganex_").replace("_", "-")
    names = tuple(dict.fromkeys(a for a in (*aliases, alias, stem.replace("_", "-")) if a != name))
    return ModelInfo(name, filename, family, description, f"{OFFICIAL_BASE_URL}/{filename}", names)


# The released checkpoints (github.com/williamyang1991/StyleGANEX, "Pretrained Models").
MODELS: Mapping[str, ModelInfo] = {m.name: m for m in (
    _info("cartoon", "styleganex_toonify_cartoon.pt", "toonify", "cartoon style"),
    _info("pixar", "styleganex_toonify_pixar.pt", "toonify", "Pixar 3D-animation style"),
    _info("arcane", "styleganex_toonify_arcane.pt", "toonify", "Arcane style"),
    _info("age", "styleganex_edit_age.pt", "editing", "age editing (uses --strength)"),
    _info("hair", "styleganex_edit_hair.pt", "editing", "hair colour editing", "hair-color", "hair-colour"),
    _info("inversion", "styleganex_inversion.pt", "reconstruction", "face inversion / reconstruction"),
    _info("sr", "styleganex_sr.pt", "super-resolution", "face super-resolution (any factor model)"),
    _info("sr32", "styleganex_sr32.pt", "super-resolution", "32x face super-resolution"),
    _info("sketch2face", "styleganex_sketch2face.pt", "translation", "sketch to face"),
    _info("mask2face", "styleganex_mask2face.pt", "translation", "parsing mask to face"),
)}


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


_BY_NAME: dict[str, ModelInfo] = {_key(n): m for m in MODELS.values() for n in (m.name, *m.aliases)}


@dataclass(frozen=True)
class RegistryConfig:
    """Where models are cached and where they come from.

    Args:
        model_dir: the cache folder (created on the first download).
        base_url: the folder URL the checkpoint file names are appended to.
        timeout: seconds a connect or a read may stall before the download counts as failed.
    """

    model_dir: Path
    base_url: str = OFFICIAL_BASE_URL
    timeout: float = 30.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RegistryConfig:
        """The configuration ``FACESTYLE_MODEL_DIR`` / ``FACESTYLE_MODEL_URL`` describe (defaults if unset)."""
        env = os.environ if environ is None else environ
        folder = env.get(ENV_MODEL_DIR) or DEFAULT_MODEL_DIR
        return cls(model_dir=Path(folder).expanduser(), base_url=env.get(ENV_MODEL_URL) or OFFICIAL_BASE_URL)

    def url_for(self, info: ModelInfo) -> str:
        """The download URL of ``info`` at this configuration's base URL."""
        return f"{self.base_url.rstrip('/')}/{info.filename}"

    def path_for(self, info: ModelInfo) -> Path:
        """Where ``info`` lives in the cache."""
        return self.model_dir / info.filename


@dataclass(frozen=True)
class ModelStatus:
    """One row of ``facestyle models``: is the checkpoint cached, where, and how big."""

    name: str
    info: ModelInfo
    cached: bool
    path: Path
    size: int | None


def find_model(name: str) -> ModelInfo | None:
    """The official model called ``name`` (or one of its aliases, case-insensitive), else ``None``."""
    return _BY_NAME.get(_key(name))


def get_model(name: str) -> ModelInfo:
    """Like :func:`find_model`, but an unknown name raises :class:`ModelNotAvailableError`."""
    info = find_model(name)
    if info is None:
        raise ModelNotAvailableError(f"unknown model {name!r}; known models: {', '.join(MODELS)} "
                                     "(or give the path of a .pt file)")
    return info


def _looks_like_path(arg: str) -> bool:
    seps = [s for s in (os.sep, os.altsep, "/") if s]
    return any(s in arg for s in seps) or arg.lower().endswith((".pt", ".pth")) or arg.startswith("~")


def resolve_model(name_or_path: str | os.PathLike[str], config: RegistryConfig | None = None,
                  download: bool = True, progress: bool = True) -> Path:
    """A local checkpoint file for a model name or a path.

    Args:
        name_or_path: an official model name or alias (see :data:`MODELS`), or a checkpoint path.
            A path-looking argument (a folder separator, ``~``, or a ``.pt``/``.pth`` suffix) is
            always a path; a bare word is a model name first, then an existing file.
        config: cache folder and mirror; default :meth:`RegistryConfig.from_env`.
        download: fetch a model that is not cached (else :class:`ModelNotAvailableError`).
        progress: show a tqdm progress bar on stderr while downloading.

    Returns:
        the path of an existing file (a cached model has passed the strict structure check).

    Raises:
        CheckpointError: a path that does not exist or is a folder; a downloaded or cached file that
            fails the structure check (a failed download is deleted, a file placed by hand is kept).
        ModelNotAvailableError: an unknown name, or a model that is not cached and cannot be
            downloaded (the message names the URL and the exact path to save the file at).
    """
    is_pathlike = not isinstance(name_or_path, str)
    arg = os.fspath(name_or_path)
    if is_pathlike or _looks_like_path(arg):
        return _existing_file(Path(arg).expanduser(), arg)
    info = find_model(arg)
    if info is None:
        if Path(arg).is_file():
            return Path(arg)
        info = get_model(arg)                           # raises: unknown name
    config = config or RegistryConfig.from_env()
    return ensure_cached(info.name, config.url_for(info), config.path_for(info), download=download,
                         progress=progress, timeout=config.timeout)


def _existing_file(path: Path, arg: str) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    hint = ""
    official = next((m for m in MODELS.values() if m.filename == path.name), None)
    if official is not None:
        hint = f" (to use the cached or downloaded official file, give the model name {official.name!r})"
    raise CheckpointError(f"checkpoint not found: {arg}{hint}")


def list_models(config: RegistryConfig | None = None) -> list[ModelStatus]:
    """Every official model in table order, with whether (and how big) its cached file is."""
    config = config or RegistryConfig.from_env()
    out = []
    for info in MODELS.values():
        path = config.path_for(info)
        size = path.stat().st_size if path.is_file() else None
        out.append(ModelStatus(info.name, info, size is not None, path, size))
    return out


def format_model_table(statuses: list[ModelStatus]) -> str:
    """An aligned text table: name, family, cached (with size) or not, description."""
    rows = [("NAME", "FAMILY", "CACHED", "DESCRIPTION")]
    rows += [(s.name, s.info.family, format_size(s.size) if s.cached and s.size is not None else "no",
              s.info.description) for s in statuses]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)), r[3]]).rstrip()
                     for r in rows)
