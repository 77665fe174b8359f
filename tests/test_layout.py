"""Test files have unique basenames: tests/ folders are not packages (a `tests/io` package would
shadow the standard library's `io`), so pytest imports each test file by its basename."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_test_file_basenames_are_unique():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
