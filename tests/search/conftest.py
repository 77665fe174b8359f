"""One real tiny candidate pool for every merge-search test that needs models (built once)."""

from __future__ import annotations

import pytest
from search_testlib import instruction_pool


@pytest.fixture(scope="session")
def ipool(tmp_path_factory):
    """Instruction-input TaskGuards (tax, finance) + a MultiTaskGuard from one tiny base."""
    return instruction_pool(tmp_path_factory.mktemp("ipool"))
