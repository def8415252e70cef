"""The built-in text handler for any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp
server, Ollama, ...); the dry run lives with the dispatcher (`taskdecomp.dispatch.DryRunHandler`)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from taskdecomp.errors import AuthError, BackendError, ConfigError
from taskdecomp.plan import Step

__all__ = ["OpenAITextHandler", "DEFAULT_TEXT_MODEL"]

DEFAULT_TEXT_MODEL = "gpt-4o-mini"


class OpenAITextHandler:
    """Text steps through `chat.completions` of any OpenAI-compatible endpoint.

    Settings come from the arguments, else `OPENAI_BASE_URL`, `OPENAI_API_KEY` and
    `TASKDECOMP_TEXT_MODEL` (default `gpt-4o-mini`). A local endpoint (a `base_url`) may run
    without a key; the OpenAI API may not. The client retries 429/5xx itself (`max_retries`).
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        max_tokens: int = 512,
        temperature: float = 0.2,
        timeout: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        self.model = model or os.environ.get("TASKDECOMP_TEXT_MODEL") or DEFAULT_TEXT_MODEL
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = api_key or os.environ.get("OPENAI_API_KEY") or ""
        if not key:
            if not self.base_url:
                raise AuthError(
                    "the text handler needs OPENAI_API_KEY (or OPENAI_BASE_URL of a local OpenAI-compatible server)"
                )
            key = "no-key"  # local servers ignore it; the client insists on one
        self._key = key
        self.max_tokens, self.temperature = max_tokens, temperature
        self.timeout, self.max_retries = timeout, max_retries
        self._client: Any = None
        self._loop: Any = None

    def _get_client(self) -> Any:
        # Created lazily on the loop that runs the plan: the client's connection pool belongs to
        # that loop, and every `plan.run()` runs a fresh one.
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            from openai import AsyncOpenAI

            self._loop = loop

            self._client = AsyncOpenAI(
                api_key=self._key, base_url=self.base_url, timeout=self.timeout, max_retries=self.max_retries
            )
        return self._client

    def _where(self) -> str:
        return self.base_url or "api.openai.com"

    def messages(self, step: Step, inputs: Mapping[int, Any]) -> list[dict[str, str]]:
        from taskdecomp.prompts import render

        user = render("handler_text.j2", description=step.description, inputs=sorted(inputs.items())).strip()
        system = render("handler_text_system.j2", operation=step.operation).strip()
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    async def __call__(self, step: Step, inputs: Mapping[int, Any]) -> str:
        import openai

        if step.modality != "text":
            raise ConfigError(f"the OpenAI text handler cannot run a {step.modality} step")
        try:
            response = await self._get_client().chat.completions.create(
                model=self.model,
                messages=self.messages(step, inputs),
                max_tokens=self.max_tokens,
                temperature=self.temperature,
            )
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise AuthError(
                f"text endpoint refused the key ({exc.status_code}); check OPENAI_API_KEY"
            ) from None
        except openai.APIStatusError as exc:
            raise BackendError(
                f"text endpoint {self._where()} answered {exc.status_code} for step {step.step}; "
                "check the model name and the endpoint, then run the plan again"
            ) from None
        except openai.APIError as exc:  # connection errors, timeouts after the client's retries
            raise BackendError(
                f"text endpoint {self._where()} failed ({exc.__class__.__name__}) for step {step.step}; "
                "check that it is reachable (OPENAI_BASE_URL), then run the plan again"
            ) from None
        choice = response.choices[0].message
        if not choice.content:
            raise BackendError(f"text endpoint returned no content{' (refusal)' if choice.refusal else ''}")
        return choice.content.strip()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
