"""``guardray generate --config FILE``: synthetic data generation (``jobs/generate.py``)."""

from guardray.cli.job_runner import add_job_command


def register(sub) -> None:
    add_job_command(
        sub,
        "generate",
        "generate labelled synthetic prompts for policies with an LLM on Ray Data "
        "(GuardFormer 3.1/3.3)",
        "guardray.synth.config:GenerateConfig",
        "jobs.generate:main",
    )
