"""``guardray pipeline --config FILE``: the end-to-end job (``jobs/pipeline.py``)."""

from guardray.cli.job_runner import add_job_command


def register(sub) -> None:
    add_job_command(
        sub,
        "pipeline",
        "run the end-to-end pipeline (the stages that exist so far) on Ray",
        "guardray.pipeline.config:PipelineConfig",
        "jobs.pipeline:main",
    )
