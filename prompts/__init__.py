"""Prompt and card templates, shipped as package data and rendered with Jinja2."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import jinja2

__all__ = ["read", "render"]


def read(name: str) -> str:
    """The raw text of a template file in this folder."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(read),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(name: str, **context: Any) -> str:
    return _env().get_template(name).render(**context)
