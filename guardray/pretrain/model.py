"""The model of guardrail instruction pretraining (GIP, GuardFormer 3.3).

`GIPModel` is one encoder with two heads:

- the binary safe/unsafe classification head of a transformers
  ``AutoModelForSequenceClassification`` (kept whole as ``GIPModel.classifier``, so the
  export is just its ``save_pretrained``), for ``L_CE`` and ``L_Alice++``;
- a masked-language-modelling head (the architecture's own, e.g. ``XLMRobertaLMHead`` or
  ``BertOnlyMLMHead``) whose decoder weight *is* the input embedding matrix, for ``L_MLM``.
  Its weights come from the checkpoint when it has them (an MLM checkpoint such as
  ``xlm-roberta-large``); otherwise (a sequence-classification or sentence-transformers
  checkpoint such as all-MiniLM-L6-v2) the head is newly initialised, which is logged.

ALICE++ perturbs hidden states inside the encoder: ``forward(..., perturb=(layer, delta))``
adds ``delta`` to the output of the embeddings (``layer=0``) or of encoder block ``layer``
through a forward hook that lives only for that call. Everything runs inside ``forward`` so
that a DeepSpeed engine wrapping the module (ZeRO-3 gathers parameters in submodule hooks)
sees every computation.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from guardray.io.folders import atomic_folder
from guardray.modeling.checkpoint import ID2LABEL, LABEL2ID

log = logging.getLogger(__name__)

HEADS = ("cls", "mlm")


class GIPModel(nn.Module):
    """Encoder + classification head + MLM head tied to the input embeddings.

    Attributes:
        classifier: the transformers sequence-classification model (encoder + head).
        mlm_head: the MLM head; ``mlm_head``'s decoder weight is the same ``Parameter`` as
            ``classifier.get_input_embeddings().weight``.
    """

    def __init__(self, classifier: nn.Module, mlm_head: nn.Module, decoder_path: str) -> None:
        super().__init__()
        self.classifier = classifier
        self.mlm_head = mlm_head
        self._decoder_path = decoder_path

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str, *, num_labels: int = 2, trust_remote_code: bool = False,
                        dtype: torch.dtype = torch.float32) -> "GIPModel":
        """Load the encoder and classification head, and build the tied MLM head.

        Only safetensors files are read (``use_safetensors=True``; nothing is unpickled).

        Args:
            path: a local Hugging Face folder, a hub id, or ``"embedded:<name>"``
                (`guardray.modeling.offline.resolve_model`).
            num_labels: classes of the classification head (2: safe/unsafe).
            trust_remote_code: allow the checkpoint's own modelling code.
            dtype: parameter dtype (float32 master weights by default; DeepSpeed casts for
                bf16 itself).

        Returns:
            The model in train mode (unlike transformers' ``from_pretrained``, which returns
            eval mode): call ``.eval()`` to predict. New weights (the MLM head, a missing
            classification head) come from torch's global RNG: seed it equally on all ranks.

        Raises:
            ValueError: the architecture has no masked-LM head in transformers, or no
                ``embeddings`` / ``encoder.layer`` modules to perturb.
        """
        from transformers import AutoModelForSequenceClassification

        from guardray.modeling.offline import resolve_model

        local = resolve_model(path)
        extra = {"id2label": dict(ID2LABEL), "label2id": dict(LABEL2ID)} if num_labels == 2 else {}
        classifier = AutoModelForSequenceClassification.from_pretrained(
            local, num_labels=num_labels, use_safetensors=True, trust_remote_code=trust_remote_code,
            ignore_mismatched_sizes=True, dtype=dtype, **extra)
        classifier.config.problem_type = "single_label_classification"
        _check_layers(classifier)
        head, decoder_path, prefix, inner_ties = _build_mlm_head(classifier)
        head.to(dtype=dtype)
        missing = _load_head_weights(local, prefix, head, decoder_path, inner_ties)
        model = cls(classifier, head, decoder_path)
        model.tie_weights()
        n_loadable = len(_head_keys(head, decoder_path, inner_ties))
        if len(missing) == n_loadable:
            log.info("%s has no masked-LM head (%s*): the MLM head is newly initialised", path,
                     prefix)
        elif missing:
            log.warning("%s: MLM head weights missing and newly initialised: %s", path, missing)
        return model.train()

    @property
    def mlm_decoder(self) -> nn.Linear:
        """The MLM head's output projection (weight tied to the input embeddings)."""
        return self.mlm_head.get_submodule(self._decoder_path)

    def tie_weights(self) -> None:
        """Make the MLM decoder weight the input embedding ``Parameter`` (idempotent)."""
        decoder = self.mlm_decoder
        embedding = self.classifier.get_input_embeddings().weight
        if decoder.weight.shape != embedding.shape:
            raise ValueError(
                f"MLM decoder {tuple(decoder.weight.shape)} does not match the input embeddings "
                f"{tuple(embedding.shape)}"
            )
        decoder.weight = embedding

    # -- properties ---------------------------------------------------------------------------

    @property
    def config(self):
        """The transformers config of the classifier."""
        return self.classifier.config

    @property
    def num_layers(self) -> int:
        """Number of encoder blocks (``config.num_hidden_layers``); layers ``0..num_layers``
        can be perturbed."""
        return int(self.classifier.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        """Width ``H`` of the hidden states."""
        return int(self.classifier.config.hidden_size)

    @property
    def vocab_size(self) -> int:
        """Rows of the input embedding matrix (= MLM logits' last dimension)."""
        return int(self.classifier.get_input_embeddings().weight.shape[0])

    # -- forward ------------------------------------------------------------------------------

    def forward(self, input_ids: Tensor, attention_mask: Tensor, *,
                head: Literal["cls", "mlm"] = "cls",
                perturb: tuple[int, Tensor] | None = None,
                mlm_positions: Tensor | None = None) -> Tensor:
        """Run the encoder and one head.

        Args:
            input_ids: ``[B, T]`` token ids.
            attention_mask: ``[B, T]``, 1 for tokens, 0 for padding.
            head: ``"cls"`` for class logits ``[B, C]``, ``"mlm"`` for token logits ``[B, T, V]``.
            perturb: ``(layer, delta)``: add ``delta [B, T, H]`` (cast to the hidden dtype) to
                the embeddings output (``layer=0``) or to the output of block ``layer``
                (``1..num_layers``) during this call only.
            mlm_positions: ``head="mlm"`` only: a ``[B, T]`` bool mask; the MLM head then runs
                on those positions' hidden states only and returns ``[M, V]`` logits
                (``M = mlm_positions.sum()``, row-major order, i.e. ``full[mlm_positions]``).
                The loss needs only the masked ~15 % of positions: this skips 85 % of the
                ``H x V`` decoder (the largest matmul of an MLM step) and never holds
                ``[B, T, V]`` (2 GB in bf16 for XLM-R's 250k vocabulary at B=16, T=256).

        Returns:
            The logits of the chosen head.
        """
        if head not in HEADS:
            raise ValueError(f"head={head!r}; valid: {', '.join(HEADS)}")
        if mlm_positions is not None:
            if head != "mlm":
                raise ValueError("mlm_positions is for head='mlm' only")
            if mlm_positions.dtype != torch.bool or mlm_positions.shape != input_ids.shape:
                raise ValueError(f"mlm_positions must be a bool mask of input_ids' shape "
                                 f"{tuple(input_ids.shape)}, got {mlm_positions.dtype} "
                                 f"{tuple(mlm_positions.shape)}")
        handle = None
        if perturb is not None:
            layer, delta = perturb
            handle = self._layer_module(layer).register_forward_hook(_AddDelta(delta, layer))
        try:
            if head == "cls":
                return self.classifier(input_ids=input_ids, attention_mask=attention_mask).logits
            hidden = self.classifier.base_model(
                input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if mlm_positions is not None:
                hidden = hidden[mlm_positions]  # [M, H]
            return self.mlm_head(hidden)
        finally:
            if handle is not None:
                handle.remove()

    def _layer_module(self, layer: int) -> nn.Module:
        valid = isinstance(layer, int) and not isinstance(layer, bool)
        if not valid or not 0 <= layer <= self.num_layers:
            raise ValueError(f"perturb layer={layer!r}; valid: 0..{self.num_layers} "
                             "(0 = embeddings output, i = output of encoder block i)")
        if _checkpointing(self.classifier):
            # Checkpointed blocks re-run their forward during backward, after the hook is gone.
            raise ValueError("perturb does not work with gradient checkpointing; disable it")
        base = self.classifier.base_model
        return base.embeddings if layer == 0 else base.encoder.layer[layer - 1]

    # -- export -------------------------------------------------------------------------------

    def export(self, folder: str | os.PathLike, tokenizer) -> None:
        """Write the classifier as a Hugging Face folder, atomically.

        The folder (safetensors + config + tokenizer, ``id2label`` ``{0: "safe", 1: "unsafe"}``
        for two labels) loads with ``AutoModelForSequenceClassification.from_pretrained`` and
        ``pipeline("text-classification")``. The MLM head is not part of it. Files are
        written to a hidden sibling folder that is renamed into place; an existing export is
        replaced only after the new one is complete. Under ZeRO-3 call this with gathered
        (full) parameters, on one rank.

        Args:
            folder: local destination folder.
            tokenizer: the tokenizer to save with it.
        """
        target = Path(folder)
        if "://" in str(folder):
            raise ValueError(f"export folder {folder!s} must be a local path; upload it after")
        config = self.classifier.config
        if config.num_labels == 2:
            config.id2label, config.label2id = dict(ID2LABEL), dict(LABEL2ID)
        with atomic_folder(target, overwrite=True) as tmp:
            self.classifier.save_pretrained(str(tmp), safe_serialization=True)
            tokenizer.save_pretrained(str(tmp))
        log.info("exported the GIP classifier to %s", target)


def _checkpointing(model: nn.Module) -> bool:
    """Whether activation (gradient) checkpointing is on (the property was renamed in v5)."""
    name = ("is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing")
            else "is_gradient_checkpointing")
    return bool(getattr(model, name, False))


class _AddDelta:
    """Forward hook adding ``delta`` to a module's hidden-state output (tensor or tuple)."""

    def __init__(self, delta: Tensor, layer: int) -> None:
        self.delta = delta
        self.layer = layer

    def __call__(self, module: nn.Module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if not isinstance(hidden, Tensor):
            raise TypeError(f"layer {self.layer}: {type(module).__name__} returned "
                            f"{type(output).__name__}, not a tensor or tuple")
        if hidden.shape != self.delta.shape:
            raise ValueError(f"perturb delta {tuple(self.delta.shape)} does not match the hidden "
                             f"states {tuple(hidden.shape)} at layer {self.layer}")
        hidden = hidden + self.delta.to(dtype=hidden.dtype, device=hidden.device)
        return (hidden,) + tuple(output[1:]) if isinstance(output, tuple) else hidden


def _check_layers(classifier: nn.Module) -> None:
    base = classifier.base_model
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if getattr(base, "embeddings", None) is None or layers is None:
        raise ValueError(f"{type(classifier).__name__} has no base_model.embeddings / "
                         "base_model.encoder.layer to perturb; supported: BERT/RoBERTa/XLM-R-like "
                         "encoders")
    if len(layers) != classifier.config.num_hidden_layers:
        raise ValueError(f"encoder has {len(layers)} blocks but config.num_hidden_layers="
                         f"{classifier.config.num_hidden_layers}")


def _build_mlm_head(classifier: nn.Module) -> tuple[nn.Module, str, str, dict[str, str]]:
    """The architecture's own MLM head, freshly initialised, with its bias ties applied.

    The masked-LM class is instantiated on the meta device (no memory) only to find the
    head's class, its attribute name (the checkpoint key prefix) and the decoder's path.

    Returns:
        ``(head, decoder_path, key_prefix, inner_ties)`` with ``inner_ties`` the ties between
        two of the head's own parameters (e.g. ``decoder.bias -> bias``).
    """
    from transformers import MODEL_FOR_MASKED_LM_MAPPING

    config = classifier.config
    try:
        mlm_class = MODEL_FOR_MASKED_LM_MAPPING[type(config)]
    except KeyError:
        raise ValueError(f"model type {config.model_type!r} has no masked-LM model in "
                         "transformers, so GIP cannot build its MLM head") from None
    with torch.device("meta"):
        meta = mlm_class(config)
    names = [n for n, _ in meta.named_children() if n != meta.base_model_prefix]
    if len(names) != 1:
        raise ValueError(f"{mlm_class.__name__}: cannot tell its MLM head among {names}")
    name = names[0]
    out = meta.get_output_embeddings()
    decoder_path = next(n for n, m in getattr(meta, name).named_modules() if m is out)
    head = type(getattr(meta, name))(config)
    with torch.no_grad():
        for module in head.modules():
            classifier._init_weights(module)
    prefix = f"{name}."
    inner_ties = {}
    for dst, src in (getattr(mlm_class, "_tied_weights_keys", None) or {}).items():
        if dst.startswith(prefix) and src.startswith(prefix):
            inner_ties[dst[len(prefix):]] = src[len(prefix):]
    for dst, src in inner_ties.items():
        owner, _, attr = dst.rpartition(".")
        setattr(head.get_submodule(owner), attr, head.get_parameter(src))
    return head, decoder_path, prefix, inner_ties


def _head_keys(head: nn.Module, decoder_path: str, inner_ties: dict[str, str]) -> set[str]:
    """State-dict keys of the head that come from a checkpoint (not the tied decoder weight,
    and one name per tied group)."""
    keys = set(head.state_dict()) - {f"{decoder_path}.weight"}
    return keys - set(inner_ties)


def _safetensors_files(path: str) -> list[str]:
    """The checkpoint's safetensors files (sharded or not); [] if there are none."""
    from transformers.utils import cached_file

    index = cached_file(path, "model.safetensors.index.json",
                        _raise_exceptions_for_missing_entries=False)
    if index:
        with open(index, encoding="utf-8") as fh:
            shards = sorted(set(json.load(fh)["weight_map"].values()))
        return [cached_file(path, shard) for shard in shards]
    single = cached_file(path, "model.safetensors", _raise_exceptions_for_missing_entries=False)
    return [single] if single else []


_LEGACY = {"gamma": "weight", "beta": "bias"}  # old BERT LayerNorm names


def _load_head_weights(path: str, prefix: str, head: nn.Module, decoder_path: str,
                       inner_ties: dict[str, str]) -> list[str]:
    """Copy the ``prefix``-ed tensors of the checkpoint into ``head``; return the missing keys."""
    from safetensors import safe_open

    wanted = set(head.state_dict()) - {f"{decoder_path}.weight"}
    found: dict[str, Tensor] = {}
    for file in _safetensors_files(path):
        with safe_open(file, framework="pt") as st:
            for key in st.keys():
                if not key.startswith(prefix):
                    continue
                owner, _, leaf = key[len(prefix):].rpartition(".")
                name = f"{owner}.{_LEGACY.get(leaf, leaf)}" if owner else _LEGACY.get(leaf, leaf)
                if name in wanted:
                    found[name] = st.get_tensor(key)
    if found:
        head.load_state_dict(found, strict=False)
    for dst, src in inner_ties.items():  # a tied pair is present when either name is
        if dst in found:
            found.setdefault(src, found[dst])
    return sorted(_head_keys(head, decoder_path, inner_ties) - set(found))
