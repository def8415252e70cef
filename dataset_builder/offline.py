"""The built-in offline backend: no key, no network, deterministic for a seed.

It composes each row from the taxonomy cell outwards:

1. a dependency graph of the cell's structure (chain / parallel branches / general DAG),
   checked with `classify_structure`, so the row's structure is right by construction;
2. a modality per step, covering the cell's modalities exactly;
3. an operation per step from where its inputs come from (a root generates or analyses
   supplied material, a step after a different modality transforms it, a step after the same
   modality reviews, revises or derives from it, a step with several inputs combines them);
4. English for every step and for the instruction, from the curated vocabularies and
   templates in ``vocab_*.yaml`` (domains, audiences, artefacts and verbs per modality,
   transformations per modality pair, instruction shapes).

Each row is a pure function of ``random.Random(seed)``: `generate_rows(cell, n, seed)` is
what the async `OfflineBackend.generate` wraps.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, ClassVar

import yaml

from taskdecomp.schema import classify_structure
from taskdecomp.taxonomy import MAX_STEPS, Cell

from .backend import GenerationRequest, GenerationResult, Usage

__all__ = ["OfflineBackend", "generate_rows", "vocabulary"]

_VOCAB_FILES = ("vocab_topics.yaml", "vocab_modalities.yaml", "vocab_templates.yaml")
# libyaml's safe loader when PyYAML has it: the same data, ~10x faster than the pure-Python
# one (which cost every offline build ~0.2-0.4 s at start-up)
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@cache
def vocabulary() -> dict[str, Any]:
    """The three vocabulary files merged (read once per process)."""
    pkg = resources.files("taskdecomp.dataset_builder")
    merged: dict[str, Any] = {}
    for name in _VOCAB_FILES:
        merged.update(yaml.load(pkg.joinpath(name).read_text(encoding="utf-8"), Loader=_YAML_LOADER))
    for mod in ("text", "image", "audio", "video"):
        spec = merged[mod]
        arts = []
        for entry in spec["artefacts"]:
            noun, _, verbs = entry.partition("|")
            own = tuple(v.strip() for v in verbs.split(",") if v.strip())
            arts.append((noun.strip(), own or tuple(spec["verbs"])))
        spec["artefacts"] = arts
    merged["transforms"] = {tuple(k.split(">")): v for k, v in merged["transforms"].items()}
    return merged


# --- small English helpers ----------------------------------------------------------------


def _a(phrase: str) -> str:
    first = phrase.split()[0].lower()
    vowel = first[0] in "aeiou" and not first.startswith(("one", "uni", "use", "eu"))
    spoken_vowel = first in {"faq", "faqs"} or first.startswith(("8", "11-", "18-"))  # "an 800-word"
    return ("an " if vowel or spoken_vowel else "a ") + phrase


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _join(items: list[str], rng: random.Random) -> str:
    if len(items) == 1:
        return items[0]
    comma = "," if len(items) > 2 and rng.random() < 0.5 else ""
    return ", ".join(items[:-1]) + comma + " and " + items[-1]


# --- 1. graph ---------------------------------------------------------------------------

_STEP_WEIGHTS = {2: 3, 3: 6, 4: 6, 5: 4, 6: 2, 7: 1, 8: 1}


def _n_steps(cell: Cell, rng: random.Random) -> int:
    ks = list(range(cell.min_steps, MAX_STEPS + 1))
    return rng.choices(ks, weights=[_STEP_WEIGHTS[k] for k in ks])[0]


def _chain(k: int) -> list[list[int]]:
    return [[s - 1] if s > 1 else [] for s in range(1, k + 1)]


def _parallel(k: int, rng: random.Random) -> list[list[int]]:
    options = [(r, s) for r in (0, 1) for s in (0, 1) if k - r - s >= 2]
    root, sink = rng.choice(options)
    core = k - root - sink
    n_branches = rng.randint(2, min(core, 3))
    cuts = sorted(rng.sample(range(1, core), n_branches - 1))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, core], strict=True)]
    deps: list[list[int]] = [[]] if root else []
    tails = []
    for size in sizes:
        for i in range(size):
            step = len(deps) + 1
            deps.append([step - 1] if i else ([1] if root else []))
        tails.append(len(deps))
    if sink:
        deps.append(tails)
    return deps


def _dag(k: int, rng: random.Random) -> list[list[int]]:
    for _ in range(200):
        deps: list[list[int]] = [[]]
        for s in range(2, k + 1):
            window = list(range(max(1, s - 3), s))
            n_par = 2 if len(window) >= 2 and rng.random() < 0.4 else 1
            deps.append(sorted(rng.sample(window, n_par)))
        used = {d for ds in deps for d in ds}
        sinks = [s for s in range(1, k + 1) if s not in used]
        if len(sinks) <= 2 and classify_structure(_as_subtasks(deps)) == "dag":
            return deps
    # fallback, a dag for every k >= 4: fan-out, join, then a tail
    return [[], [1], [1, 2], *[[s - 1] for s in range(4, k + 1)]]


def _as_subtasks(deps: list[list[int]]) -> list[dict[str, Any]]:
    return [{"step": i, "depends_on": d} for i, d in enumerate(deps, start=1)]


def _graph(cell: Cell, k: int, rng: random.Random) -> list[list[int]]:
    if cell.structure == "chain":
        return _chain(k)
    if cell.structure == "parallel":
        return _parallel(k, rng)
    return _dag(k, rng)


# --- 2. modalities --------------------------------------------------------------------


def _modalities(deps: list[list[int]], wanted: tuple[str, ...], rng: random.Random) -> list[str]:
    mods: list[str] = []
    for ds in deps:
        if ds and rng.random() < 0.45:
            mods.append(mods[rng.choice(ds) - 1])
        elif not ds and "text" in wanted and rng.random() < 0.3:
            mods.append("text")
        else:
            mods.append(rng.choice(wanted))
    for m in rng.sample(wanted, len(wanted)):
        if m in mods:
            continue
        spare = [i for i, x in enumerate(mods) if mods.count(x) > 1]
        mods[rng.choice(spare)] = m
    return mods


# --- 3 + 4. operations and words ------------------------------------------------------------


@dataclass
class _Node:
    step: int
    deps: list[int]
    modality: str
    operation: str = "generation"
    kind: str = ""
    noun: str = ""  # what the step produces or examines, without an article
    ref: str = ""  # how later steps refer to it ("the poster")
    join_ref: str = ""  # how a step combining several inputs names it, when not `ref`
    description: str = ""
    clause: str = ""  # the step as a clause of the instruction's story; '{it}' = its input


class _Composer:
    """Builds one candidate; holds the row-level choices (topic, audience, used words)."""

    def __init__(self, cell: Cell, rng: random.Random) -> None:
        self.cell, self.rng, self.v = cell, rng, vocabulary()
        self.iv = self.v["instructions"]
        domain = rng.choice(self.v["domains"])
        org, place, name = (
            rng.choice(domain["orgs"]),
            rng.choice(self.v["places"]),
            rng.choice(self.v["names"]),
        )
        self.name = name
        self.org = rng.choice(
            [f"{_a(org)} in {place}", f"the {place} {org}", f"{name}'s {org}", f"the {org} in {place}"]
        )
        subject = rng.choice(domain["subjects"])
        if subject.startswith(("a ", "an ")) and rng.random() < 0.5:
            det, rest = rng.choice(self.v["determiners"]), subject.split(" ", 1)[1]
            if det.split()[-1] not in rest:  # no "our new new ..." or "the second second-hand ..."
                subject = det + " " + rest
        self.subject = subject
        self.audience = rng.choice(domain["audiences"])
        if rng.random() < 0.25:
            self.audience += " " + rng.choice(["in", "around", "near", "across"]) + " " + place
        self.purpose = rng.choice(self.v["purposes"])
        self.used: set[str] = set()
        self.material: dict[str, str] | None = None
        self.single_root = False
        self.criteria = {m: rng.sample(self.v[m]["criteria"], len(self.v[m]["criteria"])) for m in _MODS}
        self._nodes: list[_Node] = []
        self._verb = ""  # the last generation verb, reused by a combining step's clause

    def _pick(self, key: str) -> str:
        return self.rng.choice(self.iv[key])

    # vocabulary draws without repeats inside a row
    def _fresh(self, options: list[Any], key=lambda x: x) -> Any:
        pool = [o for o in options if key(o) not in self.used] or options
        pick = self.rng.choice(pool)
        self.used.add(key(pick))
        return pick

    def _artefact(self, modality: str) -> tuple[str, str]:
        noun, verbs = self._fresh(self.v[modality]["artefacts"], key=lambda a: a[0])
        return noun, self.rng.choice(verbs)

    def _styled(self, noun: str, modality: str, p: float = 0.5) -> str:
        phrase = _a(noun)
        if self.rng.random() < p:
            phrase += " " + self._fresh(self.v[modality]["styles"])
        return phrase

    def _adj(self, noun: str, modality: str, p: float = 0.7) -> str:
        """'a bold poster': the instruction's way of naming an artefact."""
        if self.rng.random() < p:
            adj = self.rng.choice(self.v[modality]["adjectives"])
            if adj.split("-")[0] not in noun:  # no "a short short film"
                return _a(adj + " " + noun)
        return _a(noun)

    def _criterion(self, modality: str) -> str:
        pool = self.criteria[modality]
        return (pool.pop() if len(pool) > 1 else pool[0]).format(audience=self.audience)

    def _step_text(self, kind: str, **slots: str) -> str:
        # a template is used once per row where possible, so sibling steps read differently
        template = self._fresh(self.v["steps"][kind])
        return _cap(template.format(subject=self.subject, audience=self.audience, org=self.org, **slots))

    # --- one step: operation, description and story clause from where its inputs come from
    def node(self, node: _Node, parents: list[_Node]) -> None:
        rng, m = self.rng, node.modality
        if not parents:
            if m == "text" and rng.random() < 0.35:
                node.kind, node.operation, node.noun = "text_research", "analysis", "research notes"
                node.description = self._step_text("text_research")
                node.clause = self._pick("research") + " {topic}"
            elif self.single_root and self.material is None and rng.random() < 0.2:
                self.material = self._fresh(self.v[m]["materials"], key=lambda x: x["ref"])
                node.kind, node.operation, node.noun = "material", "analysis", self.material["ref"]
                node.description = self._step_text("material", material="the " + node.noun)
                node.clause = self._pick("study") + " the " + node.noun
                node.join_ref = "the findings from the " + node.noun
            else:
                self._generate(node, "gen_root")
            node.ref = "the " + node.noun
            return
        if len(parents) > 1:
            # an artefact and its revision count once: the latest version is what is used
            latest = {p.noun: p for p in parents if p.kind != "review"}
            inputs = [p.join_ref or p.ref for p in parents if p.kind == "review" or latest[p.noun] is p]
            inputs = list(dict.fromkeys(inputs))
            if len(inputs) == 1:
                p = latest[parents[-1].noun] if parents[-1].noun in latest else parents[-1]
                if p.modality == m:
                    self._generate(node, "informed", the_src=p.ref)
                    node.ref = "the " + node.noun
                    return
                parents = [p]
        if len(parents) > 1:
            srcs = _join(inputs, rng)
            them = self._pick("them")
            if all(p.modality == m for p in parents) and rng.random() < 0.35:
                node.kind, node.operation, node.noun = "join_review", "analysis", parents[0].noun
                node.description = self._step_text("join_review", the_srcs=srcs, criterion=self._criterion(m))
                node.clause = self._pick("compare").format(them=them)
                node.ref, node.join_ref = parents[0].ref, "the notes from that comparison"
            else:
                self._generate(node, "join_gen", the_srcs=srcs)
                node.clause = self._pick("join").format(
                    them=them, verb=self._verb, a_art=self._adj(node.noun, m)
                )
                node.ref = "the " + node.noun
            return
        p = parents[0]
        if p.modality == m:
            if p.kind in ("material", "text_research"):
                self._generate(node, "from_material" if p.kind == "material" else "informed", the_src=p.ref)
            elif p.operation == "analysis":
                node.kind, node.noun = "revise", p.noun
                node.description = self._step_text("revise", the_src=p.ref)
                node.clause = self._pick("revise")
                node.ref = "the revised " + p.noun
                return
            elif rng.random() < 0.55:
                node.kind, node.operation, node.noun = "review", "analysis", p.noun
                crit = self._criterion(m)
                node.description = self._step_text("review", the_src=p.ref, criterion=crit)
                node.clause = self._pick("review").format(it="{it}", criterion=crit)
                node.join_ref = "the feedback on the " + p.noun
            else:
                node.kind = "derive"
                node.noun = self._fresh(self.v[m]["derived"])
                node.description = self._step_text("derive", the_src=p.ref, a_derived=_a(node.noun))
                node.clause = self._pick("derive").format(a_art=_a(node.noun), it="{it}")
            node.ref = "the " + node.noun
            return
        pair = self.v["transforms"][(p.modality, m)]
        if rng.random() < 0.7 and p.kind != "text_research":
            node.kind, node.operation = "transform", "transformation"
            node.noun = self._fresh(pair["artefacts"])
            node.description = _cap(rng.choice(pair["steps"]).format(the_src=p.ref, a_art=_a(node.noun)))
            node.clause = rng.choice(pair["clauses"]).format(a_art=self._adj(node.noun, m), it="{it}")
        else:
            kind = "after_review" if p.kind == "review" else "informed"
            self._generate(node, kind, the_src=p.ref)
        node.ref = "the " + node.noun

    def _generate(self, node: _Node, kind: str, **slots: str) -> None:
        noun, verb = self._artefact(node.modality)
        self._verb = verb
        node.kind, node.operation, node.noun = kind, "generation", noun
        node.description = self._step_text(kind, verb=verb, a_art=self._styled(noun, node.modality), **slots)
        node.clause = f"{verb} {self._adj(noun, node.modality)}"
        if kind in ("informed", "after_review", "from_material"):
            node.clause += " " + self._pick("based_on") + " {it}"

    # --- the instruction
    def _mentioned(self, nodes: list[_Node]) -> list[_Node]:
        """The steps the instruction talks about: every modality's first step (so every
        modality is named) and the steps that make something new, at most three (or one per modality)."""
        firsts: dict[str, _Node] = {}
        for n in nodes:
            firsts.setdefault(n.modality, n)
        keep = set(map(id, firsts.values()))
        items = [n for n in nodes if n.kind not in ("revise", "review", "join_review") or id(n) in keep]
        while len(items) > max(3, len(keep)):
            items.remove(next((n for n in reversed(items) if id(n) not in keep), items[-1]))
        return items

    def instruction(self, nodes: list[_Node]) -> str:
        rng = self.rng
        items = self._mentioned(nodes)
        verb = self._pick("verbs_mixed")
        aud = self._pick("aud").format(audience=self.audience) if rng.random() < 0.6 else ""
        research_things = [
            "background notes",
            "research notes",
            "a fact summary",
            "written research",
            "a fact file",
            "a briefing note",
        ]
        things_list = [
            rng.choice(research_things) if n.kind == "text_research" else self._adj(n.noun, n.modality)
            for n in items
            if n.kind != "material"
        ]
        things = _join(things_list or [_a(nodes[-1].noun)], rng)
        please = self._pick("please")
        question = please in ("Could you", "Can you", "Would you")
        fill = {
            "subject": self.subject,
            "Subject": _cap(self.subject),
            "org": self.org,
            "Org": _cap(self.org),
            "aud": aud,
            "verb": verb,
            "Verb": _cap(verb),
            "things": things,
            "Please": please,
            "To_goal": self._pick("to_goal"),
            "topic_is": self._pick("topic_is"),
            "about": self._pick("about"),
            "We_need": self._pick("we_need"),
            "We_have": self._pick("we_have"),
            "Using": self._pick("using"),
            "study": self._pick("study"),
        }
        fill["Study"] = _cap(fill["study"])
        if self.material is not None:
            shape = "material"
            fill["material"] = "the " + self.material["ref"]
            story_items = [n for n in items if n.kind != "material"] or items
        else:
            shape = rng.choice(["things", "story"])
            story_items = items
        template = rng.choice(self.iv[shape])
        with_subject = "{subject}" not in template and "{Subject}" not in template
        story = self._story(story_items, with_subject, aud)
        fill["story"], fill["Story"] = story, _cap(story)
        text = _cap(template.format(**fill))
        if question and text.startswith(please) and text.endswith(".") and ". " not in text:
            text = text[:-1] + "?"
        elif not text.endswith((".", "?")):
            text += "?" if question else "."
        if rng.random() < 0.2:
            text = _cap(self._pick("lead").format(name=self.name, org=self.org)) + " " + text
        if rng.random() < 0.35:
            text += " " + self._pick("tail").format(purpose=self.purpose, day=self._pick("days"))
        return text

    def _story(self, items: list[_Node], with_subject: bool, aud: str) -> str:
        rng = self.rng
        conns = {k: rng.sample(v, len(v)) for k, v in self.iv["connectors"].items()}
        parts: list[str] = []
        prev: _Node | None = None
        for n in items:
            parent = next((p for p in self._nodes if p.step in n.deps), None)
            # steps the story skips (reviews, revisions) hand on the artefact they worked on
            while parent is not None and parent.kind in ("review", "revise") and parent is not prev:
                parent = self._nodes[parent.deps[0] - 1]
            if prev is not None and parent is prev:
                it = self._pick("pronouns")
            else:
                it = parent.ref if parent is not None else "the " + n.noun
            topic = (
                self.subject
                if with_subject
                else rng.choice(["the topic", "the background", "the essentials"])
            )
            clause = n.clause.format(it=it, topic=topic)
            if not parts and with_subject and n.kind == "gen_root":
                clause += " " + self._pick("about") + " " + self.subject + aud
            if parts:
                rel = "joins" if len(n.deps) > 1 else "follows" if parent is prev else "independent"
                pool = conns[rel]
                clause = (pool.pop() if len(pool) > 1 else pool[0]) + " " + clause
            parts.append(clause)
            prev = n
        if len(parts) == 1:
            return parts[0] + "."
        if rng.random() < 0.35:  # separate sentences
            return parts[0] + ". " + " ".join(_cap(p) + "." for p in parts[1:])
        return ", ".join(parts[:-1]) + ", and " + parts[-1] + "."

    def compose(self) -> dict[str, Any]:
        cell, rng = self.cell, self.rng
        deps = _graph(cell, _n_steps(cell, rng), rng)
        self.single_root = sum(1 for d in deps if not d) == 1
        mods = _modalities(deps, cell.modalities, rng)
        self._nodes = nodes = [
            _Node(i, d, m) for i, (d, m) in enumerate(zip(deps, mods, strict=True), start=1)
        ]
        for n in nodes:
            self.node(n, [nodes[d - 1] for d in n.deps])
        if self.material is not None:
            brief = self.material["input"]
        elif rng.random() < 0.15:
            brief = "Notes from the client: " + " ".join(rng.sample(self.v["constraints"], 2))
        else:
            brief = ""
        return {
            "instruction": self.instruction(nodes),
            "input": brief,
            "structure": cell.structure,
            "subtasks": [
                {
                    "step": n.step,
                    "description": n.description,
                    "modality": n.modality,
                    "operation": n.operation,
                    "depends_on": list(n.deps),
                }
                for n in nodes
            ],
        }


_MODS = ("text", "image", "audio", "video")


def _look_alike(descriptions: list[str]) -> bool:
    """Two steps that differ in at most two words ("Draw a pie chart ..." / "Draw a bar chart
    ...") would be rejected as duplicate steps by validation; compose another row instead."""
    toks = [d.lower().split() for d in descriptions]
    for i, a in enumerate(toks):
        for b in toks[i + 1 :]:
            if abs(len(a) - len(b)) <= 2 and len(set(a) ^ set(b)) <= 4:
                return True
    return False


def _compose(cell: Cell, rng: random.Random) -> dict[str, Any]:
    for _ in range(20):
        cand = _Composer(cell, rng).compose()
        if not _look_alike([st["description"] for st in cand["subtasks"]]):
            return cand
    return cand


def generate_rows(cell: Cell, n: int, seed: int) -> list[dict[str, Any]]:
    """`n` candidates for `cell`, a pure function of (cell, n, seed); no repeated instruction."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(out) < n:
        for _ in range(20):
            cand = _compose(cell, rng)
            if cand["instruction"].lower() not in seen:
                break
        seen.add(cand["instruction"].lower())
        out.append(cand)
    return out


class OfflineBackend:
    """`Backend` that needs no key and no network; usage and cost are always zero."""

    source = "offline"
    prompt_version: ClassVar[str | None] = None  # no prompt is sent

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed  # the build's seed; each request carries its own derived seed
        self.stats: Counter[str] = Counter()

    def estimate(self, request: GenerationRequest) -> Usage:
        return Usage()

    def worst_case_cost(self, request: GenerationRequest, *, batch: bool = False) -> float:
        return 0.0

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        rows = generate_rows(request.cell, request.n_rows, request.seed)
        self.stats["requests"] += 1
        return GenerationResult(request.request_id, rows, Usage(), 0.0, 1)

    async def aclose(self) -> None:
        return None
