"""``guardray finetune --config FILE [key=value ...]``: the fine-tuning job (``jobs/finetune.py``).

Data problems (unreadable files, bad labels, missing splits) and existing checkpoints end with
a one-line error and exit status 1 instead of a traceback.
"""

from guardray.cli.job_runner import add_job_command


def register(sub) -> None:
    add_job_command(
        sub, "finetune",
        "fine-tune guard classifiers (PolicyGuard / GuardFormer CFT or FFT), one Ray Tune trial "
        "per policy and seed",
        "guardray.train.finetune_config:FinetuneConfig", "jobs.finetune:main",
        errors=("guardray.eval.datasets:DatasetError",
                "guardray.eval.datasets:MissingDependencyError",
                "guardray.train.finetune_data:FinetuneDataError",
                "guardray.train.finetune_ray:FinetuneError", "builtins:FileExistsError"))
