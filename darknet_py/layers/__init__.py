"""Layer kinds, one module each; importing this package registers them all.

Every module of this package is imported here, so a new layer kind is one new file; a module
that fails to import fails the package import loudly rather than leaving its kind unregistered.
"""
import importlib
import pkgutil

from .registry import LAYERS, LayerKind, LayerSpec, Shape

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in ("registry", "head"):
        importlib.import_module(f"{__name__}.{_module}")

__all__ = ["LAYERS", "LayerKind", "LayerSpec", "Shape"]
