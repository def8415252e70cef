"""One config object per command: a dataclass, loadable from YAML, every field a flag.

    @dataclass
    class BuildConfig:
        n: int = field(default=5000, metadata={"help": "rows to build"})

    cfg = parse_config(BuildConfig, argv, prog="build-dataset")

Precedence: dataclass defaults < `--config FILE` (YAML) < flags. Unknown YAML keys, wrong
types and argparse errors raise `ConfigError` (one line, exit 2 at the CLI edge). A dataclass
may validate itself in `__post_init__` by raising `ConfigError`.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from .errors import ConfigError

__all__ = ["parse_config", "load_yaml", "to_dict", "make_parser"]

T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one line, not usage + traceback
        raise ConfigError(f"{message} (see {self.prog} --help)")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(name: str, tp: Any, value: Any, source: str) -> Any:
    """Coerce a YAML/flag value to the field's type, or raise ConfigError naming the key."""
    inner, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: '{name}' must not be empty")
    origin = get_origin(inner)
    try:
        if inner is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
                return value.lower() in ("true", "yes", "1")
            raise ValueError
        if origin is Literal:
            if value not in get_args(inner):
                choices = ", ".join(map(str, get_args(inner)))
                raise ConfigError(f"{source}: '{name}' must be one of {choices}, got {value!r}")
            return value
        if origin in (list, tuple):
            (item_tp, *_) = get_args(inner) or (str,)
            if isinstance(value, str):
                value = [v for v in value.split(",") if v.strip()]
            if not isinstance(value, list | tuple):
                raise ValueError
            return [_coerce(name, item_tp, v, source) for v in value]
        if origin is dict or inner is dict:
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
        if inner is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if inner is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if inner is str:
            if isinstance(value, dict | list):
                raise ValueError
            return str(value)
        if inner is Path:
            return Path(value)
        return value
    except ConfigError:
        raise
    except (TypeError, ValueError):
        tname = getattr(inner, "__name__", str(inner))
        raise ConfigError(f"{source}: '{name}' must be {tname}, got {value!r}") from None


def load_yaml(path: str | Path, *, what: str = "config file", flag: str = "--config") -> dict[str, Any]:
    """A YAML mapping from `path`; `ConfigError` (naming `what` and `flag`) when it can't be one."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {p} not found; check the path given to {flag}") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {p} is a directory; pass a YAML file to {flag}") from None
    except PermissionError:
        raise ConfigError(f"{what} {p} is not readable (permission denied); fix its permissions") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {p} is not a text file; pass a YAML file to {flag}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {p}: {exc.strerror or exc.__class__.__name__}") from None
    if "\x00" in text:
        raise ConfigError(f"{what} {p} is not a text file; pass a YAML file to {flag}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{what} {p} is not valid YAML{where}; fix the syntax and retry") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {p} must be a YAML mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def make_parser(cls: type, *, prog: str, description: str = "", positionals: Sequence[str] = ()) -> _Parser:
    """An argparse parser with one flag per dataclass field (defaults suppressed, so we can
    tell which flags were given and layer them over YAML)."""
    parser = _Parser(prog=prog, description=description, argument_default=argparse.SUPPRESS)
    parser.add_argument(
        "--config", metavar="FILE", help="YAML file with any of these options; flags override it"
    )
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.metadata.get("cli") is False:
            continue
        tp, _ = _unwrap_optional(hints[f.name])
        help_ = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else None
        if default is not None and not isinstance(default, bool):
            help_ = f"{help_} (default: {default})" if help_ else f"(default: {default})"
        if f.name in positionals:
            nargs = "*" if get_origin(tp) in (list, tuple) else "?"
            parser.add_argument(f.name, nargs=nargs, help=help_, metavar=f.name.upper())
            continue
        flag = "--" + f.name.replace("_", "-")
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, help=help_)
        elif get_origin(tp) in (list, tuple):
            parser.add_argument(flag, dest=f.name, nargs="+", help=help_)
        elif get_origin(tp) is Literal:
            parser.add_argument(flag, dest=f.name, choices=list(get_args(tp)), help=help_)
        elif tp in (int, float):
            parser.add_argument(flag, dest=f.name, type=tp, help=help_, metavar=tp.__name__.upper())
        else:
            parser.add_argument(flag, dest=f.name, help=help_)
    return parser


def parse_config(
    cls: type[T],
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str = "",
    positionals: Sequence[str] = (),
    base: dict[str, Any] | None = None,
) -> T:
    """Defaults < `base` (e.g. a recipe) < `--config` YAML < flags; returns a `cls` instance."""
    parser = make_parser(cls, prog=prog, description=description, positionals=positionals)
    ns = vars(parser.parse_args(argv))
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    layers: list[tuple[str, dict[str, Any]]] = []
    if base:
        layers.append(("recipe", base))
    if ns.get("config"):
        layers.append((str(ns["config"]), load_yaml(ns.pop("config"))))
    ns.pop("config", None)
    for source, layer in layers:
        unknown = sorted(set(layer) - names)
        if unknown:
            raise ConfigError(f"{source}: unknown key '{unknown[0]}'; valid keys: {', '.join(sorted(names))}")
        for key, value in layer.items():
            values[key] = _coerce(key, hints[key], value, source)
    for key, value in ns.items():
        if key in positionals and value in (None, []):
            continue
        values[key] = _coerce(key, hints[key], value, "flag --" + key.replace("_", "-"))
    missing = [
        f.name
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.init
        and f.name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:  # say which option, as the user types it, and what it wants
        name = missing[0]
        spec = next(f for f in dataclasses.fields(cls) if f.name == name)  # type: ignore[arg-type]
        shown = name.upper() if name in positionals else "--" + name.replace("_", "-")
        help_ = spec.metadata.get("help", "")
        raise ConfigError(f"{shown} is required" + (f": {help_}" if help_ else "") + f" (see {prog} --help)")
    return cls(**values)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The effective config as plain YAML-able data (Paths as strings)."""
    out = {}
    for key, value in dataclasses.asdict(cfg).items():
        out[key] = str(value) if isinstance(value, Path) else value
    return out
