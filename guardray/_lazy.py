"""Package-level names that load their module on first use (PEP 562).

A stage package lists its public API in ``__init__``::

    __getattr__, __all__ = lazy_exports(__name__, {"run_pretrain": "run", ...})

so ``from guardray.pretrain import run_pretrain`` works while ``import guardray.pretrain``
stays cheap (no torch, Ray or DeepSpeed until a name is used). Other packages import a stage
only through these names, never its modules (`tests/test_layout.py` checks it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]
                 ) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` for ``package``.

    Args:
        package: the package's ``__name__``.
        exports: public name -> module that defines it, relative to ``package``
            (``"run"`` for ``{package}.run``).
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__, sorted(exports)
