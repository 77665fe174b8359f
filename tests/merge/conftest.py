"""Fixtures of the merge tests (builders in ``merge_testlib``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from merge_testlib import build_llama_family, build_xlmr_family


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> dict[str, Path]:
    return build_llama_family(tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="session")
def tiny_xlmr(tmp_path_factory) -> dict[str, Path]:
    return build_xlmr_family(tmp_path_factory.mktemp("xlmr"))
