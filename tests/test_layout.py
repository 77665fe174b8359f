"""Test files have unique basenames: tests/ folders are not packages (a `tests/io` package would
shadow the standard library's `io`), so pytest imports each test file by its basename."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_test_file_basenames_are_unique():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []


# --------------------------------------------------------------------------- package layering

import ast  # noqa: E402
import importlib  # noqa: E402

import pytest  # noqa: E402

PACKAGE = TESTS.parent / "guardray"
# One package per stage, named as its command; the pipeline chains them.
STAGES = ("ingest", "generate", "dedup", "pretrain", "finetune", "search", "merge", "evaluate",
          "serve", "safeguard", "pipeline")
SHARED = ("config", "io", "data", "metrics", "modeling", "llm", "policies", "schema", "errors",
          "progress", "_lazy", "logging_setup", "client")


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        rel = p.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = p
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """``(imported module or name, line)`` for every import in the file, function-local too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".")
                parts = parts if path.name == "__init__.py" else parts[:-1]
                parts = parts[: len(parts) - node.level + 1]
                src = ".".join(parts + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            out.append((src, node.lineno))
            out += [(f"{src}.{a.name}", node.lineno) for a in node.names]
    return [(m, line) for m, line in out if m.split(".")[0] == "guardray"]


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, path in MODULES.items():
        for target, _ in _imports(m, path):
            r = _resolve(target)
            if r and r != m and not m.startswith(r + "."):
                edges[m].add(r)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def _top(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_import_cycles_between_modules_or_packages():
    """Function-local imports count: they are for heavy optional libraries, not for cycles."""
    edges = _edges()
    assert _cycles(edges) == []
    packages: dict[str, set[str]] = {}
    for m, targets in edges.items():
        packages.setdefault(_top(m), set()).update(_top(t) for t in targets if _top(t) != _top(m))
    assert _cycles(packages) == []


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_stages_are_used_only_through_their_public_api():
    """Outside a stage package, code imports ``guardray.<stage>`` names, never its modules;
    shared building blocks import no stage at all."""
    bad = []
    for m, path in MODULES.items():
        own = m.split(".")[1] if m.count(".") else ""
        for target, line in _imports(m, path):
            parts = target.split(".")
            if len(parts) < 2 or parts[1] not in STAGES or parts[1] == own:
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
            if own in SHARED:
                bad.append(f"{where} (a shared block must not import a stage)")
            elif len(parts) > 2 and f"guardray.{parts[1]}.{parts[2]}" in MODULES:
                bad.append(f"{where} (use the names `guardray.{parts[1]}` exports)")
    assert bad == []


def test_every_package_is_a_stage_or_a_shared_block():
    tops = {p.name.removesuffix(".py") for p in PACKAGE.iterdir()
            if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    assert tops - set(STAGES) - set(SHARED) - {"__init__", "__main__", "cli"} == set()


def test_every_job_has_a_script_a_command_and_a_config():
    from guardray.cli import build_parser
    from guardray.cli.registry import JOBS, import_ref

    commands = build_parser()._subparsers._group_actions[0].choices
    for name, job in JOBS.items():
        script = TESTS.parent / "jobs" / f"{name}.py"
        assert script.is_file(), f"jobs/{name}.py is missing"
        assert f'script_main("{name}", main)' in script.read_text(), script
        assert job.main == f"jobs.{name}:main"
        assert callable(import_ref(job.main))
        assert import_ref(job.config).JOB_NAME == name
        assert name in commands


@pytest.mark.parametrize("stage", [s for s in STAGES if (PACKAGE / s).is_dir()])
def test_importing_a_stage_is_cheap(stage):
    """A stage package's names load lazily: importing it pulls in no Ray, torch or DeepSpeed."""
    import subprocess
    import sys

    code = (f"import sys, guardray.{stage}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('ray', 'torch', 'deepspeed', 'vllm', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
    importlib.import_module(f"guardray.{stage}")
