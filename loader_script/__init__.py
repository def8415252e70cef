"""The dataset card and the no-code loader configuration of a built dataset.

`datasets` 4+ runs no Python loading scripts, so the "loader" here is data: `features.py`
defines the columns and the card's YAML `configs` (which Parquet shards make which split; the
`alpaca` config selects instruction/input/output), `dataset_card.py` renders the card
(`README.md`, from the `dataset_card.md.j2` template) with that YAML header, and `chart.py`
draws the coverage chart committed beside it.
"""
