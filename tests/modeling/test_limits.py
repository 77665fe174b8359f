"""Token limits of encoders from their configs."""

from types import SimpleNamespace

from transformers import BertConfig, XLMRobertaConfig

from guardray.modeling.limits import max_input_tokens


def test_roberta_family_positions_start_after_padding():
    xlmr = XLMRobertaConfig(max_position_embeddings=514, pad_token_id=1)
    assert max_input_tokens(xlmr, 4096) == 512 and max_input_tokens(xlmr, 100) == 100
    tiny = XLMRobertaConfig(max_position_embeddings=130, pad_token_id=1)
    assert max_input_tokens(tiny, 512) == 128


def test_absolute_positions_and_relative_models():
    assert max_input_tokens(BertConfig(max_position_embeddings=512), 1024) == 512
    relative = SimpleNamespace(model_type="t5")  # no max_position_embeddings: no hard limit
    assert max_input_tokens(relative, 1024) == 1024
