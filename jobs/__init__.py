"""Thin job entrypoints, one per stage: ``main(cfg) -> None``.

Each runs as ``python jobs/<job>.py --config FILE [key=value ...]`` (locally or through
``ray job submit``) and as ``guardray <job> ...``.
"""
