"""The one prompt format, shared by training, evaluation and inference.

Rows become TRL *conversational prompt-completion* examples: the prompt is a system + user
message, the completion the assistant's numbered plan. TRL applies the model's chat template,
computes loss on the completion only, and keeps the EOS token in the labels. At inference we
render exactly the same prompt with `add_generation_prompt=True`.

Tool plans (`--tools CATALOGUE`) use the tool prompt (`prompts/decompose_tools_system.j2`: the
catalogue's ids grouped by their step tag) in training and decoding alike. It is compact on
purpose (~400 tokens for the 46 default tools, against ~1,300 with the types and descriptions):
every training example carries it, and the grammar already holds each step to a tool of its
tag whose input types the linked steps' outputs feed, so the prompt only has to name them: a row whose subtasks name tools is trained with it (the default catalogue unless one is
given), and `decompose --tools` / `evaluate-adapter` on tool data decode with it.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskdecomp.catalogue import Catalogue

__all__ = ["system_prompt", "build_messages", "to_prompt_completion", "render_prompt", "row_has_tools"]


@cache
def system_prompt(catalogue: Catalogue | None = None) -> str:
    """The plain plan prompt, or with a catalogue the tool prompt listing its tools."""
    from taskdecomp.prompts import read, render

    if catalogue is None:
        return read("decompose_system.txt").strip()
    groups: dict[str, list[str]] = {}
    for tool in catalogue.tools:
        groups.setdefault(f"{tool.modality} {tool.operation}", []).append(tool.id)
    return render("decompose_tools_system.j2", catalogue=catalogue, groups=list(groups.items())).strip()


def build_messages(
    instruction: str, input: str = "", catalogue: Catalogue | None = None
) -> list[dict[str, str]]:
    user = instruction.strip()
    if input and input.strip():
        user += "\n\nInput:\n" + input.strip()
    return [{"role": "system", "content": system_prompt(catalogue)}, {"role": "user", "content": user}]


def row_has_tools(row: dict[str, Any]) -> bool:
    return any(isinstance(st, dict) and st.get("tool") for st in row.get("subtasks") or ())


def to_prompt_completion(row: dict[str, Any], catalogue: Catalogue | None = None) -> dict[str, Any]:
    """A row as a prompt-completion example; a row with tools gets the tool prompt of
    `catalogue` (default: the default catalogue), a row without the plain one."""
    tools = None
    if row_has_tools(row):
        from taskdecomp.catalogue import default_catalogue

        tools = catalogue or default_catalogue()
    return {
        "prompt": build_messages(row["instruction"], row.get("input") or "", tools),
        "completion": [{"role": "assistant", "content": row["output"]}],
    }


def render_prompt(
    tokenizer: Any, instruction: str, input: str = "", catalogue: Catalogue | None = None
) -> str:
    """The text a model sees before it starts its answer (same as in training)."""
    return tokenizer.apply_chat_template(
        build_messages(instruction, input, catalogue), tokenize=False, add_generation_prompt=True
    )
