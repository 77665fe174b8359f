"""``guardray version``: the package version and the versions of the main libraries."""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version

LIBRARIES = ("torch", "ray", "transformers", "sentence-transformers", "deepspeed", "pyarrow", "vllm")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("version", help="print the guardray version and library versions")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from guardray import __version__

    print(f"guardray {__version__}")
    for name in LIBRARIES:
        try:
            print(f"  {name} {version(name)}")
        except PackageNotFoundError:
            print(f"  {name} (not installed)")
    return 0
