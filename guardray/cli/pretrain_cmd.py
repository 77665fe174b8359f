"""``guardray pretrain --config FILE [key=value ...]``: GIP pretraining (``jobs/pretrain.py``).

Data problems (unreadable shards, unknown policy ids, too few rows for one step) and failed
runs end with a one-line error and exit status 1 instead of a traceback.
"""

from guardray.cli.job_runner import add_job_command


def register(sub) -> None:
    add_job_command(
        sub, "pretrain",
        "GIP pretraining (GuardFormer 3.3: MLM + ALICE++ + CE) on Ray Train + DeepSpeed, "
        "exported as a Hugging Face checkpoint",
        "guardray.train.gip_config:PretrainConfig", "jobs.pretrain:main",
        errors=("guardray.train.gip_data:GIPDataError", "guardray.train.gip_ray:PretrainError",
                "guardray.io.shards:CorruptShardError", "guardray.io.shards:ShardSchemaError",
                "builtins:FileNotFoundError"))
