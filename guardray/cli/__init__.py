"""The ``guardray`` command line.

Each subcommand lives in its own module under ``guardray.cli`` and exposes
``register(subparsers) -> None``, which adds its parser and sets ``handler=fn`` where
``fn(args) -> int | None``. Modules here import only argparse-level things at import time;
handlers import heavy libraries (torch, ray) when they run, so ``guardray --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from guardray import __version__
from guardray.config.base import ConfigError

log = logging.getLogger("guardray")

# Subcommand modules, in the order `guardray --help` lists them. Later stages add theirs here.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "guardray.cli.version_cmd",
    "guardray.cli.policies_cmd",
    "guardray.cli.models_cmd",
    "guardray.cli.pipeline_cmd",
    "guardray.cli.generate_cmd",
    "guardray.cli.dedup_cmd",
    "guardray.cli.pretrain_cmd",
    "guardray.cli.finetune_cmd",
    "guardray.cli.evaluate_cmd",
    "guardray.cli.merge_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="guardray",
        description="Train small, fast guardrail classifiers for custom policies on Ray.",
    )
    parser.add_argument("--version", action="version", version=f"guardray {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a stage that has not landed yet: leave it out of the CLI
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``guardray`` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from guardray.logging_setup import setup_logging

    setup_logging(logging.WARNING if args.quiet else logging.INFO - 10 * max(0, args.verbose - 1))
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover - python -m guardray.cli
    sys.exit(main())
