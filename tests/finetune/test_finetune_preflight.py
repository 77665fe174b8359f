"""Fine-tuning checks its data and its base model before Ray starts (issue 15, item 2).

`run_finetune(cfg, connect=...)` calls ``connect`` (the job's ``init_ray``) only after loading
the data, checking the targets and checking the base model (`guardray.modeling.limits.
check_max_length`, which runs `guardray.modeling.check.check_model`). Here ``connect`` raises
`_Stop`: a bad input must fail with its own error instead, and good input reaches it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from model_testlib import make_bad_models
from sample_testlib import write_sample_shards

from guardray.config import load_config
from guardray.errors import DataError, ModelError
from guardray.finetune.config import FinetuneConfig
from guardray.modeling.base import resolve_base

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "configs" / "debug" / "finetune.yaml"


class _Stop(Exception):
    """Raised by ``connect``: the run got as far as starting Ray."""


def _stop():
    raise _Stop


def _cfg(tmp_path: Path, *overrides: str) -> FinetuneConfig:
    return load_config(FinetuneConfig, DEBUG, [f"output_dir={tmp_path / 'out'}", *overrides])


def test_missing_or_empty_data_fails_before_ray(tmp_path):
    from guardray.finetune.run import run_finetune

    with pytest.raises((DataError, FileNotFoundError), match="missing"):
        run_finetune(_cfg(tmp_path, f"data.path={tmp_path / 'missing'}"), connect=_stop)
    (tmp_path / "empty").mkdir()
    with pytest.raises((DataError, FileNotFoundError), match="empty"):
        run_finetune(_cfg(tmp_path, f"data.path={tmp_path / 'empty'}"), connect=_stop)


def test_base_model_is_checked_before_ray(tmp_path):
    from guardray.finetune.run import run_finetune

    data = write_sample_shards(tmp_path / "data")
    bad = make_bad_models(tmp_path / "models", Path(resolve_base("tiny:xlmr")))
    with pytest.raises(ModelError, match=r"model\.base: .*pickle_only holds only pickle"):
        run_finetune(_cfg(tmp_path, f"data.path={data}", f"model.base={bad['pickle_only']}"),
                     connect=_stop)
    with pytest.raises(ModelError, match=r"needs its own model code .*model\.trust_remote_code"):
        run_finetune(_cfg(tmp_path, f"data.path={data}", f"model.base={bad['remote_code']}"),
                     connect=_stop)
    with pytest.raises(_Stop):  # good data and model: every check passed, Ray is next
        run_finetune(_cfg(tmp_path, f"data.path={data}"), connect=_stop)
