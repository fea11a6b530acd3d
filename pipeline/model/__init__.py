"""The StyleGANEX network: architecture presets, modules and checkpoint I/O."""
from pipeline.model.arch import Arch, Widths, arch_from_opts, tiny
from pipeline.model.checkpoint import build_model, load_model, read_checkpoint
from pipeline.model.styleganex import Latents, StyleGANEX

__all__ = ["Arch", "Latents", "StyleGANEX", "Widths", "arch_from_opts", "build_model", "load_model",
           "read_checkpoint", "tiny"]
