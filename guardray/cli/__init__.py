"""The ``guardray`` command line.

Every job of `guardray.cli.registry.JOBS` is a subcommand with the standard form ``guardray <job>
--config FILE [key=value ...]`` (`guardray.cli.job_runner`), unless it has a module
``guardray.cli.<job>_cmd`` with a richer form (``evaluate``, ``merge``) that still runs the job's
``main``. Tool commands (version, policies, models) have their own modules. Each module exposes
``register(subparsers) -> None``, which adds its parser and sets ``handler=fn`` where ``fn(args) ->
int | None``; every handler ends expected errors the same way
(`guardray.cli.job_runner.run_guarded`). Modules here import only argparse-level things at import
time; handlers import heavy libraries (torch, ray) when they run, so ``guardray --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from guardray import __version__

log = logging.getLogger("guardray")

# Commands that are not jobs, listed first by `guardray --help`.
TOOL_MODULES: tuple[str, ...] = (
    "guardray.cli.version_cmd",
    "guardray.cli.policies_cmd",
    "guardray.cli.models_cmd",
)


def _job_module(name: str):
    """``guardray.cli.<name>_cmd`` when the job has its own command-line form, else None."""
    try:
        return importlib.import_module(f"guardray.cli.{name}_cmd")
    except ModuleNotFoundError as exc:
        if exc.name == f"guardray.cli.{name}_cmd":
            return None
        raise


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
    for name in TOOL_MODULES:
        importlib.import_module(name).register(sub)
    from guardray.cli.job_runner import add_job_command
    from guardray.cli.registry import JOBS

    for job in JOBS.values():  # each job: the standard form, or its own module's richer one
        module = _job_module(job.name)
        if module is None:
            add_job_command(sub, job)
        else:
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
    from guardray.cli.job_runner import run_guarded

    return run_guarded(args.command, lambda: handler(args))


if __name__ == "__main__":  # pragma: no cover - python -m guardray.cli
    sys.exit(main())
