"""HFChatGenerator on the real embedded SmolLM2-135M-Instruct: per-row sampling and limits."""

from __future__ import annotations

import pytest
import torch

from guardray.llm.hf import HFChatGenerator, RowSampling, _top_p_mask

HAIKU = [{"role": "user", "content": "Write a haiku about rain."}]
HELLO = [{"role": "user", "content": "Say hello to Ann."}]


@pytest.fixture(scope="module")
def smol():
    return HFChatGenerator("embedded:smollm2-135m-instruct", num_threads=1)


def test_greedy_matches_plain_transformers_generate(smol):
    [ours] = smol.generate([HAIKU], [RowSampling(max_tokens=8, temperature=0)])
    enc = smol.tokenizer.apply_chat_template(HAIKU, add_generation_prompt=True,
                                             return_tensors="pt", return_dict=True)
    plain = smol.model.generate(**enc, max_new_tokens=8, do_sample=False)
    expected = smol.tokenizer.decode(plain[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert ours.text == expected and ours.completion_tokens == 8
    assert ours.finish_reason == "length" and ours.prompt_tokens == enc["input_ids"].shape[1]


def test_seeded_row_is_independent_of_its_batch(smol):
    sampled = RowSampling(max_tokens=8, temperature=0.9, seed=11)
    [alone] = smol.generate([HAIKU], [sampled])
    batch = smol.generate([HELLO, HAIKU, HAIKU],
                          [RowSampling(max_tokens=4, temperature=0), sampled,
                           RowSampling(max_tokens=8, temperature=0.9, seed=12)])
    assert batch[1].text == alone.text            # same seed, other batch: same sample
    assert batch[0].completion_tokens == 4        # per-row max_tokens
    assert batch[2].text != batch[1].text         # another seed samples something else


def test_stop_string_cuts_the_text(smol):
    [full] = smol.generate([HAIKU], [RowSampling(max_tokens=10, temperature=0)])
    word = full.text.split()[2]
    [cut] = smol.generate([HAIKU], [RowSampling(max_tokens=10, temperature=0, stop=(word,))])
    assert cut.text == full.text[: full.text.find(word)] and cut.finish_reason == "stop"


def test_top_p_mask_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    kept = torch.isfinite(_top_p_mask(logits, 0.7)).tolist()
    assert kept == [True, True, False, False]
    assert torch.isfinite(_top_p_mask(logits, 0.01)).tolist() == [True, False, False, False]
