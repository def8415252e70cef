"""The LLM side of `build-dataset --tools`: the OpenAI-compatible backend whose requests carry
tool graphs.

For each request it samples the graphs of the request's tool cell from the request's seed
(so a retried, resumed or batched request sends the same prompt), puts them in the prompt
(`prompts/generate_tools_*.j2`) and asks for a row per graph: the instruction written from
the graph (back-instruction), a description and the arguments of every step. Transport,
retries, rate limits, budgets, JSON-mode fallback and the Batch API are `OpenAIBackend`'s.
The build's tool validator then checks what comes back (tools exist, types chain).
"""

from __future__ import annotations

from typing import Any, ClassVar

from taskdecomp.catalogue import Catalogue
from taskdecomp.errors import ConfigError

from .backend import GenerationRequest
from .openai_backend import OpenAIBackend
from .toolgraph import TOOL_PROMPT_VERSION, ToolCell, request_graphs, tool_messages, tool_response_format

__all__ = ["ToolGraphOpenAIBackend"]


class ToolGraphOpenAIBackend(OpenAIBackend):
    """`OpenAIBackend` for tool cells: the prompt holds the sampled graphs of the catalogue."""

    prompt_version: ClassVar[str | None] = TOOL_PROMPT_VERSION

    def __init__(self, catalogue: Catalogue, model: str, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.catalogue = catalogue

    def messages(self, request: GenerationRequest) -> list[dict[str, str]]:
        cell = request.cell
        if not isinstance(cell, ToolCell):
            raise ConfigError(
                f"the tool-graph backend got taxonomy cell {cell.key}; it builds tool cells only"
            )
        graphs = request_graphs(self.catalogue, cell, request.n_rows, request.seed)
        return tool_messages(self.catalogue, graphs, avoid=request.avoid, json_mode=self.json_mode)

    def response_format(self) -> dict[str, Any]:
        return tool_response_format(self.catalogue, self.json_mode)
