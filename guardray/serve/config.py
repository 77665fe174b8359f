"""Configuration of guard inference: ``classify`` (batch, Ray Data) and ``serve`` (Ray Serve).

Both jobs load a trained guard (a TaskGuard, the MultiTaskGuard or UniGuard checkpoint) the
same way, described by `GuardModelConfig`; each job adds its own sections. YAML plus
``key=value`` overrides, like every stage (`guardray.config.load_config`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from guardray.config.base import ConfigError, JobConfig, RayConfig, StageConfig, StrictModel


class GuardModelConfig(StrictModel):
    """The guard classifier and how its inputs are built.

    Attributes:
        path: checkpoint folder (HF format, ideally with ``guardray_model.json``) or hub id.
        name: model name in answers (default: the card's group, else the folder name).
        version: model version in answers (default: a content hash of its weights).
        policy_ids: the policies served / applied to every row (``--policy``); empty: the
            checkpoint's own policies.
        policies: policy YAML files or folders: descriptions of policies the checkpoint's card
            does not carry (instruction-format guards only need a description).
        threshold: decision threshold; None: the one stored in the checkpoint (chosen on its
            validation split), which must then exist.
        input_format: ``text`` or ``instruction``; None: the checkpoint's, else ``text``.
        max_length: token limit of an input (longer ones are truncated and flagged).
        device: ``auto`` (CUDA when the replica has a GPU), ``cpu`` or ``cuda``.
        torch_threads: intra-op threads per replica (None: ceil(num_cpus)).
        unsafe_label: the label name meaning unsafe (None: guessed as `evaluate` does).
        trust_remote_code: allow model code from the checkpoint.
        quantize: ``none``, or ``int8``: per-channel dynamic int8 Linear layers for CPU
            inference (about 2.5x faster forward pass on a MiniLM guard; P(unsafe) moves by
            ~0.01-0.02 on average, 0-2.4 % of labels flip on the main job's guards; ignored
            on a GPU). See
            `guardray.modeling.quantize`.
        torchscript: run the forward pass as a frozen TorchScript graph on CPU (the same
            scores; ~1.6x faster in float32 and ~2x in int8 on one short prompt, where eager
            Python dominates); checked against the eager model at load, which runs instead
            if tracing fails or disagrees (default on; ignored on a GPU). See
            `guardray.modeling.torchscript`.
    """

    path: str | None = None
    name: str | None = None
    version: str | None = None
    policy_ids: list[str] = Field(default_factory=list)
    policies: list[str] = Field(default_factory=lambda: ["configs/policies"])
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    input_format: Literal["text", "instruction"] | None = None
    max_length: int = Field(default=512, ge=8)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int | None = Field(default=None, ge=1)
    unsafe_label: str | None = None
    trust_remote_code: bool = False
    quantize: Literal["none", "int8"] = "none"
    torchscript: bool = True

    def require_path(self) -> str:
        """``path``, or a `ConfigError` saying how to give it."""
        if not self.path:
            raise ConfigError("model.path: no guard checkpoint given; pass --model DIR "
                              "(or set model.path=DIR)")
        return self.path


class ClassifyConfig(StageConfig):
    """``guardray classify``: unlabelled rows -> P(unsafe) and label per row and policy.

    Attributes:
        model: the guard (see `GuardModelConfig`).
        input: JSONL / CSV / Parquet file or Parquet folder, local or ``s3://``.
        format: the input's format when the suffix does not tell.
        text_column: the prompt column.
        policy_column: per-row policy ids (a string or a list of strings); ignored when
            ``model.policy_ids`` is set (those apply to every row).
        output_dir: a folder of Parquet shards, or a ``.jsonl`` / ``.csv`` / ``.parquet``
            file (written atomically).
        rows_per_shard: output rows per Parquet shard.
        batch_size: rows per forward pass.
        concurrency: model replicas (Ray Data actors).
        num_cpus: CPUs per replica.
        num_gpus: GPUs per replica; None: 1 when the Ray cluster has a GPU, else 0.
        overwrite: replace an earlier output.
    """

    JOB_NAME: ClassVar[str] = "classify"

    model: GuardModelConfig = Field(default_factory=GuardModelConfig)
    input: str | None = None
    format: Literal["jsonl", "json", "csv", "tsv", "parquet"] | None = None
    text_column: str = "text"
    policy_column: str | None = "policy_id"
    output_dir: str = "outputs/classify"
    rows_per_shard: int = Field(default=10_000, ge=1)
    batch_size: int = Field(default=32, ge=1)
    concurrency: int = Field(default=1, ge=1)
    num_cpus: float = Field(default=1.0, gt=0)
    num_gpus: float | None = Field(default=None, ge=0)
    overwrite: bool = False

    def check_runnable(self) -> None:
        """What a run needs beyond a valid file (a template config validates without it)."""
        self.model.require_path()
        if not self.input:
            raise ConfigError("input: no input given; pass --input FILE_OR_FOLDER")


class BatchingConfig(StrictModel):
    """Dynamic request batching (``@serve.batch``) of (prompt, policy) pairs per replica.

    Attributes:
        max_batch_size: pairs per forward pass (1 turns batching off).
        batch_wait_timeout_s: how long a partial batch waits for more pairs.
    """

    max_batch_size: int = Field(default=16, ge=1)
    batch_wait_timeout_s: float = Field(default=0.005, ge=0.0)


class LimitsConfig(StrictModel):
    """Request limits; each is answered with a 4xx JSON error naming the limit.

    Attributes:
        max_prompt_chars: characters per prompt (longer: 413).
        max_prompts: prompts per request (more: 413).
        max_policies: policies per request.
    """

    max_prompt_chars: int = Field(default=20_000, ge=1)
    max_prompts: int = Field(default=64, ge=1)
    max_policies: int = Field(default=16, ge=1)


class AutoscalingConfig(StrictModel):
    """Ray Serve autoscaling of the guard's replicas (replaces ``num_replicas``)."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=2, ge=1)
    target_ongoing_requests: float = Field(default=8.0, gt=0)

    @model_validator(mode="after")
    def _order(self) -> "AutoscalingConfig":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} > max_replicas "
                             f"{self.max_replicas}")
        return self


class DeploymentConfig(StrictModel):
    """Replicas and their resources.

    Attributes:
        num_replicas: fixed replica count (ignored with ``autoscaling``).
        autoscaling: autoscale between min and max replicas instead.
        num_cpus, num_gpus: resources per replica.
        max_ongoing_requests: requests a replica accepts at once (>= max_batch_size).
    """

    num_replicas: int = Field(default=1, ge=1)
    autoscaling: AutoscalingConfig | None = None
    num_cpus: float = Field(default=1.0, gt=0)
    num_gpus: float = Field(default=0.0, ge=0)
    max_ongoing_requests: int = Field(default=64, ge=1)


class HttpConfig(StrictModel):
    """Where Serve's HTTP proxy listens (cluster-wide; only applied when this job starts
    Serve). ``127.0.0.1`` unless told otherwise."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)


class ServeConfig(JobConfig):
    """``guardray serve``: the guard behind a Ray Serve HTTP JSON API.

    Attributes:
        model: the guard (see `GuardModelConfig`).
        app_name: Serve application name.
        route_prefix: HTTP route prefix of the application.
        http: proxy host and port.
        batching, limits, deployment: see their sections.
        ray: Ray connection.
    """

    JOB_NAME: ClassVar[str] = "serve"

    model: GuardModelConfig = Field(default_factory=GuardModelConfig)
    app_name: str = "guardray"
    route_prefix: str = "/"
    http: HttpConfig = Field(default_factory=HttpConfig)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    deployment: DeploymentConfig = Field(default_factory=DeploymentConfig)
    ray: RayConfig = Field(default_factory=RayConfig)

    @model_validator(mode="after")
    def _ongoing(self) -> "ServeConfig":
        if self.deployment.max_ongoing_requests < self.batching.max_batch_size:
            raise ValueError(
                f"deployment.max_ongoing_requests ({self.deployment.max_ongoing_requests}) "
                f"must be >= batching.max_batch_size ({self.batching.max_batch_size}), or "
                "batches never fill")
        if not self.route_prefix.startswith("/"):
            raise ValueError(f"route_prefix {self.route_prefix!r} must start with '/'")
        return self
