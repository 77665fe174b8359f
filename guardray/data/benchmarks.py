"""The public benchmarks of GuardFormer 4.1 and their binary (safe/unsafe) label mappings.

- ``deepset``: deepset/prompt-injections, test; text, label (1 injection).
- ``safeguard``: xTRam1/safe-guard-prompt-injection, test; text, label (1 injection).
- ``toxicchat``: lmsys/toxic-chat config toxicchat0124, test; user_input, toxicity.
- ``setfit``: SetFit/toxic_conversations_50k, test; text, label (1 toxic).
- ``nvidia-cs``: nvidia/Aegis-AI-Content-Safety-Dataset-1.0, test; text, the annotators'
  majority over labels_0..labels_4 ('Safe' safe, any category unsafe; ties dropped).
- ``openai-moderation``: mmathys/openai-moderation-api-evaluation, train (its only split);
  prompt, unsafe if any of S, H, V, HR, SH, S3, H2, V2 is 1.
- ``beavertails``: PKU-Alignment/BeaverTails, 30k_test; prompt, unsafe if is_safe is false.

`load_hub_frame` downloads one through the optional ``datasets`` package (imported lazily; a
clear `MissingDependencyError` names the install command). A local export in the hub's columns
goes through the same mapping (`guardray.data.tables.load_labeled` with ``benchmark=``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from guardray.data.labels import (
    DatasetError,
    MissingDependencyError,
    is_missing,
    normalize_labels,
)


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A public benchmark of GuardFormer 4.1 and how its rows become (text, label).

    Attributes:
        key: short name used on the command line (``bench:toxicchat``).
        title: display name in reports (as in the paper's Figure 2).
        hub_id: Hugging Face dataset id.
        config: dataset configuration name, if any.
        split: the evaluated split.
        category: injection, toxicity or content safety.
        columns: hub columns the mapping reads (a local export must have them).
        to_text_label: DataFrame in hub columns -> (texts, labels, dropped-count-by-reason).
        note: how the label is derived.
    """

    key: str
    title: str
    hub_id: str
    config: str | None
    split: str
    category: str
    columns: tuple[str, ...]
    to_text_label: Callable[[Any], tuple[list[str], np.ndarray, dict[str, int]]]
    note: str


def _plain(text_col: str, label_col: str, label_map: Mapping[str, Any] | None = None):
    def convert(df):
        labels = normalize_labels(df[label_col].tolist(), where=f"column {label_col!r}",
                                  label_map=label_map)
        return df[text_col].tolist(), labels, {}
    return convert


_OPENAI_CATEGORIES = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")


def _openai_moderation(df):
    # Unsafe when any category is flagged (1); the dataset leaves some categories empty.
    flags = np.zeros(len(df), dtype=bool)
    for cat in _OPENAI_CATEGORIES:
        col = df[cat].to_numpy(dtype=np.float64, na_value=np.nan)
        flags |= np.nan_to_num(col, nan=0.0) == 1
    return df["prompt"].tolist(), flags.astype(np.int8), {}


_AEGIS_VOTES = tuple(f"labels_{i}" for i in range(5))


def _aegis(df):
    # Majority vote of the annotators: 'Safe' is safe, every other category (including
    # 'Needs Caution') is unsafe; ties are dropped. Only user prompts are kept when the
    # export carries text_type (the dataset also holds LLM responses).
    dropped: Counter = Counter()
    texts, labels = [], []
    kinds = df["text_type"].tolist() if "text_type" in df.columns else [None] * len(df)
    votes_by_row = zip(*(df[c].tolist() for c in _AEGIS_VOTES if c in df.columns))
    for text, kind, votes in zip(df["text"].tolist(), kinds, votes_by_row):
        if kind is not None and str(kind) != "user_message":
            dropped["not_a_user_message"] += 1
            continue
        votes = [str(v).strip() for v in votes if not is_missing(v) and str(v).strip()]
        safe = sum(v.lower() == "safe" for v in votes)
        if not votes or safe * 2 == len(votes):
            dropped["no_majority"] += 1
            continue
        texts.append(text)
        labels.append(0 if safe * 2 > len(votes) else 1)
    return texts, np.asarray(labels, dtype=np.int8), dict(dropped)


def _beavertails(df):
    # is_safe judges the (prompt, response) pair; the prompt is what a prompt guard sees.
    flags = normalize_labels(df["is_safe"].tolist(), where="column 'is_safe'")
    return df["prompt"].tolist(), (1 - flags).astype(np.int8), {}


BENCHMARKS: dict[str, Benchmark] = {b.key: b for b in (
    Benchmark("deepset", "DeepSet", "deepset/prompt-injections", None, "test", "injection",
              ("text", "label"), _plain("text", "label"), "label 1 = injection"),
    Benchmark("safeguard", "SafeGuard", "xTRam1/safe-guard-prompt-injection", None, "test",
              "injection", ("text", "label"), _plain("text", "label"), "label 1 = injection"),
    Benchmark("toxicchat", "ToxicChat", "lmsys/toxic-chat", "toxicchat0124", "test", "toxicity",
              ("user_input", "toxicity"), _plain("user_input", "toxicity"),
              "toxicity 1 = unsafe; text = user_input"),
    Benchmark("setfit", "SetFit", "SetFit/toxic_conversations_50k", None, "test", "toxicity",
              ("text", "label"), _plain("text", "label"), "label 1 = toxic"),
    Benchmark("nvidia-cs", "NVIDIA-CS", "nvidia/Aegis-AI-Content-Safety-Dataset-1.0", None, "test",
              "content safety", ("text", *_AEGIS_VOTES), _aegis,
              "majority of labels_0..4: 'Safe' safe, any category unsafe; ties dropped; "
              "user messages only"),
    Benchmark("openai-moderation", "OpenAI Moderation", "mmathys/openai-moderation-api-evaluation",
              None, "train", "content safety", ("prompt", *_OPENAI_CATEGORIES), _openai_moderation,
              "unsafe if any of S, H, V, HR, SH, S3, H2, V2 is 1 (the set has only a train split)"),
    Benchmark("beavertails", "BeaverTails", "PKU-Alignment/BeaverTails", None, "30k_test",
              "content safety", ("prompt", "is_safe"), _beavertails,
              "unsafe if is_safe is false; text = prompt"),
)}


def benchmark(key: str) -> Benchmark:
    """The registered benchmark ``key``; the error lists the valid keys."""
    if key not in BENCHMARKS:
        raise DatasetError(f"unknown benchmark {key!r}; valid: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[key]


def load_hub_frame(bench: Benchmark, split: str | None = None, limit: int | None = None):
    """Download ``bench`` from the Hugging Face hub into a DataFrame (needs ``datasets``).

    Raises:
        MissingDependencyError: ``datasets`` is not installed (names the install command).
        DatasetError: the hub could not be reached or the dataset not loaded.
    """
    try:
        import datasets  # noqa: F401 - optional dependency, imported only here
    except ImportError:
        raise MissingDependencyError(
            f"loading {bench.hub_id!r} from the Hugging Face hub needs the 'datasets' package: "
            f"pip install datasets (and network access to huggingface.co). Without them, "
            f"export the {bench.split!r} split elsewhere and pass the file as "
            f"bench:{bench.key}=FILE") from None
    from datasets import load_dataset

    split = split or bench.split
    if limit:
        split = f"{split}[:{int(limit)}]"
    try:
        ds = load_dataset(bench.hub_id, bench.config, split=split)
    except Exception as exc:  # hub/network errors come in many types; report, don't guess
        raise DatasetError(f"could not load {bench.hub_id!r} (config {bench.config}, split "
                           f"{split}) from the hub: {type(exc).__name__}: {exc}") from exc
    return ds.to_pandas()


