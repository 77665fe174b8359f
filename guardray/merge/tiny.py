"""Tiny real checkpoints for trying and testing merges offline (built in seconds).

- `build_llama_family`: a Llama-architecture causal LM (hidden 32, 2 layers) as ``base`` plus
  "fine-tuned" copies ``ft0`` (saved sharded, with an index), ``ft1``, ``ft2``: the base plus
  seeded noise on a random half of each tensor.
- `build_xlmr_family`: an XLM-R sequence classifier (with its head) and two fine-tuned copies.

Each base folder gets a small word-level tokenizer (``w0 w1 ...``). The weights are random: these
models exercise real code paths (safetensors, sharding, transformers loading), not quality.
"""

from __future__ import annotations

from pathlib import Path


def word_tokenizer(out_dir: Path, vocab_size: int = 64):
    """A tiny word-level fast tokenizer with ``vocab_size`` entries, saved to ``out_dir``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(vocab_size - 4)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
    )
    fast.save_pretrained(str(out_dir))
    return fast


def perturbed_copy(model, seed: int, scale: float = 0.02, fraction: float = 0.5):
    """A copy of ``model`` with seeded noise on a random ``fraction`` of each floating tensor."""
    import copy

    import torch

    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            noise = torch.randn(p.shape, generator=g) * scale
            mask = torch.rand(p.shape, generator=g) < fraction
            p.add_(noise * mask)
    return out


def build_llama_family(root: str | Path, n_finetuned: int = 3) -> dict[str, Path]:
    """Write ``base`` and ``ft0..`` under ``root``; returns ``{name: folder}``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    base = LlamaForCausalLM(cfg).eval()
    root = Path(root)
    paths = {"base": root / "base"}
    base.save_pretrained(paths["base"], safe_serialization=True)
    word_tokenizer(paths["base"])
    for i in range(n_finetuned):
        name = f"ft{i}"
        paths[name] = root / name
        shard = "20KB" if i == 0 else "5GB"  # ft0 is sharded with an index
        perturbed_copy(base, 100 + i).save_pretrained(
            paths[name], safe_serialization=True, max_shard_size=shard
        )
    return paths


def build_xlmr_family(root: str | Path) -> dict[str, Path]:
    """Write ``base``, ``ft0`` and ``ft1`` under ``root``; returns ``{name: folder}``."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    cfg = XLMRobertaConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=40,
        type_vocab_size=1,
        num_labels=2,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    torch.manual_seed(1)
    base = XLMRobertaForSequenceClassification(cfg).eval()
    root = Path(root)
    paths = {"base": root / "base"}
    base.save_pretrained(paths["base"], safe_serialization=True)
    word_tokenizer(paths["base"])
    for i in range(2):
        paths[f"ft{i}"] = root / f"ft{i}"
        perturbed_copy(base, 200 + i).save_pretrained(paths[f"ft{i}"], safe_serialization=True)
    return paths
