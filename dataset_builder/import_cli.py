"""`import-dataset PATH... --out DIR`: parse flags, run the import, exit 0 / 2."""

from __future__ import annotations

from collections.abc import Sequence

from taskdecomp.cli import entrypoint
from taskdecomp.config import parse_config
from taskdecomp.dataset_builder.importer import ImportConfig, import_dataset
from taskdecomp.reporter import Reporter

__all__ = ["main"]

DESCRIPTION = (
    "Import Alpaca-style rows (JSON arrays or JSONL of {instruction, output[, input]}, e.g. the "
    "original project's 1,000 rows) into a validated, de-duplicated dataset folder with source 'seed'."
)


@entrypoint("import-dataset")
def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(
        ImportConfig, argv, prog="import-dataset", description=DESCRIPTION, positionals=("paths",)
    )
    import_dataset(cfg, Reporter(quiet=cfg.quiet))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(None))
