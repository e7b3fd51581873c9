"""Package namespaces whose names import on first use.

``import pyterrier_shallow`` (and the command line's ``--help``) then loads no torch, transformers or PyTerrier until
a name that needs them is touched.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Returns a package's ``__getattr__`` and ``__dir__`` for names that load on first use.

    Args:
        package: the package's ``__name__``.
        exports: each public name and where it lives: ``"module"`` for a module itself, ``"module:attribute"``
            for a name inside one; a leading dot makes the module relative to ``package``.
    """

    def __getattr__(name: str) -> object:
        try:
            target = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module_name, _, attribute = target.partition(":")
        module = importlib.import_module(module_name, package)
        value = getattr(module, attribute) if attribute else module
        setattr(sys.modules[package], name, value)  # later lookups find it without this hook
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    sys.modules[package].__class__ = _binding_guard(package, exports)
    return __getattr__, __dir__


def _binding_guard(package: str, exports: Mapping[str, str]) -> type[types.ModuleType]:
    """A module class for ``package`` that keeps an exported name bound to what it exports.

    Importing a submodule binds it on its package under its own name, so ``budget.sweep`` (the function, from the
    submodule ``budget.sweep``) would become the module once anything imported the submodule. This class binds the
    exported attribute instead.
    """

    class GuardedPackage(types.ModuleType):
        def __setattr__(self, name: str, value: object) -> None:
            module_name, _, attribute = exports.get(name, "").partition(":")
            if (attribute and isinstance(value, types.ModuleType)
                    and value.__name__ == importlib.util.resolve_name(module_name, package)):
                value = getattr(value, attribute)
            super().__setattr__(name, value)

    return GuardedPackage
