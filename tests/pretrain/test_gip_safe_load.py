"""DeepSpeed checkpoint files load without running code from them (`gip_safe_load`)."""

from __future__ import annotations

import os

import pytest
import torch

from guardray.pretrain.safe_load import (
    UnsafeCheckpointError,
    allowed_globals,
    load_weights_only,
)


class Payload:
    """What an attacker plants: unpickling it creates ``path`` (any code could run instead)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (self.path,))


def test_planted_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    f = tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": {"w": torch.ones(2)}, "x": Payload(str(marker))}, f)
    with pytest.raises(UnsafeCheckpointError, match="mp_rank_00_model_states.pt.*refused"):
        load_weights_only(str(f))
    assert not marker.exists()


def test_deepspeed_types_load(tmp_path):
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    assert len(allowed_globals()) == 4
    state = {"loss_scaler": LossScaler(scale=1.0), "dyn": DynamicLossScaler(
                 init_scale=8.0, scale_window=10, min_scale=1.0, delayed_shift=1,
                 consecutive_hysteresis=False),
             "zero_stage": ZeroStageEnum.gradients,
             "frag": fragment_address(numel=3, start=5),
             "optimizer_state_dict": {"state": {0: {"exp_avg": torch.arange(3.0)}}}}
    f = tmp_path / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    torch.save(state, f)
    back = load_weights_only(str(f))
    assert back["zero_stage"] is ZeroStageEnum.gradients
    assert back["frag"] == fragment_address(numel=3, start=5)
    assert back["loss_scaler"].cur_scale == 1.0 and back["dyn"].cur_scale == 8.0
    torch.testing.assert_close(back["optimizer_state_dict"]["state"][0]["exp_avg"],
                               torch.arange(3.0))
