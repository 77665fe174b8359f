"""``guardray dedup --config FILE``: exact and near-duplicate removal (``jobs/dedup.py``)."""

from guardray.cli.job_runner import add_job_command


def register(sub) -> None:
    add_job_command(
        sub,
        "dedup",
        "remove exact and near-duplicate samples (embeddings on Ray Data, SemDeDup-style)",
        "guardray.dedup.config:DedupConfig",
        "jobs.dedup:main",
    )
