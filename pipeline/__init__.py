"""facestyle: stylize faces in real footage with the StyleGANEX model family.

The stable Python API (used by the CLI, the daemon, plugins and tests)::

    from pipeline import load_model
    model = load_model("styleganex_toonify_pixar.pt", device="cpu")
    y = model.stylize(x1, x2)          # x1 [B,3,H,W] in [-1,1], H and W multiples of 8 -> [B,3,4H,4W]
"""
from pipeline import _aliases
from pipeline.errors import (
    CheckpointError,
    FacestyleError,
    InputError,
    ModelNotAvailableError,
    NoFaceError,
    OutputError,
)
from pipeline.model import Latents, StyleGANEX, build_model, load_model, read_checkpoint
from pipeline.model.random_checkpoint import make_random_checkpoint, save_checkpoint

_aliases.install()

__all__ = [
    "CheckpointError", "FacestyleError", "InputError", "Latents", "ModelNotAvailableError", "NoFaceError",
    "OutputError", "StyleGANEX", "build_model", "load_model", "make_random_checkpoint", "read_checkpoint",
    "save_checkpoint",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``pipeline.client`` and the other pre-split names (see :mod:`pipeline._aliases`)."""
    import importlib

    new = _aliases.ALIASES.get(f"{__name__}.{name}")
    if new is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return importlib.import_module(new)
