"""Shared fixtures: one tiny end-to-end recipe run (data, tokenizers, encoders, model, judge,
evaluation) for the tests of the commands that consume its outputs."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_recipe(tmp_path_factory) -> Path:
    """Folder of a finished ``unif2ace recipe tiny`` run (read-only for the tests)."""
    from unif2ace.recipe import run_recipe

    out = tmp_path_factory.mktemp("tiny-recipe") / "r"
    run_recipe("tiny", out, log=lambda s: None)
    return out
