"""Configuration of the GIP pretraining job (``guardray pretrain`` / ``jobs/pretrain.py``).

GuardFormer 3.3, eq. 1: ``L = l1 * MLM + l2 * ALICE++ + l3 * CE`` over instruction inputs
``"{policy description}\\nQuery: {text} [SEP] {rationale}"`` (rationale dropout: the model also
works without one, as at inference). Training runs on Ray Train (TorchTrainer) with DeepSpeed
(ZeRO 0-3), data streamed from Parquet shards through Ray Data.

Example (``configs/debug/pretrain.yaml``)::

    job: pretrain
    model: {base: tiny:xlmr, max_length: 96}
    data: {path: outputs/debug-pipeline/seed, policies: [configs/policies]}
    loss: {weights: [1.0, 1.0, 1.0], alice: {steps: 1}}
    train: {max_steps: 8, batch_size: 8, zero_stage: 2, checkpoint_every_steps: 4}
    workers: {num_workers: 2, cpus_per_worker: 0.5}
    storage_path: outputs/debug-pretrain/ray
    output_dir: outputs/debug-pretrain/model
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from guardray.config.base import StageConfig, StrictModel

Precision = Literal["fp32", "bf16", "fp16"]
Schedule = Literal["linear", "cosine", "constant"]


class PretrainModelSection(StrictModel):
    """The encoder to pretrain.

    Attributes:
        base: ``tiny:xlmr`` (tiny random XLM-R, tests), ``embedded:all-minilm-l6-v2`` (offline
            MiniLM), or a Hugging Face folder / hub id (``xlm-roberta-large``,
            ``intfloat/multilingual-e5-large-instruct`` on clusters).
        trust_remote_code: allow model code from the checkpoint (off: never run foreign code).
        max_length: token limit of an instruction input (longer inputs are truncated).
    """

    base: str = "embedded:all-minilm-l6-v2"
    trust_remote_code: bool = False
    max_length: int = Field(default=256, ge=8, le=8192)


class PretrainDataSection(StrictModel):
    """Where the GIP rows and the policy descriptions come from.

    Attributes:
        path: sample shards (Parquet, `guardray.schema`) of D_* = D_unified + D_diverse
            (local or ``s3://``).
        policies: policy YAML files or folders (the human policies' descriptions).
        diverse_policies: JSON files holding the synthetic policies of the generate stage
            (``{generate output}/_state/diverse_policies.json``: ``{"policies": [...]}``).
            If empty, ``{path}/_state/diverse_policies.json`` is used when it exists.
        splits: rows whose ``split`` is one of these are trained on.
        rationale_dropout: probability that a row's rationale is left out in an epoch.
        mlm_probability: fraction of tokens masked for the MLM loss (80/10/10 rule).
        local_shuffle_buffer_size: rows of Ray Data's local shuffle buffer per worker
            (None: off; ranks keep equal step counts either way: see gip_data).
        tokenize_actors: tokenizer actors of the Ray Data pool.
        tokenize_cpus: logical CPUs each tokenizer actor reserves.
    """

    path: str
    policies: list[str] = Field(default_factory=lambda: ["configs/policies"], min_length=1)
    diverse_policies: list[str] = Field(default_factory=list)
    splits: list[str] = Field(default_factory=lambda: ["train"], min_length=1)
    rationale_dropout: float = Field(default=0.5, ge=0, le=1)
    mlm_probability: float = Field(default=0.15, gt=0, lt=1)
    local_shuffle_buffer_size: int | None = Field(default=None, ge=1)
    tokenize_actors: int = Field(default=1, ge=1)
    tokenize_cpus: float = Field(default=1.0, gt=0)


class AliceSection(StrictModel):
    """ALICE++ knobs (`guardray.pretrain.losses.AliceParams`).

    Attributes:
        alpha: weight of the virtual (symmetric-KL) term inside ALICE++.
        noise_var: scale of the initial random perturbation, ``noise_var * N(0, 1)`` (a standard
            deviation despite the name, as in mt-dnn and vat-pytorch; see `AliceParams`).
        step_size: ascent step of each power-iteration step.
        epsilon: stabiliser of the gradient normalisation.
        steps: power-iteration (ascent) steps (>= 1).
        max_layer: perturbed layer drawn uniformly from 0..min(max_layer, num_layers)
            (0: embedding output); None: any layer.
        norm: gradient normalisation, ``inf`` or ``l2``.
    """

    alpha: float = Field(default=1.0, ge=0)
    noise_var: float = Field(default=1e-5, ge=0)
    step_size: float = Field(default=1e-3, ge=0)
    epsilon: float = Field(default=1e-6, gt=0)
    steps: int = Field(default=1, ge=1)
    max_layer: int | None = Field(default=None, ge=0)
    norm: Literal["inf", "l2"] = "inf"


class LossSection(StrictModel):
    """Eq. 1 weights and the ALICE++ settings.

    Attributes:
        weights: ``[l1, l2, l3]`` for MLM, ALICE++ and CE; a zero weight skips that term's
            computation (l2 = 0: no adversarial forward passes).
        alice: ALICE++ knobs.
    """

    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    alice: AliceSection = Field(default_factory=AliceSection)

    @model_validator(mode="after")
    def _check_weights(self) -> "LossSection":
        if any(w < 0 for w in self.weights) or not any(w > 0 for w in self.weights):
            raise ValueError(f"loss.weights must be >= 0 with at least one > 0, got "
                             f"{list(self.weights)}")
        return self


class PretrainTrainSection(StrictModel):
    """Optimisation (DeepSpeed) and bookkeeping.

    A *step* is one optimizer step: ``grad_accum`` micro-batches of ``batch_size`` rows on
    every worker (global batch = batch_size x grad_accum x num_workers).

    Attributes:
        epochs: passes over the data (when ``max_steps`` is None).
        max_steps: exactly this many optimizer steps, taking as many epochs as needed
            (None: ``epochs`` decide).
        batch_size: rows per worker per micro-batch.
        grad_accum: micro-batches per optimizer step.
        lr: peak AdamW learning rate.
        warmup_steps: linear warm-up steps (None: ``warmup_ratio`` of the total).
        warmup_ratio: warm-up fraction of the total when ``warmup_steps`` is None.
        schedule: after warm-up: ``linear`` decay to 0, ``cosine`` decay, or ``constant``.
        weight_decay: AdamW weight decay (not on biases / LayerNorm weights).
        max_grad_norm: gradient clipping (0: off).
        seed: seeds masking, rationale dropout, ALICE++ noise/layers and new heads.
        precision: ``fp32`` or ``bf16`` on CPU; ``bf16`` or ``fp16`` on GPU.
        zero_stage: DeepSpeed ZeRO stage 0-3.
        checkpoint_every_steps: DeepSpeed checkpoint every N optimizer steps (and at the end).
        log_every_steps: report metrics (Ray Train + TensorBoard) every N optimizer steps.
        keep_checkpoints: checkpoints kept in storage (the newest).
        torch_threads: intra-op threads per worker (None: ceil(cpus_per_worker)).
    """

    epochs: int = Field(default=1, ge=1)
    max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=16, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    lr: float = Field(default=2e-5, gt=0)
    warmup_steps: int | None = Field(default=None, ge=0)
    warmup_ratio: float = Field(default=0.06, ge=0, lt=1)
    schedule: Schedule = "linear"
    weight_decay: float = Field(default=0.01, ge=0)
    max_grad_norm: float = Field(default=1.0, ge=0)
    seed: int = 0
    precision: Precision = "fp32"
    zero_stage: int = Field(default=2, ge=0, le=3)
    checkpoint_every_steps: int = Field(default=500, ge=1)
    log_every_steps: int = Field(default=10, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    torch_threads: int | None = Field(default=None, ge=1)


class WorkersSection(StrictModel):
    """Ray Train workers.

    Attributes:
        num_workers: data-parallel workers (DeepSpeed ranks).
        cpus_per_worker: logical CPUs each reserves (fractions: on a small machine 0.5 leaves
            room for Ray Data; a worker taking a whole CPU there deadlocks the data path).
        use_gpu: one GPU per worker (NCCL); else CPU with gloo.
        placement_strategy: how Ray places the workers' bundles (Ray Train ``ScalingConfig``):
            ``PACK`` fills a node first (fastest collectives), ``SPREAD`` puts them on
            different nodes where it can (a lost node takes fewer ranks, more aggregate
            memory bandwidth), ``STRICT_SPREAD`` requires one node per worker.
    """

    num_workers: int = Field(default=2, ge=1)
    cpus_per_worker: float = Field(default=0.5, gt=0)
    use_gpu: bool = False
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"


class FailureSection(StrictModel):
    """Fault tolerance: a failed worker group restarts from the latest checkpoint.

    Attributes:
        max_failures: restarts allowed (Ray Train ``FailureConfig``; -1: unlimited).
    """

    max_failures: int = Field(default=2, ge=-1)


class PretrainConfig(StageConfig):
    """The GIP pretraining job (GuardFormer 3.3) on Ray Train + DeepSpeed.

    Attributes:
        model, data, loss, train, workers, failure: see their sections.
        output_dir: the exported Hugging Face checkpoint (``{output_dir}/model``) with its
            ``summary.json`` and ``manifest.json`` (local or ``s3://``).
        storage_path: Ray Train run storage (checkpoints, TensorBoard), local or ``s3://``.
        run_name: Ray Train run name; rerunning with the same name resumes from its latest
            checkpoint (a finished run is not trained again).
        log_dir: a local (or shared-filesystem) folder for TensorBoard events
            (``tensorboard/``), the per-step history (``history.jsonl``, rank 0) and worker
            records (``workers/rank{r}.json``: pid, host, attempt). None:
            ``{storage_path}/{run_name}`` when storage is local, else
            ``outputs/pretrain-logs/{run_name}``.
        ray: Ray connection.
        storage_options: S3 settings for ``s3://`` paths.
    """

    JOB_NAME: ClassVar[str] = "pretrain"

    model: PretrainModelSection = Field(default_factory=PretrainModelSection)
    data: PretrainDataSection
    loss: LossSection = Field(default_factory=LossSection)
    train: PretrainTrainSection = Field(default_factory=PretrainTrainSection)
    workers: WorkersSection = Field(default_factory=WorkersSection)
    failure: FailureSection = Field(default_factory=FailureSection)
    output_dir: str = "outputs/pretrain"
    storage_path: str = "outputs/pretrain/ray"
    run_name: str = Field(default="gip", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    log_dir: str | None = None

    @model_validator(mode="after")
    def _check_precision(self) -> "PretrainConfig":
        p, gpu = self.train.precision, self.workers.use_gpu
        if p == "fp16" and not gpu:
            raise ValueError("train.precision 'fp16' needs GPUs (workers.use_gpu: true); on CPU "
                             "use fp32 or bf16")
        return self

    def data_params(self):
        """The run's `guardray.pretrain.data.GIPDataParams` (the driver and every worker
        build the same one from the config)."""
        from guardray.pretrain.collate import GIPDataParams

        d = self.data
        return GIPDataParams(max_length=self.model.max_length, batch_size=self.train.batch_size,
                             mlm_probability=d.mlm_probability,
                             rationale_dropout=d.rationale_dropout, seed=self.train.seed,
                             splits=tuple(d.splits))
