"""Taxonomy cells (45 of 2+ steps, 4 single-step) and the seeded, weighted, house-monotone
quota planner, with its request-style weights and single-step share."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskdecomp.dataset_builder.sampler import cell_weights, load_weights, plan_quotas
from taskdecomp.errors import ConfigError
from taskdecomp.taxonomy import CELLS, COMBINATION_KEYS, COMBINATIONS, QUOTA_CELLS, SINGLE_CELLS, STYLES, Cell

REPO = Path(__file__).resolve().parents[1]


def test_taxonomy_has_45_cells_with_round_trip_keys():
    assert len(COMBINATIONS) == 15 and len(CELLS) == 45 and len(set(CELLS)) == 45
    assert len(COMBINATION_KEYS) == 15
    for cell in CELLS:
        assert Cell.from_key(cell.key) == cell
        assert list(cell.modalities) == sorted(cell.modalities)
        assert len(cell.modalities) <= cell.min_steps <= 8
    assert Cell.from_key("text+audio/dag") == Cell(("audio", "text"), "dag")
    assert len(SINGLE_CELLS) == 4 and len(QUOTA_CELLS) == 49
    for cell in SINGLE_CELLS:
        assert Cell.from_key(cell.key) == cell and cell.key.endswith("/single")
        assert cell.structure == "chain" and cell.min_steps == cell.max_steps == 1
    assert all(c.min_steps >= 2 and c.max_steps == 8 for c in CELLS)


@pytest.mark.parametrize("n", [0, 1, 44, 45, 46, 100, 1000, 4999, 123457])
def test_even_quotas_sum_to_n_and_differ_by_at_most_one(n):
    q = plan_quotas(n, seed=3)
    assert set(q) == set(QUOTA_CELLS)
    assert sum(q.values()) == n
    multi, single = [q[c] for c in CELLS], [q[c] for c in SINGLE_CELLS]
    assert max(multi) - min(multi) <= 1 and max(single) - min(single) <= 1
    if n >= 1000:  # the default share of single-step rows: 15 %
        assert abs(sum(single) / n - 0.15) < 0.01


def test_quotas_are_deterministic_and_seed_moves_the_remainders():
    assert plan_quotas(100, seed=1) == plan_quotas(100, seed=1)
    only_multi = {"single_step": 0}
    winners = {
        s: frozenset(c for c, k in plan_quotas(100, only_multi, seed=s).items() if k == 3) for s in range(6)
    }
    assert all(len(w) == 10 for w in winners.values())
    assert len(set(winners.values())) > 1


@pytest.mark.parametrize(
    "weights",
    [
        None,
        {"dag": 2, "audio+video": 3},
        {"*": 0.3, "text/chain": 7.5, "image": 0},
        {"single_step": 0.4, "audio/single": 3, "style:question": 2},
    ],
)
def test_quotas_are_house_monotone(weights):
    prev = plan_quotas(0, weights, seed=5)
    for n in range(1, 400):
        cur = plan_quotas(n, weights, seed=5)
        assert sum(cur.values()) == n
        assert all(cur[c] >= prev[c] for c in cur), n
        prev = cur


def test_jump_start_equals_plain_sequential_allocation():
    """The fast path must hand out exactly the seats a row-by-row Sainte-Lague loop would."""
    import random

    weights = {"dag": 2.5, "audio+video": 3, "text": 0.2, "image+text/chain": 9}
    w = cell_weights(weights)
    assert set(w) == set(QUOTA_CELLS)
    order = list(QUOTA_CELLS)
    random.Random(11).shuffle(order)
    rank = {c: i for i, c in enumerate(order)}
    q = dict.fromkeys(QUOTA_CELLS, 0)
    for n in range(1, 700):
        best = min(QUOTA_CELLS, key=lambda c: (-w[c] / (q[c] + 0.5), rank[c]))
        q[best] += 1
        if n % 97 == 0 or n < 50:
            assert plan_quotas(n, weights, seed=11) == q, n


def test_weight_keys_and_their_precedence():
    w = cell_weights({"*": 2, "audio": 3, "dag": 5, "image+text/chain": 7, "video+text": 0})
    assert w[Cell(("audio",), "chain")] == 3  # combination x structure(1)
    assert w[Cell(("audio",), "dag")] == 15  # combination x structure
    assert w[Cell(("image",), "dag")] == 5  # structure alone
    assert w[Cell(("image", "text"), "chain")] == 7  # cell key wins
    assert w[Cell(("text", "video"), "parallel")] == 0
    assert w[Cell(("image",), "parallel")] == 2  # "*"


def test_weights_shape_the_quotas():
    q = plan_quotas(900, {"*": 0, "video": 1, "single_step": 0}, seed=0)
    assert {c for c, k in q.items() if k} == {Cell(("video",), s) for s in ("chain", "parallel", "dag")}
    assert sorted(q[c] for c in q if q[c]) == [300, 300, 300]
    # the single-step share goes to the single-step cells the weights keep: here video/single
    q = plan_quotas(1000, {"*": 0, "video": 1}, seed=0)
    assert {c.key for c, k in q.items() if k} == {
        "video/chain",
        "video/parallel",
        "video/dag",
        "video/single",
    }
    assert q[Cell.from_key("video/single")] == 150
    q = plan_quotas(1000, {"single_step": 0.3, "audio/single": 0}, seed=0)
    assert sum(q[c] for c in SINGLE_CELLS) == 300 and q[Cell.from_key("audio/single")] == 0
    q = plan_quotas(40, {"single_step": 1}, seed=0)
    assert sum(q[c] for c in SINGLE_CELLS) == 40
    q = plan_quotas(4500, {"dag": 2, "single_step": 0}, seed=0)
    dag = sum(k for c, k in q.items() if c.structure == "dag")
    assert dag == 2250  # dag cells weigh twice: half of all rows
    q = plan_quotas(450, {"audio+text/chain": 0, "single_step": 0}, seed=0)
    assert q[Cell(("audio", "text"), "chain")] == 0 and sum(q.values()) == 450


@pytest.mark.parametrize(
    ("weights", "needle"),
    [
        ({"podcast": 1}, "podcast"),
        ({"audio+smell": 1}, "audio+smell"),
        ({"audio/tree": 1}, "audio/tree"),
        ({"audio+audio": 1}, "audio+audio"),
        ({"dag": -1}, "dag"),
        ({"text": "lots"}, "text"),
        ({"text": True}, "text"),
        ({"image": float("nan")}, "image"),
        ({"audio+text/single": 1}, "one modality"),
        ({"style:poetic": 1}, "poetic"),
        ({"styles": {"question": -2}}, "question"),
        ({"style:*": 0}, "exclude every request style"),
        ({"single_step": 1.5}, "single_step"),
        ({"single_step": "lots"}, "single_step"),
    ],
)
def test_bad_weights_name_the_key(weights, needle):
    with pytest.raises(ConfigError, match=needle.replace("+", r"\+")):
        plan_quotas(10, weights)


def test_all_zero_weights_and_bad_n_are_config_errors():
    with pytest.raises(ConfigError, match="exclude every"):
        plan_quotas(10, {"*": 0})
    assert sum(plan_quotas(0, {"*": 0}).values()) == 0
    for bad in (-1, 2.5, "3", True):
        with pytest.raises(ConfigError):
            plan_quotas(bad)  # type: ignore[arg-type]


def test_style_weights_ride_on_the_cells():
    q = plan_quotas(100, {"styles": {"question": 3, "first_person": 0}}, seed=0)
    assert sum(q.values()) == 100
    for cell in q:
        w = cell.style_weights
        assert w["question"] == 3 and w["first-person"] == 0 and w["terse"] == 1 and set(w) == set(STYLES)
    assert plan_quotas(100, {"style:question": 1}, seed=0) == plan_quotas(100, seed=0)  # flat: plain cells


def test_load_weights_nested_flat_and_bad(tmp_path):
    example = load_weights(REPO / "recipes" / "quotas.example.yaml")
    assert example["dag"] == 1.5
    assert example["single_step"] == 0.15 and example["style:question"] == 1.0
    sections = tmp_path / "sections.yaml"
    sections.write_text("weights: {dag: 2}\nstyles: {terse: 0, first-person: 2}\nsingle-step: 0.25\n")
    assert load_weights(sections) == {
        "dag": 2.0,
        "style:terse": 0.0,
        "style:first-person": 2.0,
        "single_step": 0.25,
    }
    bad_style = tmp_path / "bad_style.yaml"
    bad_style.write_text("styles: {sonnet: 1}\n")
    with pytest.raises(ConfigError, match="bad_style.yaml.*sonnet"):
        load_weights(bad_style)
    bad_share = tmp_path / "bad_share.yaml"
    bad_share.write_text("single_step: 15\n")
    with pytest.raises(ConfigError, match="single_step"):
        load_weights(bad_share)
    assert sum(plan_quotas(1000, example, seed=0).values()) == 1000
    flat = tmp_path / "flat.yaml"
    flat.write_text('"audio+text/chain": 2\ndag: 0\n')
    assert load_weights(flat) == {"audio+text/chain": 2.0, "dag": 0.0}
    bad = tmp_path / "bad.yaml"
    bad.write_text("weights: {dag: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_weights(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("weights:\n  holograms: 2\n")
    with pytest.raises(ConfigError, match="holograms"):
        load_weights(unknown)
    with pytest.raises(ConfigError, match="not found"):
        load_weights(tmp_path / "missing.yaml")
