"""Shared plumbing of job commands: ``guardray <job> --config FILE [key=value ...]``.

A job is a pydantic config class plus ``main(cfg) -> None`` in ``jobs/<job>.py``. The same
job runs as ``python jobs/<job>.py --config FILE key=value`` (what ``ray job submit`` runs)
and as ``guardray <job> ...``; both parse arguments here.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import sys
from typing import Any, Callable

log = logging.getLogger("guardray")


def import_ref(ref: str) -> Any:
    """Import ``"package.module:attribute"``."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--print-config`` and trailing ``key=value`` overrides."""
    p.add_argument("-c", "--config", metavar="FILE", help="job YAML (default: built-in defaults)")
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="override config keys, e.g. seed=1"
    )
    p.add_argument(
        "--print-config", action="store_true", help="print the resolved config as YAML and exit"
    )


def add_job_command(
    sub: argparse._SubParsersAction, name: str, help: str, config_ref: str, job_ref: str,
    errors: tuple[str, ...] = (),
) -> None:
    """Register ``guardray <name>`` running ``job_ref`` with a ``config_ref`` config.

    Args:
        errors: ``"module:Class"`` refs of the exceptions that mean bad input or a failed run
            (not a bug): they end the command with a one-line error and exit status 1
            instead of a traceback.
    """
    p = sub.add_parser(name, help=help, description=help)
    add_job_arguments(p)
    p.set_defaults(handler=functools.partial(_run, name=name, config_ref=config_ref,
                                             job_ref=job_ref, errors=errors))


def _run(args: argparse.Namespace, *, name: str, config_ref: str, job_ref: str,
         errors: tuple[str, ...]) -> int:
    expected = tuple(import_ref(ref) for ref in errors)
    try:
        return run_job(import_ref(config_ref), lambda: import_ref(job_ref), args)
    except expected as exc:
        log.error("%s failed: %s", name, exc)
        return 1


def run_job(config_cls: type, get_main: Callable[[], Callable], args: argparse.Namespace) -> int:
    """Load the config (file + overrides), then print it or run the job."""
    from guardray.config import load_config

    cfg = load_config(config_cls, args.config, args.overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
        return 0
    get_main()(cfg)
    return 0


def script_main(config_cls: type, main: Callable, argv: list[str] | None = None) -> None:
    """``if __name__ == "__main__"`` body of ``jobs/<job>.py``; exits with the job's status."""
    from guardray.config.base import ConfigError
    from guardray.logging_setup import setup_logging

    parser = argparse.ArgumentParser(description=(main.__doc__ or "").strip().splitlines()[0])
    add_job_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging()
    try:
        code = run_job(config_cls, lambda: main, args)
    except ConfigError as exc:
        log.error("%s", exc)
        code = 2
    sys.exit(code)
