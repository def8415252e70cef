"""The one prompt format, shared by training, evaluation and inference.

Rows become TRL *conversational prompt-completion* examples: the prompt is a system + user
message, the completion the assistant's numbered plan. TRL applies the model's chat template,
computes loss on the completion only, and keeps the EOS token in the labels. At inference we
render exactly the same prompt with `add_generation_prompt=True`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

__all__ = ["system_prompt", "build_messages", "to_prompt_completion", "render_prompt"]


@cache
def system_prompt() -> str:
    from taskdecomp.prompts import read

    return read("decompose_system.txt").strip()


def build_messages(instruction: str, input: str = "") -> list[dict[str, str]]:
    user = instruction.strip()
    if input and input.strip():
        user += "\n\nInput:\n" + input.strip()
    return [{"role": "system", "content": system_prompt()}, {"role": "user", "content": user}]


def to_prompt_completion(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": build_messages(row["instruction"], row.get("input") or ""),
        "completion": [{"role": "assistant", "content": row["output"]}],
    }


def render_prompt(tokenizer: Any, instruction: str, input: str = "") -> str:
    """The text a model sees before it starts its answer (same as in training)."""
    return tokenizer.apply_chat_template(
        build_messages(instruction, input), tokenize=False, add_generation_prompt=True
    )
