"""``guardray finetune --config FILE [key=value ...]``: the fine-tuning job (``jobs/finetune.py``).

Same arguments as every job command (`guardray.cli.job_runner`); data problems (unreadable
files, bad labels, missing splits) and existing checkpoints end with a one-line error and exit
status 1 instead of a traceback.
"""

from __future__ import annotations

import argparse
import logging

from guardray.cli.job_runner import add_job_arguments

HELP = ("fine-tune guard classifiers (PolicyGuard / GuardFormer CFT or FFT), one Ray Tune trial "
        "per policy and seed")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help=HELP, description=HELP)
    add_job_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from guardray.cli.job_runner import run_job
    from guardray.eval.datasets import DatasetError, MissingDependencyError
    from guardray.train.finetune_config import FinetuneConfig
    from guardray.train.finetune_data import FinetuneDataError
    from guardray.train.finetune_ray import FinetuneError

    def get_main():
        from jobs.finetune import main

        return main

    try:
        return run_job(FinetuneConfig, get_main, args)
    except (DatasetError, MissingDependencyError, FinetuneDataError, FinetuneError,
            FileExistsError) as exc:
        logging.getLogger("guardray").error("finetune failed: %s", exc)
        return 1
