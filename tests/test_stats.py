"""stats.json as one typed contract: what build-dataset and import-dataset write, the card reads."""

from __future__ import annotations

import json

import pytest

from taskdecomp.errors import InputError
from taskdecomp.stats import DatasetStats, Dedup, Taxonomy, Usage
from taskdecomp.validation import REASON_CODES

from dataset_fixture import build_fixture


def _stats(**kw):
    base = dict(
        n_rows=3,
        splits={"train": 2, "test": 1},
        coverage={"text": {"chain": 3, "parallel": 0, "dag": 0}},
        dedup=Dedup(0.8, exact=1, near=2),
        taxonomy=Taxonomy(combinations=15, cells=45, min_steps=2, max_steps=8),
        backend="offline",
        source="offline",
        seed=0,
        usage=Usage(10, 20),
    )
    base.update(kw)
    return DatasetStats(**base)


def test_round_trip_and_derived_fields(tmp_path):
    stats = _stats()
    stats.write(tmp_path)
    data = json.loads((tmp_path / "stats.json").read_text())
    assert data["dedup"]["rule"].count("0.8") == 1  # the threshold's value, not the word
    assert data["duplicates"] == {"exact": 1, "near": 2}
    assert DatasetStats.read(tmp_path) == stats
    assert stats.usage.total_tokens == 30


@pytest.mark.parametrize("text", ["{", "[]", '{"n_rows": 1}', "\x00\x01"])
def test_unreadable_stats_are_one_input_error(tmp_path, text):
    (tmp_path / "stats.json").write_text(text)
    with pytest.raises(InputError, match="stats.json"):
        DatasetStats.read(tmp_path)


def test_fixture_speaks_the_same_contract(tmp_path):
    build_fixture(tmp_path / "ds", n=20)
    stats = DatasetStats.read(tmp_path / "ds")
    assert stats.n_rows == 20 and sum(stats.splits.values()) == 20
    assert set(stats.rejects) <= set(REASON_CODES)
