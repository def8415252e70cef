"""Tool-graph rows (`build-dataset --tools CATALOGUE`): sample typed tool subgraphs, then write
the request from the graph (back-instruction).

Quotas are over *tool cells*, structure × size: `single/1`, `chain/2` … `chain/6`, `dag/3` …
`dag/6` (a DAG is a connected plan that is not a chain: a fan-out, a join or a shortcut). Each
row of a cell is a graph of that many distinct catalogue tools whose every link is typed: an
output type of each dependency is an input type of its dependent (`Catalogue.feeds`). A
request of a cell anchors its rows on consecutive tools of a fixed permutation of the
catalogue (from a seeded offset) and prefers tools it has used least, so a build covers every
tool once n is large enough; `tool_coverage` and the card report it.

Offline, the request is composed from the graph: every literal argument (a file name such as
`harbour-photo.jpg`, a URL, a language, a short prompt) is named in the request and reused by
the steps, and an input made by an earlier step is the argument `<step-k>`. The phrases are
data (`vocab_tools.yaml`; tools of other catalogues get generic ones from their description).
For an LLM the same graphs go into `prompts/generate_tools_*.j2`, and the reply is read with
the OpenAI backend's parser (`tool_messages`, `parse_tool_reply`).

`impossible_cells` says which cells a catalogue cannot type at all (a DAG of size 6 needs six
tools that link up), so `build-dataset` fails with one line naming them.

Wiring (build.py): `tool_plan` gives the quotas and checks the catalogue, `ToolGraphBackend` is
the offline backend for these cells, `tool_validator` the scheduler's row check and
`tool_stats` what stats.json gets.
"""

from __future__ import annotations

import heapq
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import yaml

from taskdecomp.catalogue import Catalogue, Tool, load_catalogue
from taskdecomp.config import load_yaml
from taskdecomp.errors import ConfigError, InputError
from taskdecomp.schema import ARG_PATTERN, STEP_REF, classify_structure
from taskdecomp.taxonomy import Cell
from taskdecomp.validation import validate_row

from .backend import GenerationRequest, GenerationResult, Usage
from .build_config import BuildConfig

__all__ = [
    "SHAPES",
    "SIZES",
    "ToolCell",
    "TOOL_CELLS",
    "ToolGraph",
    "parse_tool_cell",
    "sample_graph",
    "find_graph",
    "impossible_cells",
    "plan_tool_quotas",
    "load_tool_weights",
    "tool_rows",
    "compose_row",
    "validate_tool_row",
    "tool_coverage",
    "graph_coverage",
    "request_graphs",
    "tool_messages",
    "tool_response_format",
    "parse_tool_reply",
    "TOOL_PROMPT_VERSION",
    "ToolGraphBackend",
    "tool_catalogue",
    "tool_backend",
    "tool_plan",
    "tool_validator",
    "tool_fingerprint",
    "tool_stats",
]

SHAPES = ("single", "chain", "dag")
SIZES: dict[str, tuple[int, ...]] = {"single": (1,), "chain": (2, 3, 4, 5, 6), "dag": (3, 4, 5, 6)}
TOOL_PROMPT_VERSION = "gen-tools-v1"
_SEARCH_BUDGET = 200_000  # node expansions of the exhaustive search before it gives up (says "unknown")
_SAMPLE_TRIES = 60


@dataclass(frozen=True, order=True)
class ToolCell(Cell):
    """A quota cell of a tool-graph build: a shape (single, chain, dag) and a size (steps).
    A `Cell` for the build loop (key, min_steps); it fixes no modalities."""

    shape: str = "chain"
    size: int = 2

    @property
    def key(self) -> str:
        return f"tools:{self.shape}/{self.size}"

    @property
    def label(self) -> str:
        return f"{self.shape}/{self.size}"

    @property
    def min_steps(self) -> int:
        return self.size


def _cell(shape: str, size: int) -> ToolCell:
    return ToolCell(modalities=(), structure=shape, shape=shape, size=size)


TOOL_CELLS: tuple[ToolCell, ...] = tuple(_cell(s, k) for s in SHAPES for k in SIZES[s])


def parse_tool_cell(label: str) -> ToolCell:
    """'chain/3' → the cell; InputError for anything else."""
    shape, _, size = label.strip().partition("/")
    cell = next((c for c in TOOL_CELLS if c.shape == shape and str(c.size) == size), None)
    if cell is None:
        raise InputError(f"unknown tool cell {label!r}: use one of {', '.join(c.label for c in TOOL_CELLS)}")
    return cell


# --- graphs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolGraph:
    """Steps 1..n in topological order: `tools[i]` is step i+1's tool, `deps[i]` its
    dependencies (1-based, earlier steps, sorted)."""

    tools: tuple[str, ...]
    deps: tuple[tuple[int, ...], ...]

    @property
    def size(self) -> int:
        return len(self.tools)

    @property
    def shape(self) -> str:
        return _shape_of(self.deps)

    def links(self) -> list[tuple[str, str]]:
        return [(self.tools[d - 1], self.tools[i]) for i, ds in enumerate(self.deps) for d in ds]


def _shape_of(deps: Sequence[Sequence[int]]) -> str:
    if len(deps) == 1:
        return "single"
    if all(list(ds) == ([i] if i else []) for i, ds in enumerate(deps)):
        return "chain"
    return "dag"


def _connected(n: int, edges: Iterable[tuple[int, int]]) -> bool:
    adj: dict[int, set[int]] = {i: set() for i in range(n)}
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    seen, todo = {0}, [0]
    while todo:
        for j in adj[todo.pop()] - seen:
            seen.add(j)
            todo.append(j)
    return len(seen) == n


def _topo(n: int, edges: set[tuple[int, int]], rng: random.Random | None) -> list[int] | None:
    """A topological order of nodes 0..n-1 (ties broken by `rng`, else by index); None if cyclic."""
    indeg = [0] * n
    for _, b in edges:
        indeg[b] += 1
    ready = [i for i in range(n) if indeg[i] == 0]
    order = []
    while ready:
        i = ready.pop(rng.randrange(len(ready))) if rng else ready.pop(0)
        order.append(i)
        for a, b in sorted(edges):
            if a == i:
                indeg[b] -= 1
                if indeg[b] == 0:
                    ready.append(b)
    return order if len(order) == n else None


def _as_graph(
    tools: Sequence[str], edges: set[tuple[int, int]], rng: random.Random | None
) -> ToolGraph | None:
    order = _topo(len(tools), edges, rng)
    if order is None:
        return None
    pos = {node: i for i, node in enumerate(order)}
    deps = tuple(tuple(sorted(pos[a] + 1 for a, b in edges if b == node)) for node in order)
    return ToolGraph(tuple(tools[node] for node in order), deps)


@dataclass(frozen=True)
class _Types:
    """The feed relation of a catalogue as index sets (cached per catalogue)."""

    ids: tuple[str, ...]
    out: tuple[frozenset[int], ...]  # out[a]: the tools a feeds
    inn: tuple[frozenset[int], ...]  # inn[b]: the tools that feed b

    def feeds(self, a: int, b: int) -> bool:
        return b in self.out[a]


@cache
def _types(catalogue: Catalogue) -> _Types:
    tools = catalogue.tools
    out = [
        frozenset(j for j, u in enumerate(tools) if j != i and set(t.outputs) & set(u.inputs))
        for i, t in enumerate(tools)
    ]
    inn = [frozenset(i for i in range(len(tools)) if j in out[i]) for j in range(len(tools))]
    return _Types(tuple(t.id for t in tools), tuple(out), tuple(inn))


def _pick(cands: Sequence[int], rng: random.Random, used: Mapping[int, int]) -> int:
    """A random candidate, tools used less in this request being likelier."""
    weights = [1.0 / (1 + used.get(c, 0)) ** 2 for c in cands]
    return rng.choices(list(cands), weights=weights)[0]


def sample_graph(
    catalogue: Catalogue,
    cell: ToolCell,
    rng: random.Random,
    *,
    anchor: str | None = None,
    used: Mapping[str, int] | None = None,
) -> ToolGraph | None:
    """A random typed graph of `cell` containing `anchor` when one fits (else any), or None
    when random growth finds none (`find_graph` then searches exhaustively)."""
    ty = _types(catalogue)
    n_tools = len(ty.ids)
    use = {ty.ids.index(k): v for k, v in (used or {}).items() if k in catalogue}
    start = ty.ids.index(anchor) if anchor in catalogue else None
    if cell.size > n_tools:
        return None
    for _ in range(_SAMPLE_TRIES):
        first = start if start is not None else _pick(range(n_tools), rng, use)
        nodes: list[int] = [first]
        edges: set[tuple[int, int]] = set()
        while len(nodes) < cell.size:
            free = [t for t in range(n_tools) if t not in nodes]
            if cell.shape == "chain":
                tail, head = nodes[-1], nodes[0]
                grow_tail = [t for t in free if ty.feeds(tail, t)]
                grow_head = [t for t in free if ty.feeds(t, head)]
                if not grow_tail and not grow_head:
                    break
                if grow_tail and (not grow_head or rng.random() < 0.6):
                    nodes.append(_pick(grow_tail, rng, use))
                else:
                    nodes.insert(0, _pick(grow_head, rng, use))
                continue
            added = _grow_dag(ty, nodes, edges, free, rng, use)
            if not added:
                break
        if len(nodes) < cell.size:
            continue
        if cell.shape == "chain":
            return ToolGraph(
                tuple(ty.ids[t] for t in nodes), tuple((i,) if i else () for i in range(len(nodes)))
            )
        if cell.shape == "single":
            return ToolGraph((ty.ids[nodes[0]],), ((),))
        _shortcuts(ty, nodes, edges, rng)
        graph = _as_graph([ty.ids[t] for t in nodes], edges, rng)
        if graph is not None and graph.shape == "dag":
            return graph
    return None


def _grow_dag(
    ty: _Types,
    nodes: list[int],
    edges: set[tuple[int, int]],
    free: list[int],
    rng: random.Random,
    use: Mapping[int, int],
) -> bool:
    """Add one tool to a growing DAG: a child of one or two present nodes, or a parent (a new
    root feeding one of them). Indices in `edges` are positions in `nodes`."""
    ops = ["join", "child", "parent"] if len(nodes) >= 2 else ["child", "parent"]
    rng.shuffle(ops)
    for op in ops:
        if op == "join":
            a, b = rng.sample(range(len(nodes)), 2)
            cands = [t for t in free if ty.feeds(nodes[a], t) and ty.feeds(nodes[b], t)]
            parents = [a, b]
        elif op == "child":
            a = rng.randrange(len(nodes))
            cands = [t for t in free if ty.feeds(nodes[a], t)]
            parents = [a]
        else:
            a = rng.randrange(len(nodes))
            cands = [t for t in free if ty.feeds(t, nodes[a])]
            parents = []
        if not cands:
            continue
        nodes.append(_pick(cands, rng, use))
        new = len(nodes) - 1
        if parents:
            edges.update((p, new) for p in parents)
        else:
            edges.add((new, a))
        return True
    return False


def _reaches(edges: set[tuple[int, int]], src: int, dst: int) -> bool:
    todo, seen = [src], {src}
    while todo:
        x = todo.pop()
        if x == dst:
            return True
        for a, b in edges:
            if a == x and b not in seen:
                seen.add(b)
                todo.append(b)
    return False


def _shortcuts(ty: _Types, nodes: list[int], edges: set[tuple[int, int]], rng: random.Random) -> None:
    """Now and then an extra typed link between two present nodes (kept acyclic): the DAGs
    are then not all trees."""
    if rng.random() < 0.35:
        a, b = rng.sample(range(len(nodes)), 2)
        if (a, b) not in edges and ty.feeds(nodes[a], nodes[b]) and not _reaches(edges, b, a):
            edges.add((a, b))


# --- exhaustive search: impossible cells and a witness when sampling fails ----------------


class _Budget:
    def __init__(self, limit: int = _SEARCH_BUDGET) -> None:
        self.left = limit

    def spend(self) -> bool:
        self.left -= 1
        return self.left >= 0


def _chain_witness(ty: _Types, k: int, budget: _Budget) -> list[int] | None:
    path: list[int] = []

    def dfs() -> bool:
        if len(path) == k:
            return True
        if not budget.spend():
            return False
        cands = range(len(ty.ids)) if not path else sorted(ty.out[path[-1]])
        for t in cands:
            if t not in path:
                path.append(t)
                if dfs():
                    return True
                path.pop()
        return False

    return list(path) if dfs() else None


def _dag_on(ty: _Types, nodes: Sequence[int]) -> set[tuple[int, int]] | None:
    """Typed links on exactly `nodes` (connected in the undirected feed graph) forming a DAG
    that is connected and not a chain, or None."""
    k = len(nodes)
    pairs = [
        (i, j)
        for i in range(k)
        for j in range(i + 1, k)
        if ty.feeds(nodes[i], nodes[j]) or ty.feeds(nodes[j], nodes[i])
    ]
    degree = Counter(x for p in pairs for x in p)
    hub = next((v for v in range(k) if degree[v] >= 3), None)
    if hub is not None:  # a spanning tree through a node of degree >= 3 is never a path
        edges: set[tuple[int, int]] = set()
        seen, todo = {hub}, [hub]
        while todo:
            x = todo.pop(0)
            for i, j in pairs:
                if x in (i, j):
                    y = j if x == i else i
                    if y not in seen:
                        seen.add(y)
                        todo.append(y)
                        edges.add((x, y) if ty.feeds(nodes[x], nodes[y]) else (y, x))
        return edges
    options = []  # every pair: absent, or one of its typed directions
    for i, j in pairs:
        opts: list[tuple[int, int] | None] = [None]
        if ty.feeds(nodes[i], nodes[j]):
            opts.append((i, j))
        if ty.feeds(nodes[j], nodes[i]):
            opts.append((j, i))
        options.append(opts)

    def choose(idx: int, chosen: set[tuple[int, int]]) -> set[tuple[int, int]] | None:
        if idx == len(options):
            if len(chosen) >= k - 1 and _connected(k, chosen):
                graph = _as_graph([str(n) for n in nodes], chosen, None)
                if graph is not None and graph.shape == "dag":
                    return set(chosen)
            return None
        for opt in options[idx]:
            found = choose(idx + 1, chosen | {opt}) if opt else choose(idx + 1, chosen)
            if found is not None:
                return found
        return None

    return choose(0, set())


def _dag_witness(ty: _Types, k: int, budget: _Budget) -> tuple[list[int], set[tuple[int, int]]] | None:
    """Connected k-sets of tools in the undirected feed graph, each tried once."""
    near = [ty.out[t] | ty.inn[t] for t in range(len(ty.ids))]
    tried: set[frozenset[int]] = set()

    def grow(current: frozenset[int]) -> tuple[list[int], set[tuple[int, int]]] | None:
        if current in tried or not budget.spend():
            return None
        tried.add(current)
        if len(current) == k:
            nodes = sorted(current)
            edges = _dag_on(ty, nodes)
            return (nodes, edges) if edges is not None else None
        frontier = set().union(*(near[t] for t in current)) - current
        for t in sorted(frontier):
            found = grow(current | {t})
            if found is not None:
                return found
        return None

    for t in range(len(ty.ids)):
        found = grow(frozenset({t}))
        if found is not None:
            return found
        if budget.left < 0:
            return None
    return None


def _search(catalogue: Catalogue, cell: ToolCell) -> tuple[ToolGraph | None, bool]:
    """(a graph of `cell`, or None; whether the search was complete)."""
    ty = _types(catalogue)
    budget = _Budget()
    if cell.size > len(ty.ids):
        return None, True
    if cell.shape == "single":
        return ToolGraph((ty.ids[0],), ((),)), True
    if cell.shape == "chain":
        path = _chain_witness(ty, cell.size, budget)
        if path is None:
            return None, budget.left >= 0
        return ToolGraph(
            tuple(ty.ids[t] for t in path), tuple((i,) if i else () for i in range(len(path)))
        ), True
    found = _dag_witness(ty, cell.size, budget)
    if found is None:
        return None, budget.left >= 0
    nodes, edges = found
    return _as_graph([ty.ids[t] for t in nodes], edges, None), True


@cache
def find_graph(catalogue: Catalogue, cell: ToolCell) -> ToolGraph | None:
    """Some typed graph of `cell` over `catalogue` (deterministic), or None."""
    return _search(catalogue, cell)[0]


def impossible_cells(catalogue: Catalogue, cells: Iterable[ToolCell] = TOOL_CELLS) -> list[ToolCell]:
    """The cells no typed graph of `catalogue` can fill (its tools do not link up into that
    many steps of that shape). A search that runs out of budget counts as possible."""
    out = []
    for cell in cells:
        graph, complete = _search(catalogue, cell)
        if graph is None and complete:
            out.append(cell)
    return out


# --- quotas ------------------------------------------------------------------------------


def _weight_key(raw: str) -> tuple[str, int | None]:
    key = raw.strip().lower()
    shape, _, size = key.partition("/")
    if shape == "*" and not size:
        return "*", None
    if shape not in SHAPES or (size and not (size.isdigit() and int(size) in SIZES[shape])):
        cells = ", ".join(c.label for c in TOOL_CELLS)
        raise ConfigError(
            f"unknown weights key {raw!r} for --tools: use a shape ({', '.join(SHAPES)}), a cell ({cells}) or '*'"
        )
    return shape, int(size) if size else None


def _cell_weights(weights: Mapping[str, Any] | None) -> dict[ToolCell, float]:
    """A cell's weight: its `shape/size` key, else its shape key, else '*' (1 when absent)."""
    default, by_shape, by_cell = 1.0, {}, {}
    for raw, value in (weights or {}).items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise ConfigError(f"weight for {raw!r} must be a finite number >= 0, got {value!r}")
        shape, size = _weight_key(str(raw))
        if shape == "*":
            default = float(value)
        elif size is None:
            by_shape[shape] = float(value)
        else:
            by_cell[(shape, size)] = float(value)
    return {c: by_cell.get((c.shape, c.size), by_shape.get(c.shape, default)) for c in TOOL_CELLS}


def load_tool_weights(path: str | Path) -> dict[str, float]:
    """`--quotas FILE` of a tool build: `{weights: {key: w}}` or `{key: w}`, keys `chain`,
    `dag/4`, `single`, `*`."""
    data = load_yaml(path, what="quotas file", flag="--quotas")
    if set(data) == {"weights"}:
        data = data["weights"] or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: 'weights' must be a mapping of key: weight")
    weights = {str(k): v for k, v in data.items()}
    _cell_weights(weights)
    return {k: float(v) for k, v in weights.items()}


def plan_tool_quotas(
    n: int, weights: Mapping[str, Any] | None = None, seed: int = 0, *, exclude: Iterable[ToolCell] = ()
) -> dict[Cell, int]:
    """Rows per tool cell summing to `n`: Sainte-Laguë (Webster) seat by seat, ties in a
    seeded order, so quotas differ by at most one for equal weights and a larger n only adds
    rows (house-monotone). `exclude`d cells get none."""
    w = _cell_weights(weights)
    for c in exclude:
        w[c] = 0.0
    live = [c for c in TOOL_CELLS if w[c] > 0]
    quotas: dict[Cell, int] = dict.fromkeys(TOOL_CELLS, 0)
    if n <= 0:
        return quotas
    if not live:
        raise ConfigError("the weights exclude every tool cell; give at least one cell a weight > 0")
    order = list(live)
    random.Random(seed).shuffle(order)
    heap = [(-w[c] / 0.5, i, c) for i, c in enumerate(order)]
    heapq.heapify(heap)
    for _ in range(n):
        _, i, c = heapq.heappop(heap)
        quotas[c] += 1
        heapq.heappush(heap, (-w[c] / (quotas[c] + 0.5), i, c))
    return quotas


# --- back-instruction (offline) -----------------------------------------------------------


@cache
def _phrases() -> dict[str, Any]:
    text = (
        resources.files("taskdecomp.dataset_builder").joinpath("vocab_tools.yaml").read_text(encoding="utf-8")
    )
    return yaml.safe_load(text)


@cache
def _topics() -> tuple[list[dict[str, Any]], list[str]]:
    """Domains (orgs, subjects) and places of the offline backend's topic vocabulary."""
    text = (
        resources.files("taskdecomp.dataset_builder")
        .joinpath("vocab_topics.yaml")
        .read_text(encoding="utf-8")
    )
    data = yaml.safe_load(text)
    domains = [d for d in data.get("domains") or [] if d.get("orgs") and d.get("subjects")]
    places = [str(p) for p in data.get("places") or []] or ["Ashworth"]
    if not domains:  # the vocabulary changed shape: a neutral fallback keeps the builder working
        domains = [{"orgs": ["community centre"], "subjects": ["the spring open day"]}]
    return domains, places


_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "for",
        "to",
        "and",
        "on",
        "at",
        "in",
        "with",
        "by",
        "our",
        "new",
        "first",
        "next",
        "this",
    ]
)
_UNSAFE = re.compile(r"[,;\[\]\n]")


def _slug(text: str, n: int = 2) -> str:
    words = [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP]
    return "-".join(words[-n:]) or "project"


@dataclass(frozen=True)
class _Slot:
    name: str
    kind: str  # a resource type, or "literal" (never an earlier step's output)
    values: tuple[str, ...] = ()  # literal templates; none: a file or URL of type `kind`
    say: str = "{value}"  # how the request and the step phrase a literal
    ref: str = "the {out}"  # ... and an earlier step's output


def _slot(name: str) -> _Slot:
    spec = (_phrases().get("args") or {}).get(name)
    if spec:
        return _Slot(
            name,
            str(spec["type"]),
            tuple(str(v) for v in spec.get("values") or ()),
            str(spec.get("say") or "{value}"),
            str(spec.get("ref") or "the {out}"),
        )
    if name in ("text", "image", "audio", "video"):
        return _Slot(name, name)
    return _Slot(name, "literal", (f"{name.replace('_', ' ').replace('-', ' ')} for {{subject}}",))


def _slots(tool: Tool) -> list[_Slot]:
    """The tool's arguments; a tool without argument names takes one per input type."""
    if tool.args:
        return [_slot(a) for a in tool.args]
    return [_Slot(t, t) for t in tool.inputs]


@dataclass
class _Context:
    rng: random.Random
    subject: str
    org: str
    place: str
    literals: dict[str, list[str]]  # per row and type: the files named so far, reused by later steps

    def fill(self, template: str) -> str:
        site = _slug(self.org, 3).replace("-", "")
        text = template.format(subject=self.subject, place=self.place, slug=_slug(self.subject), site=site)
        return " ".join(_UNSAFE.sub(" ", text).split())


def _literal(ctx: _Context, kind: str, templates: Sequence[str], nth: int = 0) -> str:
    """A literal for an argument: one of its templates, else the row's `nth` file of type
    `kind` (the first one is reused by every step that reads that type)."""
    if templates:
        options = [v for v in (ctx.fill(t) for t in templates) if ARG_PATTERN.match(v)]
        if options:
            return ctx.rng.choice(options)
    if kind == "literal":
        return "the usual settings"
    named = ctx.literals.setdefault(kind, [])
    files = (_phrases().get("files") or {}).get(kind) or ["{slug}." + kind]
    for _ in range(20):
        if len(named) > nth:
            break
        name = ctx.fill(ctx.rng.choice(files))
        if name not in named:
            named.append(name)
    while len(named) <= nth:  # a tiny file list: number the names
        named.append(f"{_slug(ctx.subject)}-{len(named) + 1}.{kind}")
    return named[nth]


def _out_noun(tool: Tool) -> str:
    spec = (_phrases().get("tools") or {}).get(tool.id)
    return str(spec["out"]) if spec else f"{tool.id.replace('-', ' ')} result"


def _say(template: str, values: Mapping[str, str]) -> str:
    return template.format_map(_Missing(values))


class _Missing(dict):  # type: ignore[type-arg]
    """format_map: a slot the phrase has no value for stays out (generic phrases)."""

    def __missing__(self, key: str) -> str:
        return "it"


def compose_row(graph: ToolGraph, catalogue: Catalogue, rng: random.Random) -> dict[str, Any]:
    """A candidate (instruction, input, structure, subtasks with tool/args) for `graph`."""
    domains, places = _topics()
    domain = rng.choice(domains)
    place = rng.choice(places)
    org = f"the {place} {rng.choice(domain['orgs'])}"
    subject = " ".join(str(rng.choice(domain["subjects"])).split())
    ctx = _Context(rng, subject, org, place, {})
    phrases = _phrases().get("tools") or {}
    tools = [catalogue.get(t) for t in graph.tools]
    subtasks, clauses = [], []
    for i, (tool, deps) in enumerate(zip(tools, graph.deps, strict=True), start=1):
        args: list[str] = []
        spoken: dict[str, str] = {}
        pending = list(deps)  # dependencies not yet bound to an argument
        nth: Counter[str] = Counter()  # literals of each type this step already takes
        for slot in _slots(tool):
            dep = next((d for d in pending if slot.kind in tools[d - 1].outputs), None)
            if dep is not None:
                pending.remove(dep)
                args.append(f"<step-{dep}>")
                spoken[slot.name] = slot.ref.format(out=_out_noun(tools[dep - 1]))
            else:
                value = _literal(ctx, slot.kind, slot.values, nth[slot.kind])
                nth[slot.kind] += 1
                args.append(value)
                spoken[slot.name] = slot.say.format(value=value)
        extra = [f"the {_out_noun(tools[d - 1])}" for d in pending]
        args += [f"<step-{d}>" for d in pending]  # each dependency is an input
        spec = phrases.get(tool.id)
        if spec:
            k = rng.randrange(len(spec["step"]))
            step = _say(spec["step"][k], spoken)
            ask = _say(spec["ask"][rng.randrange(len(spec["ask"]))], spoken)
        else:
            named = " and ".join(spoken.values()) or "the request"
            step = f"{tool.description.rstrip('.')} using {named}"
            ask = f"use {tool.id} on {named}"
        if extra:
            step += " together with " + " and ".join(extra)
            ask += " together with " + " and ".join(extra)
        subtasks.append(
            {
                "step": i,
                "description": step[:1].upper() + step[1:] + ".",
                "modality": tool.modality,
                "operation": tool.operation,
                "depends_on": list(deps),
                "tool": tool.id,
                "args": args,
            }
        )
        clauses.append(ask)
    if len(clauses) == 1:
        joined = clauses[0]
    else:
        links = [rng.choice([", then ", ", ", " and then "]) for _ in clauses[1:-1]]
        joined = clauses[0] + "".join(link + c for link, c in zip(links, clauses[1:-1], strict=True))
        joined += rng.choice([" and finally ", ", and then ", " and "]) + clauses[-1]
    frame = rng.choice(_phrases().get("frames") or ["For {subject}, please {clauses}."])
    instruction = frame.format(
        org=org, subject=subject, Subject=subject[:1].upper() + subject[1:], clauses=joined
    )
    return {
        "instruction": " ".join(instruction.split()),
        "input": "",
        "structure": classify_structure(subtasks),
        "subtasks": subtasks,
    }


def _anchors(catalogue: Catalogue) -> list[str]:
    order = list(catalogue.ids)
    random.Random(catalogue.digest).shuffle(order)
    return order


def request_graphs(catalogue: Catalogue, cell: ToolCell, n: int, seed: int) -> list[ToolGraph]:
    """The `n` graphs an LLM request of `cell` asks rows for: a pure function of (catalogue,
    cell, n, seed), anchored like `tool_rows` so the requests of a build cover every tool."""
    rng = random.Random(seed)
    anchors = _anchors(catalogue)
    offset = rng.randrange(len(anchors))
    used: Counter[str] = Counter()
    out: list[ToolGraph] = []
    for j in range(n):
        anchor = anchors[(offset + j) % len(anchors)]
        graph = sample_graph(catalogue, cell, rng, anchor=anchor, used=used)
        graph = graph or sample_graph(catalogue, cell, rng, used=used) or find_graph(catalogue, cell)
        if graph is None:
            break
        used.update(graph.tools)
        out.append(graph)
    return out


def tool_rows(catalogue: Catalogue, cell: ToolCell, n: int, seed: int) -> list[dict[str, Any]]:
    """`n` candidates for tool `cell`: a pure function of (catalogue, cell, n, seed), like
    `offline.generate_rows`; fewer only when the catalogue cannot type the cell."""
    rng = random.Random(seed)
    anchors = _anchors(catalogue)
    offset = rng.randrange(len(anchors))
    used: Counter[str] = Counter()
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for j in range(n):
        anchor = anchors[(offset + j) % len(anchors)]
        drawn = None
        for _ in range(20):  # a few re-draws when the request text repeats an earlier one
            graph = sample_graph(catalogue, cell, rng, anchor=anchor, used=used)
            graph = graph or sample_graph(catalogue, cell, rng, used=used) or find_graph(catalogue, cell)
            if graph is None:
                return out
            drawn = graph, compose_row(graph, catalogue, rng)
            if drawn[1]["instruction"].lower() not in seen:
                break
        if drawn is None:
            return out
        graph, cand = drawn
        seen.add(cand["instruction"].lower())
        used.update(graph.tools)
        out.append(cand)
    return out


# --- validation --------------------------------------------------------------------------


def validate_tool_row(row: dict[str, Any], cell: Cell | None, catalogue: Catalogue) -> list[str]:
    """`validate_row` with the catalogue (`tool_errors`), plus what a tool cell asks for: every
    step names a tool, the graph has the cell's shape and size, and every literal argument is
    named in the request (instruction or input)."""
    reasons = validate_row(row, None, catalogue=catalogue)
    if reasons and reasons[0].startswith("schema"):
        return reasons
    subtasks = row["subtasks"]
    for st in subtasks:
        if not st.get("tool"):
            reasons.append(f"tool-unknown: step {st['step']} names no tool")
        for arg in st.get("args") or ():
            if (
                not STEP_REF.match(arg)
                and arg.lower() not in (row["instruction"] + " " + row["input"]).lower()
            ):
                reasons.append(f"tool-args: step {st['step']} argument {arg!r} is not named in the request")
    if isinstance(cell, ToolCell):
        shape = _shape_of([st["depends_on"] for st in subtasks])
        if len(subtasks) != cell.size:
            reasons.append(f"too-few-steps: {len(subtasks)} steps, {cell.key} needs {cell.size}")
        elif shape != cell.shape:
            reasons.append(f"structure-mismatch: wanted {cell.shape}, graph is {shape}")
        elif shape == "dag":
            edges = [(d - 1, st["step"] - 1) for st in subtasks for d in st["depends_on"]]
            if not _connected(len(subtasks), edges):
                reasons.append("structure-mismatch: the tool graph is not connected")
    return reasons


# --- coverage ----------------------------------------------------------------------------


def tool_coverage(rows: Iterable[dict[str, Any]], ids: Sequence[str] = ()) -> dict[str, int]:
    """Rows using each tool: every id of `ids` (0 when unused), then any other tool seen."""
    counts: Counter[str] = Counter()
    for row in rows:
        counts.update({st["tool"] for st in row["subtasks"] if st.get("tool")})
    return {**{t: counts.get(t, 0) for t in ids}, **{t: c for t, c in sorted(counts.items()) if t not in ids}}


def graph_coverage(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Rows per tool cell label (`chain/3`), for rows whose steps all name tools."""
    counts: Counter[str] = Counter()
    for row in rows:
        sts = row["subtasks"]
        if sts and all(st.get("tool") for st in sts):
            counts[f"{_shape_of([st['depends_on'] for st in sts])}/{len(sts)}"] += 1
    return {c.label: counts[c.label] for c in TOOL_CELLS if counts[c.label]}


# --- the LLM prompt ----------------------------------------------------------------------


def _graph_lines(graph: ToolGraph, catalogue: Catalogue) -> list[str]:
    lines = []
    for i, (tid, deps) in enumerate(zip(graph.tools, graph.deps, strict=True), start=1):
        tool = catalogue.get(tid)
        after = f"; after {', '.join(map(str, deps))}" if deps else ""
        names = f"; args {', '.join(tool.args)}" if tool.args else ""
        lines.append(f"{i}. {tid} [{tool.modality} {tool.operation}{after}{names}]")
    return lines


def tool_messages(
    catalogue: Catalogue, graphs: Sequence[ToolGraph], *, avoid: Sequence[str] = (), json_mode: bool = False
) -> list[dict[str, str]]:
    """System + user messages asking an LLM to write one row per graph (the graphs are in the
    prompt); its reply is read with `parse_tool_reply`."""
    from taskdecomp import prompts

    used = sorted({t for g in graphs for t in g.tools})
    system = prompts.render(
        "generate_tools_system.j2",
        tools=[catalogue.get(t) for t in used],
        json_mode=json_mode,
    )
    user = prompts.render(
        "generate_tools_user.j2",
        graphs=[_graph_lines(g, catalogue) for g in graphs],
        avoid=[" ".join(a.split()) for a in avoid],
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def tool_response_format(catalogue: Catalogue, json_mode: bool = False) -> dict[str, Any]:
    """The `response_format` of a tool request: the OpenAI backend's strict row schema with
    each step's `tool` (one of the catalogue's ids) and `args` added back."""
    import copy

    from .openai_backend import candidate_schema

    if json_mode:
        return {"type": "json_object"}
    schema = copy.deepcopy(candidate_schema())
    step = schema["properties"]["rows"]["items"]["properties"]["subtasks"]["items"]
    step["properties"]["tool"] = {"type": "string", "enum": list(catalogue.ids)}
    step["properties"]["args"] = {"type": "array", "items": {"type": "string"}}
    step["required"] = list(step["properties"])
    return {
        "type": "json_schema",
        "json_schema": {"name": "tool_graph_rows", "strict": True, "schema": schema},
    }


def parse_tool_reply(content: str | None) -> list[dict[str, Any]]:
    """An LLM reply → candidates, with the OpenAI backend's parser (InvalidReply when it holds
    no usable row); the build's validator then checks the tools."""
    from .openai_backend import parse_candidates

    return parse_candidates(content)


# --- the backend and the build's hooks -----------------------------------------------------


class ToolGraphBackend:
    """The offline `Backend` of a tool-graph build: `tool_rows` for each request's cell."""

    prompt_version: ClassVar[str | None] = None  # the offline generator sends no prompt

    def __init__(self, catalogue: Catalogue, seed: int = 0) -> None:
        self.catalogue = catalogue
        self.seed = seed
        self.source = "offline"
        self.stats: Counter[str] = Counter()

    def estimate(self, request: GenerationRequest) -> Usage:
        return Usage()

    def worst_case_cost(self, request: GenerationRequest, *, batch: bool = False) -> float:
        return 0.0

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        cell = request.cell
        if not isinstance(cell, ToolCell):
            raise ConfigError(
                f"the tool-graph backend got taxonomy cell {cell.key}; it builds tool cells only"
            )
        rows = tool_rows(self.catalogue, cell, request.n_rows, request.seed)
        self.stats["requests"] += 1
        return GenerationResult(request.request_id, rows, Usage(), 0.0, 1)

    async def aclose(self) -> None:
        return None


@cache
def tool_catalogue(path: str) -> Catalogue:
    """`--tools`: a catalogue file, or 'default' for the built-in one (read once per process)."""
    from taskdecomp.catalogue import default_catalogue

    return default_catalogue() if path == "default" else load_catalogue(path)


def tool_backend(cfg: BuildConfig) -> ToolGraphBackend:
    return ToolGraphBackend(tool_catalogue(cfg.tools), seed=cfg.seed)


def tool_plan(cfg: BuildConfig, kind: str) -> tuple[dict[str, float] | None, dict[Cell, int]]:
    """`build-dataset --tools`: (weights, quotas over the tool cells), after checking the
    catalogue, the backend and that the catalogue can type every cell with a quota (one line
    naming the cells it cannot)."""
    catalogue = tool_catalogue(cfg.tools)
    weights = load_tool_weights(cfg.quotas) if cfg.quotas else None
    quotas = plan_tool_quotas(cfg.n, weights, cfg.seed)
    wanted = [c for c in TOOL_CELLS if quotas.get(c)]
    bad = impossible_cells(catalogue, wanted)
    if bad:
        raise InputError(
            f"CATALOGUE {cfg.tools}: its tools cannot be linked into {', '.join(c.label for c in bad)} "
            f"(no type-compatible graph of that shape and size): add tools that feed each other, "
            f"or give those cells weight 0 with --quotas"
        )
    return weights, quotas


def tool_validator(cfg: BuildConfig) -> Callable[[dict[str, Any], Cell], list[str]]:
    catalogue = tool_catalogue(cfg.tools)
    return lambda row, cell: validate_tool_row(row, cell, catalogue)


def tool_fingerprint(cfg: BuildConfig) -> dict[str, Any]:
    """The catalogue's part of the build fingerprint: another catalogue is another build."""
    catalogue = tool_catalogue(cfg.tools)
    return {"catalogue": catalogue.name, "digest": catalogue.digest}


def tool_stats(cfg: BuildConfig, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """stats.json's tool fields: the catalogue, rows per tool (every tool listed), rows per
    tool cell."""
    catalogue = tool_catalogue(cfg.tools)
    cov = tool_coverage(rows, catalogue.ids)
    return {
        "catalogue": {
            "name": catalogue.name,
            "digest": catalogue.digest,
            "tools": len(catalogue.tools),
            "covered": sum(1 for t in catalogue.ids if cov.get(t)),
        },
        "tool_coverage": cov,
        "tool_graphs": graph_coverage(rows),
    }
