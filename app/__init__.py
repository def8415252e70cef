"""The Gradio app: explore a task-decomposition dataset and try the planners in a browser.

    pip install '.[app]'
    taskdecomp-app --dataset ./task-decomposition          # or: python -m taskdecomp.app
    taskdecomp-app --dataset USER/task-decomposition --planner adapter --adapter USER/decomposer

Two tabs. **Plan**: type a task, pick the planner (the keyword heuristic, an adapter, or an
OpenAI-compatible server), see the plan drawn as a graph and its dry-run schedule (waves of steps
that run together). **Explore**: load a dataset (a build-dataset folder or a Hub id), filter its
rows by modality combination, structure and request style, see a row with its plan drawn, and
the coverage chart. `publish-space` pushes the same app as a Hugging Face Space.

Gradio is an optional extra: importing this package loads no gradio; `build_app` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskdecomp.errors import ConfigError

if TYPE_CHECKING:
    import gradio as gr

__all__ = ["build_app", "main", "require_gradio"]

MISSING_GRADIO = "gradio is not installed: pip install 'taskdecomp[app]' (or pip install -e '.[app]')"


def require_gradio() -> None:
    """`ConfigError` (one line) when the `app` extra is not installed."""
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise ConfigError(MISSING_GRADIO)


def build_app(**kwargs: Any) -> gr.Blocks:
    """The app's `gr.Blocks`, not launched (see `taskdecomp.app.ui.build_app` for the options)."""
    require_gradio()
    from taskdecomp.app.ui import build_app as build

    return build(**kwargs)


def main(argv: list[str] | None = None) -> int:
    """`taskdecomp-app`: build the app and serve it (see `taskdecomp.app.cli`)."""
    from taskdecomp.app.cli import main as run

    return run(argv)
