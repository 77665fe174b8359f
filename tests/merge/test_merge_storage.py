"""``guardray merge`` onto an output it cannot write (issue 15, item 3): a file in the way, a
read-only filesystem, a disk that fills up while the merged shards are written. Each ends as
one line naming the path and exit status 1, and nothing is left behind.
"""

from __future__ import annotations

import logging

import pytest
import yaml
from fs_testlib import fill, tmpfs

from guardray.cli import main


def _recipe(tmp_path, tiny_llama):
    path = tmp_path / "ties.yaml"
    path.write_text(yaml.safe_dump({
        "merge_method": "ties", "base_model": str(tiny_llama["base"]),
        "models": [{"model": str(tiny_llama["ft0"]), "parameters": {"density": 0.5}},
                   {"model": str(tiny_llama["ft1"]), "parameters": {"density": 0.5}}]}))
    return path


class _Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def caplog():
    """The ``guardray`` logger's error lines (a handler on it: the CLI's logging setup stops
    its records from reaching the root logger, where pytest's caplog listens)."""
    logger, handler = logging.getLogger("guardray"), _Errors()
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def _error_line(caplog) -> str:
    assert len(caplog.lines) == 1, caplog.lines
    return caplog.lines[0]


def test_output_is_a_file(tiny_llama, tmp_path, caplog):
    (tmp_path / "taken").write_text("x")
    assert main(["merge", str(_recipe(tmp_path, tiny_llama)), str(tmp_path / "taken" / "out"),
                 "--no-progress"]) == 1
    assert f"{tmp_path}/taken exists and is a file" in _error_line(caplog)


def test_read_only_filesystem(tiny_llama, tmp_path, caplog):
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        assert main(["merge", str(_recipe(tmp_path, tiny_llama)), str(ro / "out"),
                     "--no-progress"]) == 1
    assert f"merge failed: output_dir: cannot write {ro}: Read-only file system" in \
        _error_line(caplog)


def test_disk_full_while_writing(tiny_llama, tmp_path, caplog):
    """The output check passes (a little room is left), the merged weights do not fit."""
    size = sum(f.stat().st_size for f in tiny_llama["base"].glob("*.safetensors"))
    assert size > 24_000  # more than the room left below
    with tmpfs(tmp_path / "small", size_kb=256) as small:
        fill(small, leave=8192)
        assert main(["merge", str(_recipe(tmp_path, tiny_llama)), str(small / "out"),
                     "--no-progress"]) == 1
        line = _error_line(caplog)
        assert f"merge failed: cannot write {small}/out: No space left on device" in line, line
        assert sorted(p.name for p in small.iterdir()) == ["filler"]  # no partial output


def test_input_errors_keep_their_message(tiny_llama, tmp_path, caplog):
    """A storage failure is only ever an output's: an input without weights stays a model
    error naming the input."""
    (tmp_path / "empty").mkdir()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"merge_method": "linear",
                                      "models": [{"model": str(tmp_path / "empty")},
                                                 {"model": str(tiny_llama["ft0"])}]}))
    assert main(["merge", str(recipe), str(tmp_path / "out"), "--no-progress"]) == 1
    assert "empty" in _error_line(caplog)
