"""`publish-space --repo-id USER/task-decomposition-demo [--dataset USER/DS] [--adapter USER/ADAPTER]`

Pushes the app (`taskdecomp.app`) as a Gradio Space in one commit: README.md (the Space card,
`sdk: gradio`), app.py and requirements.txt, plus the toolkit's source unless `--requirement`
says where the Space installs it from. Prints the Space URL on stdout (progress on stderr).
`--dry-run` lists what would be pushed and needs no token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub.utils import logging as hf_logging

from taskdecomp.cli import entrypoint
from taskdecomp.config import parse_config
from taskdecomp.errors import ConfigError
from taskdecomp.hub.publish import validate_repo_id
from taskdecomp.hub.space import SpaceSpec, check_hub_id, publish_space, space_files
from taskdecomp.reporter import Reporter

__all__ = ["SpaceConfig", "main"]


@dataclass
class SpaceConfig:
    repo_id: str = field(
        default="", metadata={"help": "USER/NAME of the Space, e.g. alice/task-decomposition-demo"}
    )
    dataset: str | None = field(
        default=None, metadata={"help": "Hub dataset id the Explore tab loads (publish-dataset first)"}
    )
    adapter: str | None = field(
        default=None,
        metadata={"help": "Hub model id of the adapter the Plan tab offers (train-adapter --push)"},
    )
    requirement: str | None = field(
        default=None,
        metadata={
            "help": "where the Space installs taskdecomp from (e.g. 'taskdecomp @ git+https://...'); "
            "default: push the toolkit's source with the app"
        },
    )
    private: bool = field(default=False, metadata={"help": "create the Space as private (if it is new)"})
    dry_run: bool = field(
        default=False, metadata={"help": "list the files that would be pushed; push nothing"}
    )
    quiet: bool = field(default=False, metadata={"help": "print only the URL"})

    def __post_init__(self) -> None:
        if not self.repo_id:
            raise ConfigError("--repo-id is required, e.g. --repo-id alice/task-decomposition-demo")
        self.repo_id = validate_repo_id(self.repo_id)  # exit 2 before touching the network
        self.dataset = check_hub_id(self.dataset, "--dataset", "dataset", "publish-dataset")
        self.adapter = check_hub_id(self.adapter, "--adapter", "model", "train-adapter --push")
        if self.requirement is not None:
            self.requirement = " ".join(self.requirement.split())
            if not self.requirement or self.requirement.startswith("-"):
                raise ConfigError(
                    "--requirement must be a pip requirement such as "
                    "'taskdecomp @ git+https://github.com/you/taskdecomp@main'"
                )


@entrypoint("publish-space")
def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(
        SpaceConfig,
        argv,
        prog="publish-space",
        description="Publish the task-decomposition app as a Hugging Face Space (one atomic commit).",
    )
    spec = SpaceSpec(cfg.repo_id, dataset=cfg.dataset, adapter=cfg.adapter, requirement=cfg.requirement)
    if cfg.dry_run:
        files = space_files(spec)
        for path, content in files.items():
            size = Path(content).stat().st_size if isinstance(content, Path) else len(content.encode())
            print(f"{path}\t{size}")
        print(f"{len(files)} files would be pushed to the Space {cfg.repo_id} (dry run: nothing was pushed)")
        return 0
    hf_logging.set_verbosity_error()  # the client's retry chatter would bury the one error line
    url = publish_space(spec, private=cfg.private, reporter=Reporter(quiet=cfg.quiet))
    print(url)
    return 0
