"""``guardray evaluate``: evaluate a classifier or an LLM judge, or compare evaluations.

Forms::

    guardray evaluate --model DIR --data FILE [--data FILE ...] [--validation-data FILE]
                      [--policy ID] [--text-column text] [--label-column label] --out DIR
                      [--overwrite]
    guardray evaluate --judge JUDGE.yaml --data FILE --policy ID --out DIR
    guardray evaluate --config EVALUATE.yaml [key=value ...]
    guardray evaluate --compare OUT1 OUT2 [...] --out DIR

``--data`` takes a file or folder (JSONL/CSV/Parquet), ``bench:KEY`` (a public benchmark from
the hub, needs ``datasets``) or ``bench:KEY=FILE`` (a local export of that benchmark). Flags
override the values of ``--config``/``--judge`` files; trailing ``key=value`` overrides apply
last. Bad data, a model folder that is not a loadable model, ``--validation-data`` that is the
``--data`` itself, and an ``--out`` holding an earlier evaluation (without ``--overwrite``)
end with a one-line error and exit status 1, before Ray starts.
"""

from __future__ import annotations

import argparse

from guardray.cli.job_runner import print_or_run, set_flags


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a guard classifier or an LLM judge on labelled data (metrics + report)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--model", metavar="DIR", help="sequence classifier (HF folder or hub id)")
    what.add_argument("--judge", metavar="CONFIG", help="judge YAML (configs/judges/*.yaml)")
    what.add_argument("--compare", nargs="+", metavar="EVAL_DIR",
                      help="combine these evaluation output folders into one report")
    p.add_argument("-c", "--config", metavar="FILE", help="evaluate config YAML")
    p.add_argument("--data", action="append", metavar="SPEC", default=None,
                   help="FILE, bench:KEY or bench:KEY=FILE; repeat for several datasets")
    p.add_argument("--validation-data", metavar="SPEC",
                   help="labelled data to choose the threshold on (never the --data)")
    p.add_argument("--policy", metavar="ID", help="policy the data is judged under")
    p.add_argument("--policies", nargs="+", metavar="PATH",
                   help="policy YAML files/folders (default: configs/policies)")
    p.add_argument("--text-column", help="text column of --data files (default: text)")
    p.add_argument("--label-column", help="label column of --data files (default: label)")
    p.add_argument("--policy-column", help="per-row policy id column (default: policy_id)")
    p.add_argument("--split", help="keep only rows of this split in --data files")
    p.add_argument("--validation-split", help="keep only rows of this split in --validation-data")
    p.add_argument("--validation-text-column",
                   help="text column of --validation-data (default: --text-column)")
    p.add_argument("--validation-label-column",
                   help="label column of --validation-data (default: --label-column)")
    p.add_argument("--label-map", metavar="NAME=LABEL,...",
                   help="extra label names, e.g. benign=safe,jailbreak=unsafe")
    p.add_argument("--limit", type=int, help="evaluate at most N rows per dataset")
    p.add_argument("--name", help="model name in reports")
    p.add_argument("--input-format", choices=["text", "instruction"],
                   help="classifier input (default: the checkpoint's, else text)")
    p.add_argument("--threshold-rule", choices=["max_f1", "max_f1_1se", "fixed"])
    p.add_argument("--threshold", type=float, help="fixed/fallback threshold (default 0.5)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--concurrency", type=int, help="model replicas (Ray actors)")
    p.add_argument("--num-cpus", type=float, help="CPUs per replica")
    p.add_argument("--num-gpus", type=float, help="GPUs per replica")
    p.add_argument("--no-plots", action="store_true", help="tables only")
    p.add_argument("--out", metavar="DIR", help="output folder (local or s3://)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier evaluation in --out (refused without it)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. inference.max_length=256")
    p.set_defaults(handler=run)


def _dataset(spec: str, args, split: str | None, validation: bool = False) -> dict:
    from guardray.data import parse_data_spec

    parsed = parse_data_spec(spec)
    entry: dict = {"path": parsed.path, "benchmark": parsed.benchmark}
    for flag, key in (("text_column", "text_column"), ("label_column", "label_column"),
                      ("policy_column", "policy_column"), ("limit", "limit")):
        value = getattr(args, flag)
        if validation and key in ("text_column", "label_column"):
            value = getattr(args, f"validation_{flag}") or value
        if value is not None and not (validation and key == "limit"):
            entry[key] = value
    if split:
        entry["split"] = split
    if args.label_map:
        entry["label_map"] = _label_map(args.label_map)
    return {k: v for k, v in entry.items() if v is not None}


def _label_map(text: str) -> dict[str, str]:
    from guardray.config.base import ConfigError

    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, label = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--label-map item {item!r}: expected NAME=LABEL, e.g. benign=safe")
        out[name.strip()] = label.strip()
    return out


def build_config(args):
    """The `EvaluateConfig` from a file (``--config``/``--judge``), the flags and overrides."""
    from guardray.config import load_config, load_yaml
    from guardray.config.base import ConfigError
    from guardray.evaluate import EvaluateConfig

    source = args.judge or args.config
    data = {}
    if args.config:
        data = load_yaml(args.config)
    if args.judge:
        judge_file = load_yaml(args.judge)
        if "judge" not in judge_file:
            raise ConfigError(f"{args.judge}: a judge file needs a 'judge:' section "
                              "(see configs/judges/)")
        data = {**data, **judge_file}
    data.setdefault("job", "evaluate")
    if args.model:
        data["model"] = args.model
    if args.data:
        data["data"] = [_dataset(s, args, args.split) for s in args.data]
    if args.validation_data:
        data["validation_data"] = _dataset(args.validation_data, args, args.validation_split,
                                           validation=True)
    set_flags(data, args, {
        "policy": "policy", "policies": "policies", "name": "name",
        "input_format": "input_format", "out": "output_dir",
        "threshold_rule": "threshold.rule", "threshold": "threshold.value",
        "batch_size": "inference.batch_size", "concurrency": "inference.concurrency",
        "num_cpus": "inference.num_cpus", "num_gpus": "inference.num_gpus"})
    if args.no_plots:
        data.setdefault("report", {})["plots"] = False
    if args.overwrite:
        data["overwrite"] = True
    return load_config(EvaluateConfig, source, args.overrides, data=data)


def run(args: argparse.Namespace) -> int:
    if args.compare:
        return _compare(args)
    return print_or_run(build_config(args), _main, args)


def _main():
    from jobs.evaluate import main

    return main


def _compare(args) -> int:
    from guardray.config.base import ConfigError
    from guardray.evaluate import compare_evaluations

    if not args.out:
        raise ConfigError("--compare needs --out DIR for the combined report")
    paths = compare_evaluations(args.compare, args.out, title=args.name,
                                plots=not args.no_plots)
    print(f"report: {paths['html']}\n        {paths['markdown']}")
    return 0
