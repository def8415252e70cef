"""The dataset card and loader config: parses with huggingface_hub, loads with datasets, says
what the built folder holds (counts, example, coverage), and renders the coverage chart."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import huggingface_hub
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard
from matplotlib import image as mpimg

from taskdecomp.errors import InputError
from taskdecomp.loader_script.dataset_card import write_dataset_card
from taskdecomp.loader_script.features import ALPACA_COLUMNS
from taskdecomp.stats import coverage_table

from dataset_fixture import build_fixture
from hub_server import HubServer

REPO_ID = "alice/task-decomposition"


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, dict[str, list[dict]]]:
    out = tmp_path / "ds"
    return out, build_fixture(out, n=40)


def _by_id(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: r["id"])


def test_card_parses_and_carries_the_metadata(built) -> None:
    out, splits = built
    path = write_dataset_card(out, repo_id=REPO_ID)
    assert path == out / "README.md"
    card = DatasetCard.load(path)
    data = card.data.to_dict()
    assert data["license"] == "mit"
    assert data["language"] == ["en"]
    assert data["task_categories"] == ["text-generation"]
    assert data["size_categories"] == ["n<1K"]
    assert data["pretty_name"] and "task-decomposition" in data["tags"]
    configs = {c["config_name"]: c for c in data["configs"]}
    assert set(configs) == {"default", "alpaca"}
    assert configs["alpaca"]["columns"] == list(ALPACA_COLUMNS)
    assert {f["split"] for f in configs["default"]["data_files"]} == {"train", "test"}
    infos = {i["config_name"]: i for i in data["dataset_info"]}
    for name in ("default", "alpaca"):
        sizes = {s["name"]: s["num_examples"] for s in infos[name]["splits"]}
        assert sizes == {k: len(v) for k, v in splits.items()}
    assert [f["name"] for f in infos["alpaca"]["features"]] == list(ALPACA_COLUMNS)
    # the YAML header is plain (no anchors/aliases that some YAML readers reject)
    assert "&id" not in path.read_text() and "*id" not in path.read_text()


def test_card_body_describes_the_build(built) -> None:
    out, splits = built
    text = write_dataset_card(out, repo_id=REPO_ID).read_text()
    stats = json.loads((out / "stats.json").read_text())
    first_train = pq.read_table(sorted((out / "data").glob("train-*.parquet"))[0]).slice(0, 1).to_pylist()[0]
    assert first_train["id"] in text and first_train["instruction"] in text  # a real example
    assert coverage_table(stats["coverage"]) in text
    assert "](coverage.png)" in text
    assert f'load_dataset("{REPO_ID}")' in text
    assert f'load_dataset("{REPO_ID}", "alpaca")' in text
    assert f"train-adapter --dataset {REPO_ID}" in text
    assert "Decompose and Conquer" in text
    for needle in ("`offline`", "`v1`", "| `schema` | 3 |", "1 exact, 2 near", "1200 / 3400", "ROUGE-L"):
        assert needle in text, needle
    for heading in (
        "## How it was built",
        "## Fields",
        "## Coverage",
        "## Usage",
        "## Limitations",
        "## License",
    ):
        assert heading in text
    assert f"**{sum(map(len, splits.values()))} rows**" in text


def test_card_renders_the_coverage_png(built) -> None:
    out, _ = built
    write_dataset_card(out)
    png = out / "coverage.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = mpimg.imread(png).shape[:2]
    assert height > 300 and width > 200
    # written atomically: no temp files left beside the card and chart
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_stats_without_coverage_are_recounted_from_the_shards(built) -> None:
    out, _ = built
    stats = json.loads((out / "stats.json").read_text())
    (out / "stats.json").write_text(json.dumps({k: v for k, v in stats.items() if k != "coverage"}))
    text = write_dataset_card(out).read_text()
    assert coverage_table(stats["coverage"]) in text
    assert f"covering {len(stats['coverage'])} modality combinations" in text


def test_without_repo_id_the_card_has_a_placeholder(built) -> None:
    out, _ = built
    text = write_dataset_card(out).read_text()
    assert 'load_dataset("<user>/task-decomposition")' in text


def test_rebuild_regenerates_the_card(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    build_fixture(out, n=40)
    assert "**40 rows**" in write_dataset_card(out).read_text()
    build_fixture(out, n=20, tag="b")
    text = write_dataset_card(out).read_text()
    assert "**20 rows**" in text and "**40 rows**" not in text


def test_local_folder_loads_with_both_configs(built) -> None:
    out, splits = built
    write_dataset_card(out, repo_id=REPO_ID)
    ds = datasets.load_dataset(str(out))
    assert set(ds) == {"train", "test"}
    for split, rows in splits.items():
        assert _by_id(ds[split].to_list()) == _by_id(rows)
    alpaca = datasets.load_dataset(str(out), "alpaca")
    for split, rows in splits.items():
        assert alpaca[split].column_names == list(ALPACA_COLUMNS)
        assert sorted(alpaca[split].to_list(), key=json.dumps) == sorted(
            ({c: r[c] for c in ALPACA_COLUMNS} for r in rows), key=json.dumps
        )


def test_not_a_built_dataset(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a built dataset"):
        write_dataset_card(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-00000-of-00001.parquet").write_bytes(b"x")
    with pytest.raises(InputError, match="not a built dataset"):  # shards but no stats.json
        write_dataset_card(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        write_dataset_card(tmp_path / "missing")


def test_hub_validates_the_card_metadata(built, monkeypatch) -> None:
    """`DatasetCard.validate` posts the card to the Hub's validate-yaml endpoint."""
    out, _ = built
    card = DatasetCard.load(write_dataset_card(out, repo_id=REPO_ID))
    with HubServer() as hub:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.endpoint)
        card.validate(repo_type="dataset")
        assert ("POST", "/api/validate-yaml", 200) in hub.requests
        broken = DatasetCard("---\nconfigs: [{data_files: x}]\n---\n# nothing\n")
        with pytest.raises(ValueError):
            broken.validate(repo_type="dataset")
