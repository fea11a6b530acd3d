"""Old import paths that the README documented before the package was split into folders.

``import pipeline.vsfilter`` (and the other names in :data:`ALIASES`) still works: the import
gives the module at its new place, the same module object, so state and patches are shared.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

ALIASES = {
    "pipeline.vsfilter": "pipeline.plugins.vapoursynth",
    "pipeline.client": "pipeline.service.client",
    "pipeline.cpu_allocator": "pipeline.runtime.cpu_allocator",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """The target module is already executed."""


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        new = ALIASES.get(fullname)
        return None if new is None else importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def install() -> None:
    """Make the old names importable (idempotent)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
