"""`--push`: the card, adapter, tokenizer, config, log and loss plot in ONE Hub commit.

Not `PeftModel.push_to_hub`: that writes its own card and makes a commit per call. We reuse
the toolkit's Hub layer (`taskdecomp.hub.push_files`: one atomic `create_commit`).
"""

from __future__ import annotations

from pathlib import Path

from taskdecomp.reporter import Reporter

from .train_config import PUSH_FILES

__all__ = ["push_adapter"]


def push_adapter(
    output_dir: Path, repo_id: str, *, token: str, private: bool = False, reporter: Reporter | None = None
) -> str:
    """Upload a finished train-adapter folder to the model repo `repo_id`; returns the commit URL."""
    from taskdecomp.hub import push_files

    out = Path(output_dir)
    files = {name: out / name for name in PUSH_FILES if (out / name).is_file()}
    return push_files(
        repo_id,
        files,
        repo_type="model",
        token=token,
        private=private,
        commit_message=f"Upload adapter ({out.name}) with train-adapter",
        reporter=reporter,
    )
