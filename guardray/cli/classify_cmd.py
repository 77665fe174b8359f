"""``guardray classify``: a trained guard on unlabelled rows, on Ray Data.

Forms::

    guardray classify --model DIR --input FILE_OR_FOLDER --output PATH [--policy ID ...]
                      [--text-column text] [--policy-column policy_id] [--overwrite]
    guardray classify --config CLASSIFY.yaml [key=value ...]

``--input``: JSONL / CSV / Parquet file or Parquet folder, local or ``s3://``. ``--output``: a
folder of Parquet shards (+ manifest.json), or a ``.jsonl`` / ``.csv`` / ``.parquet`` file.
Each (row, policy) gets ``unsafe_probability``, ``label`` (at the checkpoint's stored
threshold), ``threshold`` and ``truncated``; the input's other columns pass through.
``--policy`` (repeatable) judges every row under those policies; otherwise a ``policy_id``
column, else the checkpoint's own policies. A bad model, input or policy ends with a one-line
error and exit status 1, before Ray starts.
"""

from __future__ import annotations

import argparse

from guardray.cli.job_runner import print_or_run, set_flags

# The flags naming the guard (shared with `guardray serve`): its ``model`` section.
GUARD_FLAGS = {"model": "model.path", "policy": "model.policy_ids",
               "policies": "model.policies", "threshold": "model.threshold",
               "quantize": "model.quantize", "torchscript": "model.torchscript"}


def add_guard_flags(p: argparse.ArgumentParser) -> None:
    """The flags both ``classify`` and ``serve`` take for ``model.quantize`` and
    ``model.torchscript``."""
    p.add_argument("--quantize", choices=["none", "int8"],
                   help="int8: per-channel dynamic int8 Linear layers for CPU inference "
                        "(~2.5x faster forward pass; 0-2.4%% of labels flipped on the main "
                        "job's guards; default none)")
    p.add_argument("--torchscript", action=argparse.BooleanOptionalAction, default=None,
                   help="run the forward pass as a frozen TorchScript graph on CPU: the same "
                        "scores, faster on short prompts (checked against the eager model at "
                        "load, which runs instead if they differ; default on)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help="classify unlabelled prompts (JSONL/CSV/Parquet) with a trained guard on Ray Data",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-c", "--config", metavar="FILE", help="classify config YAML")
    p.add_argument("--model", metavar="DIR", help="guard checkpoint (HF folder)")
    p.add_argument("--input", metavar="PATH", help="JSONL/CSV/Parquet file or Parquet folder")
    p.add_argument("--output", metavar="PATH", help="output folder or .jsonl/.csv/.parquet")
    p.add_argument("--policy", action="append", metavar="ID",
                   help="judge every row under this policy (repeatable)")
    p.add_argument("--policies", nargs="+", metavar="PATH",
                   help="policy YAML files/folders (descriptions for instruction guards)")
    p.add_argument("--text-column", help="prompt column (default: text)")
    p.add_argument("--policy-column", help="per-row policy column (default: policy_id)")
    p.add_argument("--format", choices=["jsonl", "json", "csv", "tsv", "parquet"],
                   help="input format when the suffix does not tell")
    p.add_argument("--threshold", type=float, help="override the checkpoint's threshold")
    add_guard_flags(p)
    p.add_argument("--batch-size", type=int, help="rows per forward pass")
    p.add_argument("--concurrency", type=int, help="model replicas (Ray actors)")
    p.add_argument("--num-cpus", type=float, help="CPUs per replica")
    p.add_argument("--num-gpus", type=float, help="GPUs per replica (default: 1 if any)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier output")
    p.add_argument("--print-config", action="store_true", help="print the resolved config")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. model.max_length=256")
    p.set_defaults(handler=run)


def build_config(args):
    """The `ClassifyConfig` from ``--config``, the flags and the overrides."""
    from guardray.config import load_config, load_yaml
    from guardray.serve import ClassifyConfig

    data = load_yaml(args.config) if args.config else {}
    data.setdefault("job", "classify")
    set_flags(data, args, {
        **GUARD_FLAGS, "input": "input", "output": "output_dir", "text_column": "text_column",
        "policy_column": "policy_column", "format": "format", "batch_size": "batch_size",
        "concurrency": "concurrency", "num_cpus": "num_cpus", "num_gpus": "num_gpus"})
    if args.overwrite:
        data["overwrite"] = True
    return load_config(ClassifyConfig, args.config, args.overrides, data=data)


def run(args: argparse.Namespace) -> int:
    return print_or_run(build_config(args), _main, args)


def _main():
    from jobs.classify import main

    return main
