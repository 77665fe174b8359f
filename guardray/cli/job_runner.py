"""The one entry contract of every job: ``guardray <job> ...`` and ``python jobs/<job>.py ...``.

A job is a pydantic config class plus ``main(cfg) -> None`` in ``jobs/<job>.py``, listed in
`guardray.cli.registry.JOBS`. Both ways of starting it parse ``--config FILE``, trailing
``key=value`` overrides and ``--print-config`` here, run the same ``main``, and end on an
expected error (`guardray.errors.is_expected`) the same way: one line on stderr and exit status 1
(2 for an invalid configuration). That holds under ``ray job submit`` too, where the script's
exit status is the job's.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable

from guardray.cli.registry import JOBS, Job, import_ref
from guardray.errors import is_expected, report

log = logging.getLogger("guardray")


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--print-config`` and trailing ``key=value`` overrides."""
    p.add_argument("-c", "--config", metavar="FILE", help="job YAML (default: built-in defaults)")
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="override config keys, e.g. seed=1"
    )
    p.add_argument(
        "--print-config", action="store_true", help="print the resolved config as YAML and exit"
    )


def add_job_command(sub: argparse._SubParsersAction, job: Job) -> None:
    """Register ``guardray <job.name>`` running ``job.main`` with a ``job.config`` config."""
    p = sub.add_parser(job.name, help=job.help, description=job.help)
    add_job_arguments(p)
    p.set_defaults(handler=functools.partial(_run, job=job))


def _run(args: argparse.Namespace, *, job: Job) -> int:
    return run_job(import_ref(job.config), lambda: import_ref(job.main), args)


def run_job(config_cls: type, get_main: Callable[[], Callable], args: argparse.Namespace) -> int:
    """Load the config (file + overrides), then print it or run the job.

    Expected errors propagate; `run_guarded` turns them into one line and an exit status.
    """
    from guardray.config import load_config

    return print_or_run(load_config(config_cls, args.config, args.overrides), get_main, args)


def set_flags(data: dict, args: argparse.Namespace, keys: dict[str, str]) -> None:
    """Copy each given flag into the config mapping ``data``: ``keys`` maps an ``args``
    attribute to a dotted key (``{"batch_size": "inference.batch_size"}``); flags left at
    None are skipped, and a missing or null section on the way is created."""
    for flag, dotted in keys.items():
        value = getattr(args, flag)
        if value is None:
            continue
        *sections, key = dotted.split(".")
        node = data
        for name in sections:
            node[name] = dict(node.get(name) or {})
            node = node[name]
        node[key] = value


def print_or_run(cfg, get_main: Callable[[], Callable], args: argparse.Namespace) -> int:
    """Print the resolved ``cfg`` as YAML (``--print-config``) or run ``get_main()(cfg)``."""
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
        return 0
    get_main()(cfg)
    return 0


def run_guarded(name: str, fn: Callable[[], int | None]) -> int:
    """``fn()``'s exit status; an expected error (`guardray.errors.is_expected`) becomes one
    logged line and status 1 (2 for an invalid configuration), Ctrl-C status 130. Other errors
    keep their traceback."""
    try:
        return int(fn() or 0)
    except KeyboardInterrupt:
        log.error("%s interrupted", name)
        return 130
    except Exception as exc:
        if not is_expected(exc):
            raise
        return report(name, exc, log)


def script_main(name: str, main: Callable, argv: list[str] | None = None) -> None:
    """``if __name__ == "__main__"`` body of ``jobs/<name>.py``; exits with the job's status."""
    from guardray.logging_setup import setup_logging

    job = JOBS[name]
    parser = argparse.ArgumentParser(prog=f"jobs/{name}.py", description=job.help)
    add_job_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging()
    sys.exit(run_guarded(name, lambda: run_job(import_ref(job.config), lambda: main, args)))
