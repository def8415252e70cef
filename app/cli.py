"""`taskdecomp-app`: serve the Gradio app (Explore and Plan tabs) on this machine.

    taskdecomp-app --dataset ./task-decomposition                  # http://127.0.0.1:7860
    taskdecomp-app --dataset USER/task-decomposition --planner adapter --adapter USER/decomposer
    taskdecomp-app --planner server --base-url http://127.0.0.1:8000/v1 --model task-adapter

Nothing is shared publicly (no Gradio share link, so no tunnel binary is downloaded) and no
usage statistics are sent (`GRADIO_ANALYTICS_ENABLED=False`). Host and port default to
Gradio's (`GRADIO_SERVER_NAME` / `GRADIO_SERVER_PORT`, as a Space sets them; else
127.0.0.1:7860).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from taskdecomp.cli import entrypoint
from taskdecomp.config import parse_config
from taskdecomp.errors import ConfigError

__all__ = ["AppConfig", "main", "launch_options"]


@dataclass
class AppConfig:
    dataset: str | None = field(
        default=None, metadata={"help": "dataset for the Explore tab: a build-dataset folder or a Hub id"}
    )
    planner: Literal["heuristic", "adapter", "server"] = field(
        default="heuristic", metadata={"help": "the Plan tab's first planner"}
    )
    adapter: str | None = field(default=None, metadata={"help": "train-adapter output folder or Hub repo id"})
    base_url: str | None = field(default=None, metadata={"help": "an OpenAI-compatible server's base URL"})
    model: str | None = field(default=None, metadata={"help": "with --base-url: the served model"})
    host: str | None = field(default=None, metadata={"help": "address to listen on (default 127.0.0.1)"})
    port: int | None = field(default=None, metadata={"help": "port (default 7860, or the next free one)"})
    quiet: bool = field(default=False, metadata={"help": "print only the URL"})

    def __post_init__(self) -> None:
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ConfigError(f"--port must be 1 to 65535, got {self.port}")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"--base-url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {self.base_url!r}"
            )
        if self.planner == "adapter" and not self.adapter:
            raise ConfigError("--planner adapter needs --adapter (a train-adapter folder or a Hub repo id)")
        if self.planner == "server" and not self.base_url:
            raise ConfigError("--planner server needs --base-url (an OpenAI-compatible server)")


def launch_options(cfg: AppConfig) -> dict[str, object]:
    """`Blocks.launch` keywords: local only, no share tunnel, no server-side rendering (no Node)."""
    return {
        "server_name": cfg.host,
        "server_port": cfg.port,
        "share": False,
        "ssr_mode": False,
        "mcp_server": False,
        "quiet": cfg.quiet,
        "show_error": False,  # a handler's own message is shown; never a traceback
    }


@entrypoint("taskdecomp-app")
def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(
        AppConfig,
        argv,
        prog="taskdecomp-app",
        description="Serve the task-decomposition app (Explore a dataset, Plan a task) with Gradio.",
    )
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from taskdecomp.app import build_app

    demo = build_app(
        dataset=cfg.dataset, planner=cfg.planner, adapter=cfg.adapter, base_url=cfg.base_url, model=cfg.model
    )
    demo.queue(default_concurrency_limit=2).launch(**launch_options(cfg))  # type: ignore[arg-type]
    return 0
