"""`build-dataset`: parse flags/YAML into a BuildConfig and run the build."""

from __future__ import annotations

import json
from collections.abc import Sequence

from taskdecomp.cli import entrypoint
from taskdecomp.config import parse_config
from taskdecomp.reporter import Reporter

from .build_config import BuildConfig

__all__ = ["main"]

DESCRIPTION = (
    "Build a balanced, validated, de-duplicated multi-modal task-decomposition dataset "
    "(Alpaca-style rows + typed subtasks). Resumable: re-run the same command after a crash."
)


@entrypoint("build-dataset")
def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(BuildConfig, argv, prog="build-dataset", description=DESCRIPTION)
    reporter = Reporter(quiet=cfg.quiet)
    # the build modules are imported after parsing, so that --help answers at once
    if cfg.dry_run:
        from .estimate import estimate

        print(json.dumps(estimate(cfg, reporter).to_dict(), indent=2))
        return 0
    from .build import build

    summary = build(cfg, reporter)
    if summary.url:
        print(summary.url)  # the one result a script wants, even with --quiet
    return 0


if __name__ == "__main__":
    raise SystemExit(main(None))
