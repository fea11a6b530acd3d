"""The StyleGANEX network: architecture presets, modules and checkpoint I/O."""
from .arch import Arch, Widths, arch_from_opts, tiny
from .checkpoint import build_model, load_model, read_checkpoint
from .styleganex import Latents, StyleGANEX

__all__ = ["Arch", "Latents", "StyleGANEX", "Widths", "arch_from_opts", "build_model", "load_model",
           "read_checkpoint", "tiny"]
