"""Batch inference of a sequence classifier on Ray Data: P(unsafe) per row, with timing.

`ClassifierPredictor` is a Ray Data class UDF: each actor loads the model once and scores
pandas batches. Rows reach it with the row index, policy id and text only: labels never pass
through inference. Each row gets ``model_ms``, its share of the wall time of its batch's
tokenisation + forward pass, so latency comes from the very run that produced the scores.

`predict_frames` runs it over several DataFrames in one Ray Data run (each replica loads the
model once) and returns each frame's scores in input order plus its timing: ``ms_per_prompt``
(model time per prompt at the configured batch size) and ``prompts_per_s`` (rows / wall time
from its first batch starting to its last batch ending, all replicas together); the run's
whole wall time, model loading included, is reported as ``run_wall_seconds``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from guardray import schema as S
from guardray.errors import RunError
from guardray.evaluate import columns as C

log = logging.getLogger(__name__)

UNSAFE_NAMES = ("unsafe", "injection", "jailbreak", "toxic", "harmful", "malicious", "flagged")
SAFE_NAMES = ("safe", "benign", "label_0", "not toxic", "non-toxic", "ok")
_PART = "_part"  # which input frame a row came from (several frames share one run)
_T0, _T1 = "_t0", "_t1"  # start/end (epoch seconds) of the row's batch


class PredictError(RunError):
    """The model cannot be used as a binary guard (e.g. its unsafe label is unknown)."""


def unsafe_index(id2label: Mapping[Any, str], wanted: str | None = None) -> int:
    """Index of the output that means unsafe.

    Args:
        id2label: the model config's mapping of output index to label name.
        wanted: an explicit label name (case-insensitive).

    Raises:
        PredictError: the label cannot be told, listing the model's labels.
    """
    labels = {int(i): str(name) for i, name in id2label.items()}
    lower = {i: n.lower() for i, n in labels.items()}
    if wanted is not None:
        hits = [i for i, n in lower.items() if n == wanted.lower()]
        if not hits:
            raise PredictError(f"unsafe_label {wanted!r} is not a label of the model; its "
                               f"labels are {sorted(labels.values())}")
        return hits[0]
    for name in UNSAFE_NAMES:
        hits = [i for i, n in lower.items() if n == name]
        if hits:
            return hits[0]
    if len(labels) == 2:
        safe = [i for i, n in lower.items() if n in SAFE_NAMES]
        if safe:
            return 1 - safe[0]
        if set(lower.values()) == {"label_0", "label_1"}:
            return 1
    raise PredictError(f"cannot tell which output of the model means unsafe (labels "
                       f"{sorted(labels.values())}); set inference.unsafe_label")


@dataclasses.dataclass(frozen=True)
class PredictorSpec:
    """What a predictor actor needs (plain data, shipped to Ray actors).

    Attributes:
        model: model folder or hub id.
        input_format: ``text`` or ``instruction``.
        descriptions: policy id -> description (instruction inputs).
        max_length: token limit.
        device: ``auto``, ``cpu`` or ``cuda``.
        torch_threads: intra-op threads.
        unsafe_label: explicit unsafe label name, or None.
        trust_remote_code: allow checkpoint code.
        quantize: ``none`` or ``int8`` (dynamic int8 Linear layers on CPU;
            `guardray.modeling.quantize`).
        torchscript: run the forward pass as a frozen TorchScript graph on CPU, checked
            against the eager model at load (`guardray.modeling.torchscript`).
    """

    model: str
    input_format: str = "text"
    descriptions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    max_length: int = 512
    device: str = "auto"
    torch_threads: int = 1
    unsafe_label: str | None = None
    trust_remote_code: bool = False
    quantize: str = "none"
    torchscript: bool = False


class ClassifierPredictor:
    """Ray Data class UDF: pandas batch (row, policy_id, text) -> + score, model_ms."""

    def __init__(self, spec: PredictorSpec):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.set_num_threads(max(1, spec.torch_threads))
        self.spec = spec
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") \
            if spec.device == "auto" else spec.device
        from guardray.modeling.remote import local_model

        path = local_model(spec.model)  # an s3:// model: this node's copy
        self.tokenizer = AutoTokenizer.from_pretrained(
            path, trust_remote_code=spec.trust_remote_code)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            path, use_safetensors=True, trust_remote_code=spec.trust_remote_code)
        self.model.to(self.device).eval()
        from guardray.modeling.limits import max_input_tokens
        from guardray.modeling.quantize import quantize_model

        self.model = quantize_model(self.model, spec.quantize, self.device)

        self.max_length = max_input_tokens(self.model.config, spec.max_length)
        if self.max_length < spec.max_length:
            log.info("max_length %d capped at %d, the positions %s accepts", spec.max_length,
                     self.max_length, spec.model)
        self.index = unsafe_index(self.model.config.id2label, spec.unsafe_label)
        self.sep = self.tokenizer.sep_token or "[SEP]"
        from guardray.modeling.torchscript import script_classifier

        self.model = script_classifier(self.model, self.tokenizer, self.device,
                                       spec.torchscript, max_length=self.max_length)

    def inputs(self, texts: list[str], policy_ids: list[str]) -> list[str]:
        """The model inputs of a batch (instruction format adds the policy description)."""
        if self.spec.input_format == "text":
            return texts
        from guardray.policies import format_gip_input

        return [format_gip_input(self.spec.descriptions[p], t, None, sep_token=self.sep)
                for t, p in zip(texts, policy_ids)]

    def __call__(self, batch):
        import torch

        started_wall = time.time()
        started = time.perf_counter()
        texts = [str(t) for t in batch[S.TEXT].tolist()]
        enc = self.tokenizer(self.inputs(texts, batch[S.POLICY_ID].tolist()), padding=True,
                             truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            logits = self.model(**enc).logits.float()
        probs = torch.softmax(logits, dim=-1)[:, self.index].cpu().numpy().astype(np.float64)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        out = batch[[C.ROW, _PART]].copy() if _PART in batch else batch[[C.ROW]].copy()
        out[C.SCORE] = probs
        out[C.MODEL_MS] = elapsed_ms / max(1, len(batch))
        # Batch start/end (epoch seconds): a dataset's throughput spans its batches.
        out[_T0] = started_wall
        out[_T1] = started_wall + elapsed_ms / 1000.0
        return out


@dataclasses.dataclass
class Timing:
    """Latency of one dataset's inference, measured while scoring it.

    Attributes:
        n: rows scored.
        model_seconds: summed model time (tokenisation + forward) over the dataset's batches.
        span_seconds: wall time from the first of its batches starting to the last ending.
        ms_per_prompt: model milliseconds per prompt (``model_seconds / n``) at this batch size.
        prompts_per_s: throughput (``n / span_seconds``; all replicas together).
        run_wall_seconds: wall time of the whole Ray Data run it was part of (actor start-up
            and model loading included, shared by every dataset of the run).
        batch_size, concurrency: how the run was batched.
    """

    n: int
    model_seconds: float
    span_seconds: float
    ms_per_prompt: float
    prompts_per_s: float
    run_wall_seconds: float
    batch_size: int
    concurrency: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def predict_frames(frames, spec: PredictorSpec, *, batch_size: int = 32, concurrency: int = 1,
                   num_cpus: float = 1.0, num_gpus: float = 0.0
                   ) -> list[tuple[np.ndarray, np.ndarray, Timing]]:
    """Score the rows of several DataFrames in one Ray Data run (one model load per replica).

    Args:
        frames: DataFrames with ``ROW``, ``POLICY_ID`` and ``TEXT`` columns (others, labels
            included, are not sent to inference).
        spec: the model and its input format.
        batch_size: rows per forward pass.
        concurrency: actors.
        num_cpus, num_gpus: resources per actor.

    Returns:
        Per frame ``(scores, model_ms, timing)``: (n,) P(unsafe) and (n,) per-row model
        milliseconds in the frame's order, and its `Timing`.
    """
    import pandas as pd
    import ray

    from guardray.io.ray_data import to_pandas_with_progress

    if spec.input_format == "instruction":
        ids = set().union(*(set(f[S.POLICY_ID]) for f in frames)) if frames else set()
        missing = sorted(ids - set(spec.descriptions))
        if missing:
            raise PredictError(f"instruction inputs need a policy description for {missing}: "
                               "pass --policy ID or give the data a policy_id column")
    # Only what inference needs crosses into Ray: labels stay on the driver.
    parts = [f[[C.ROW, S.POLICY_ID, S.TEXT]].assign(**{_PART: k}) for k, f in enumerate(frames)]
    table = pd.concat(parts, ignore_index=True)
    ds = ray.data.from_pandas(table)
    ds = ds.map_batches(ClassifierPredictor, fn_constructor_kwargs={"spec": spec},
                        batch_size=batch_size, batch_format="pandas", concurrency=concurrency,
                        num_cpus=num_cpus, num_gpus=num_gpus or None)
    started = time.perf_counter()
    out = to_pandas_with_progress(ds, "evaluate: scoring", len(table), unit="prompt")
    wall = time.perf_counter() - started
    if len(out) != len(table):
        raise PredictError(f"inference returned {len(out)} rows for {len(table)} inputs")
    results = []
    for k, frame in enumerate(frames):
        part = out[out[_PART] == k].set_index(C.ROW).loc[frame[C.ROW].to_numpy()]
        n = len(frame)
        model_s = float(part[C.MODEL_MS].sum()) / 1000.0
        span = float(part[_T1].max() - part[_T0].min()) if n else math.nan
        timing = Timing(n=n, model_seconds=model_s, span_seconds=span,
                        ms_per_prompt=model_s * 1000.0 / n if n else math.nan,
                        prompts_per_s=n / span if n and span > 0 else math.nan,
                        run_wall_seconds=wall, batch_size=batch_size, concurrency=concurrency)
        log.info("scored %d rows: %.2f model ms/prompt, %.1f prompts/s (run %.1f s)", n,
                 timing.ms_per_prompt, timing.prompts_per_s, wall)
        results.append((part[C.SCORE].to_numpy(dtype=np.float64),
                        part[C.MODEL_MS].to_numpy(dtype=np.float64), timing))
    return results


def predict_frame(frame, spec: PredictorSpec, **kwargs) -> tuple[np.ndarray, np.ndarray, Timing]:
    """`predict_frames` for a single DataFrame."""
    return predict_frames([frame], spec, **kwargs)[0]
