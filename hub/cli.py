"""`publish-dataset DIR --repo-id USER/task-decomposition [--private] [--revision BRANCH]`

Regenerates DIR's card for the repo and pushes card, chart, stats and shards to the Hub in one
commit; prints the dataset URL on stdout (progress goes to stderr).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub.utils import logging as hf_logging

from taskdecomp.cli import entrypoint
from taskdecomp.config import parse_config
from taskdecomp.errors import ConfigError
from taskdecomp.hub.publish import publish_dataset, validate_repo_id
from taskdecomp.reporter import Reporter

__all__ = ["PublishConfig", "main"]


@dataclass
class PublishConfig:
    dir: Path | None = field(default=None, metadata={"help": "a built dataset folder (build-dataset --out)"})
    repo_id: str = field(
        default="", metadata={"help": "USER/NAME of the dataset repo, e.g. alice/task-decomposition"}
    )
    private: bool = field(
        default=False, metadata={"help": "create the repo as private (if it does not exist)"}
    )
    revision: str | None = field(
        default=None, metadata={"help": "branch to commit to (created if new; default main)"}
    )
    quiet: bool = field(default=False, metadata={"help": "print only the URL"})

    def __post_init__(self) -> None:
        if self.dir is None:
            raise ConfigError("missing DIR: pass the folder build-dataset wrote (see publish-dataset --help)")
        if not self.repo_id:
            raise ConfigError("--repo-id is required, e.g. --repo-id alice/task-decomposition")
        self.repo_id = validate_repo_id(self.repo_id)  # exit 2 before touching DIR or the network
        if self.revision is not None and not self.revision.strip():
            raise ConfigError("--revision must not be empty")


@entrypoint("publish-dataset")
def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(
        PublishConfig,
        argv,
        prog="publish-dataset",
        description="Publish a built dataset on the Hugging Face Hub (one atomic commit).",
        positionals=("dir",),
    )
    assert cfg.dir is not None  # __post_init__ refused None
    # the client's own warnings (a dozen "Retrying in 1s" lines before a 5xx gives up) would bury
    # the one line the CLI edge prints; its progress bars are handled by `push_files`
    hf_logging.set_verbosity_error()
    reporter = Reporter(quiet=cfg.quiet)
    url = publish_dataset(cfg.dir, cfg.repo_id, private=cfg.private, revision=cfg.revision, reporter=reporter)
    print(url)
    return 0
