"""`guardray.modeling.check.check_model`: what evaluate, pretrain and fine-tune check before Ray.

Issue 15, item 2: ``guardray evaluate --model <not a model>`` failed inside a Ray actor after
about 20 s with a 300-600 line traceback ending in "install sentencepiece"; a pickle-only
folder and a model needing remote code were refused with a traceback (item 3).
"""

from __future__ import annotations

import pytest
from model_testlib import BAD_MODELS, make_bad_models

from guardray.errors import ModelError
from guardray.modeling.base import resolve_base
from guardray.modeling.check import check_model, is_local_ref
from guardray.modeling.limits import check_max_length


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return make_bad_models(tmp_path_factory.mktemp("bad-models"), __import__("pathlib").Path(
        resolve_base("tiny:xlmr")))


@pytest.mark.parametrize("name", sorted(BAD_MODELS))
def test_each_defect_is_one_line_naming_the_folder(bad, name):
    with pytest.raises(ModelError) as info:
        check_model(str(bad[name]), field="model (--model)",
                    trust_field="inference.trust_remote_code")
    msg = str(info.value)
    assert msg.startswith(f"model (--model): {bad[name]}") and BAD_MODELS[name] in msg, msg
    assert "\n" not in msg
    if name == "remote_code":
        assert "inference.trust_remote_code=true" in msg
    assert not (bad["remote_code"] / "PWNED").exists()  # no code from the folder ran


def test_a_good_folder_passes_and_returns_its_config():
    config = check_model(resolve_base("tiny:xlmr"))
    assert config.model_type == "xlm-roberta"


def test_hub_ids_offline_fail_with_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not is_local_ref("nobody/no-such-model") and is_local_ref("./x")
    assert is_local_ref("outputs/a/model") and is_local_ref("/abs")
    with pytest.raises(ModelError, match=r"^model: nobody/no-such-model \(not a local folder, so "
                                         r"a hub id\): not a loadable model config: ") as info:
        check_model("nobody/no-such-model")
    assert "\n" not in str(info.value)


def test_pretrain_and_finetune_limit_check_checks_the_model_first(bad):
    """`check_max_length`, which pretrain's preflight and fine-tune call before Ray, names the
    ``model.base`` field and ``model.trust_remote_code``."""
    with pytest.raises(ModelError, match=r"^model\.base: .*pickle_only holds only pickle"):
        check_max_length(str(bad["pickle_only"]), 64)
    with pytest.raises(ModelError, match=r"model\.trust_remote_code=true"):
        check_max_length(str(bad["remote_code"]), 64)
