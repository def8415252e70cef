"""The built-in offline backend: no key, no network, deterministic for a seed.

It composes each row from the taxonomy cell outwards, the plan first and the request from the
plan (back-instruction), so every artefact the request asks for has a step and every step
serves the request:

1. a dependency graph of the cell's structure (chain / parallel branches / general DAG; one
   step for a single-step cell), checked with `classify_structure`, so the row's structure is
   right by construction;
2. a modality per step, covering the cell's modalities exactly;
3. an operation per step from where its inputs come from (a root generates, researches or
   analyses supplied material or the user's own file, a step after a different modality
   transforms it, a step after the same modality reviews, revises (once per review) or derives
   from it, a step with several inputs combines them);
4. English for every step, from the curated vocabularies and templates in ``vocab_*.yaml``
   (domains, audiences, artefacts and verbs per modality, transformations per modality pair);
5. the request, written from the plan in the row's request style (`taxonomy.STYLES`): it
   names every final step's artefact (or, in the implicit style, what it is for), every file
   the steps use, and every modality (except the implicit style, which leaves them to infer).

A request's rows get their styles from `taxonomy.assign_styles` (the cell carries the build's
style weights). Each row is a pure function of ``random.Random(seed)``: `generate_rows(cell,
n, seed)` is what the async `OfflineBackend.generate` wraps; `drafts` also returns what the
request was written from (deliverables, files, each step's role), which the LLM backend's
prompts use as the plan skeleton.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, ClassVar

import yaml

from taskdecomp.schema import classify_structure, make_row
from taskdecomp.taxonomy import MAX_STEPS, Cell, assign_styles
from taskdecomp.validation import validate_row

from .backend import GenerationRequest, GenerationResult, Usage

__all__ = ["OfflineBackend", "Draft", "drafts", "generate_rows", "vocabulary"]

_VOCAB_FILES = ("vocab_topics.yaml", "vocab_modalities.yaml", "vocab_templates.yaml", "vocab_styles.yaml")
# libyaml's safe loader when PyYAML has it: the same data, ~10x faster than the pure-Python
# one (which cost every offline build ~0.2-0.4 s at start-up)
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MODS = ("text", "image", "audio", "video")


def _pair(entry: str) -> tuple[str, str]:
    first, _, second = entry.partition("|")
    return first.strip(), second.strip()


@cache
def vocabulary() -> dict[str, Any]:
    """The vocabulary files merged (read once per process)."""
    pkg = resources.files("taskdecomp.dataset_builder")
    merged: dict[str, Any] = {}
    for name in _VOCAB_FILES:
        merged.update(yaml.load(pkg.joinpath(name).read_text(encoding="utf-8"), Loader=_YAML_LOADER))
    for mod in _MODS:
        spec = merged[mod]
        arts = []
        for entry in spec["artefacts"]:
            noun, _, verbs = entry.partition("|")
            own = tuple(v.strip() for v in verbs.split(",") if v.strip())
            arts.append((noun.strip(), own or tuple(spec["verbs"])))
        spec["artefacts"] = arts
        spec["styles"] = [_pair(s) for s in spec["styles"]]  # (phrase, constraint sentence)
        for key in ("file_steps", "file_edits"):
            merged[key][mod] = [  # (step, its clauses)
                (step, tuple(c.strip() for c in clauses.split(";")))
                for step, clauses in map(_pair, merged[key][mod])
            ]
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


_ARTICLE = re.compile(r"\b(?:a|an|the)\s+", re.IGNORECASE)


def _bare(text: str) -> str:
    """Without articles: the terse style's way ("design bold poster, record podcast episode")."""
    return _ARTICLE.sub("", text)


def _slug(text: str, words: int = 2) -> str:
    toks = [
        t for t in re.findall(r"[a-z0-9]+", text.lower()) if t not in {"a", "an", "the", "our", "of", "for"}
    ]
    return "_".join(toks[-words:]) or "file"


# --- 1. graph ---------------------------------------------------------------------------

# People ask for a few things at once far more often than for many: the weights fall with the
# step count from the cell's smallest plan, so a planner learns that a request with two asks
# gets two steps (the old {2: 3, 3: 6, 4: 6, ...} made the mean plan 4.4 steps and two-step
# plans 5 % of rows). Long plans stay, so it still sees them.
_STEP_WEIGHTS = {2: 8, 3: 6, 4: 4, 5: 2, 6: 1, 7: 0.5, 8: 0.5}


def _n_steps(cell: Cell, rng: random.Random) -> int:
    if cell.single:
        return 1
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

# kinds of step that make an artefact the request can list by name
_ARTEFACT_KINDS = frozenset(
    {
        "gen_root",
        "text_research",
        "informed",
        "after_review",
        "from_material",
        "derive",
        "transform",
        "join_gen",
    }
)
_CHECK_KINDS = frozenset({"review", "revise", "join_review"})


@dataclass
class _Node:
    step: int
    deps: list[int]
    modality: str
    operation: str = "generation"
    kind: str = ""
    noun: str = ""  # what the step produces or examines, without an article
    a_noun: str = ""  # the request's name for it when not "a <adjective> <noun>" (research)
    ref: str = ""  # how later steps refer to it ("the poster", "interview.wav")
    join_ref: str = ""  # how a step combining several inputs names it, when not `ref`
    description: str = ""
    clause: str = ""  # the step as a clause of the request's story; '{it}' = its input
    cue_clause: str = ""  # the same without naming the modality (implicit style)
    file: str = ""  # the user's file or URL the step works on (first-person style)
    constraint: str = ""  # the step's style as a sentence a brief states ('{the_art}' slot)
    criterion: str = ""  # what a review step checks
    role: str = ""  # what the step does in the plan, without its wording (LLM prompt skeleton)
    children: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Draft:
    """One composed row and what its request was written from."""

    candidate: dict[str, Any]
    style: str
    #: the noun of each final step's artefact (what the request must ask for)
    deliverables: tuple[str, ...]
    #: the user's files / URLs the request names (first-person style)
    files: tuple[str, ...]
    #: per step, what it does in the plan, in plain words (the LLM prompt's skeleton)
    roles: tuple[str, ...]


class _Composer:
    """Builds one candidate; holds the row-level choices (topic, audience, used words)."""

    def __init__(self, cell: Cell, rng: random.Random, style: str) -> None:
        self.cell, self.rng, self.v, self.style = cell, rng, vocabulary(), style
        self.iv = self.v["instructions"]
        domain = rng.choice(self.v["domains"])
        org, place, name = (
            rng.choice(domain["orgs"]),
            rng.choice(self.v["places"]),
            rng.choice(self.v["names"]),
        )
        self.name, self.place, self.org_noun = name, place, org
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
        self._revised: set[int] = set()  # analysis steps a revision already follows
        self.files: list[_Node] = []

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

    def _styled(self, node: _Node, noun: str, modality: str) -> str:
        phrase = _a(noun)
        # a brief states a constraint for what it asks: its artefacts mostly carry a style
        p = 0.85 if self.style == "brief" else 0.5
        if self.rng.random() < p:
            style, constraint = self._fresh(self.v[modality]["styles"], key=lambda s: s[0])
            phrase += " " + style
            node.constraint = constraint
        return phrase

    def _adj(self, noun: str, modality: str, p: float = 0.9) -> str:
        """'a bold poster': the request's way of naming an artefact."""
        if self.rng.random() < p:
            adj = self.rng.choice(self.v[modality]["adjectives"])
            if adj.split("-")[0] not in noun:  # no "a short short film"
                return _a(adj + " " + noun)
        return _a(noun)

    def _criterion(self, modality: str) -> str:
        pool = self.criteria[modality]
        return (pool.pop() if len(pool) > 1 else pool[0]).format(audience=self.audience)

    def _whether(self, text: str) -> str:
        """A request's "for whether the ..." worded another way half the time: a request now
        tells every check its plan runs, and one wording in every request is a template tell."""
        if " for whether " in text and self.rng.random() < 0.5:
            text = text.replace(" for whether ", " " + self._pick("whether") + " ", 1)
        return text

    def _step_text(self, kind: str, **slots: str) -> str:
        # a template is used once per row where possible, so sibling steps read differently
        template = self._fresh(self.v["steps"][kind])
        return _cap(template.format(subject=self.subject, audience=self.audience, org=self.org, **slots))

    def _cue(self, modality: str) -> str:
        """What a `modality` artefact is for, without naming it: 'something people can listen
        to on a long drive'."""
        c, rng = self.v["cues"], self.rng
        spec = c[modality]
        who = rng.choice(c["who"]).format(audience=self.audience)
        form = self._fresh(spec["forms"])
        if form.startswith("something ") and rng.random() < 0.5:  # not every cue is "something"
            form = rng.choice(c["heads"]) + form[len("something") :]
        return form.format(
            who=who, when=rng.choice(spec.get("when", [""])), where=rng.choice(spec.get("where", [""]))
        )

    def _make(self) -> str:
        return self.rng.choice(self.v["make"])

    # --- the user's own file (first-person style)
    def _file_name(self, modality: str) -> tuple[str, str]:
        rng = self.rng
        if modality == "text" and rng.random() < 0.3:
            u = self.v["urls"]
            noun = rng.choice(u["noun"])
            host = rng.choice(u["hosts"]).format(
                org=_slug(self.org_noun, 3).replace("_", ""), place=_slug(self.place, 2).replace("_", "")
            )
            path = _slug(self.subject, 3).replace("_", "-")
            return noun, f"https://{host}/{path}"
        kind = self._fresh(self.v["files"][modality], key=lambda f: f["noun"])
        stem = rng.choice(kind["stems"]).format(
            slug=_slug(self.subject),
            name=self.name.lower(),
            n=rng.randint(1, 12),
            n4=rng.randint(1000, 9999),
            date=f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        )
        name = f"{stem}.{rng.choice(kind['ext'])}"
        if name in {n.file for n in self.files}:
            name = f"{stem}_{len(self.files) + 1}.{rng.choice(kind['ext'])}"
        return kind["noun"], name

    def _file_node(self, node: _Node) -> None:
        """A step on the user's own file (a root): examined (analysis), or, half the time for a
        file (not a URL), edited into a new version of itself (a same-modality transformation:
        "remove the hiss from interview.wav", what people most often ask of a file)."""
        m = node.modality
        node.noun, node.file = self._file_name(m)
        url = node.file.startswith("http")
        edit = not url and self.rng.random() < 0.5
        node.kind, node.operation, node.ref = "file", "transformation" if edit else "analysis", node.file
        step, clauses = self._fresh(self.v["file_edits" if edit else "file_steps"][m], key=lambda s: s[0])
        clause = self.rng.choice(clauses)
        if url:
            step = step.replace("{file}", "the " + node.noun + " at {file}")
        node.description = _cap(step.format(file=node.file))
        node.clause = clause
        node.cue_clause = clause
        if edit:
            node.ref = node.join_ref = "the edited " + node.file
        else:
            node.join_ref = "what " + node.file + " showed" if m == "image" else "the notes on " + node.file
        where = "page (a URL)" if url else "file"
        node.role = f"{'edit' if edit else 'examine'} the user's own {m} {where}"
        self.files.append(node)

    # --- one step: operation, description and story clause from where its inputs come from
    def node(self, node: _Node, parents: list[_Node]) -> None:
        rng, m = self.rng, node.modality
        if not parents:
            # people name their files in any style ("transcribe meeting.mp3"); a first-person
            # request always does
            wants_file = len(self.files) < 3 and (
                self.style == "first-person"
                or (self.style in ("imperative", "question", "terse") and rng.random() < 0.3)
            )
            if wants_file and (not self.files or rng.random() < 0.45):
                self._file_node(node)
                return
            if m == "text" and rng.random() < 0.35:
                entry = self._fresh(self.v["steps"]["text_research"], key=lambda e: e["step"])
                node.kind, node.operation = "text_research", "analysis"
                node.a_noun = entry["a_noun"]
                node.noun = re.sub(r"^an? ", "", entry["a_noun"])
                node.description = _cap(entry["step"].format(subject=self.subject, audience=self.audience))
                node.clause = rng.choice(entry["clauses"]).replace("{audience}", self.audience)
                node.cue_clause = node.clause
                node.role = "research the topic and write it up (text)"
            elif (
                self.single_root
                and self.material is None
                and self.style not in ("implicit", "first-person")
                and rng.random() < 0.2
            ):
                self.material = self._fresh(self.v[m]["materials"], key=lambda x: x["ref"])
                node.kind, node.operation, node.noun = "material", "analysis", self.material["ref"]
                node.description = self._step_text("material", material="the " + node.noun)
                node.clause = self._pick("study") + " the " + node.noun
                node.cue_clause = node.clause
                node.join_ref = "the findings from the " + node.noun
                node.role = f"analyse the {m} material the user supplies (described in `input`)"
            else:
                self._generate(node, "gen_root")
                node.role = f"create new {m} content"
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
                    node.role = f"create new {m} content based on step {p.step}"
                    return
                parents = [p]
        if len(parents) > 1:
            srcs = _join(inputs, rng)
            them = self._pick("them")
            steps = ", ".join(str(p.step) for p in parents)
            if all(p.modality == m for p in parents) and rng.random() < 0.35:
                # what it compares, as its description names it
                main = next((p for p in parents if (p.file or p.noun) in srcs), parents[0])
                node.kind, node.operation, node.noun = "join_review", "analysis", main.file or main.noun
                node.criterion = self._criterion(m)
                node.description = self._step_text("join_review", the_srcs=srcs, criterion=node.criterion)
                node.clause = self._pick("compare").format(them=them)
                node.cue_clause = node.clause
                node.ref, node.join_ref = main.ref, "the notes from that comparison"
                node.role = f"compare the results of steps {steps}"
            else:
                self._generate(node, "join_gen", the_srcs=srcs)
                node.clause = self._pick("join").format(
                    them=them, verb=self._verb, a_art=self._adj(node.noun, m)
                )
                node.cue_clause = f"{self._make()} {self._cue(m)} from {them}"
                node.ref = "the " + node.noun
                node.role = f"combine the results of steps {steps} into one {m} piece"
            return
        p = parents[0]
        if p.modality == m:
            if p.kind in ("material", "text_research", "file"):
                self._generate(
                    node, "informed" if p.kind == "text_research" else "from_material", the_src=p.ref
                )
                node.role = f"create new {m} content from what step {p.step} found"
            elif p.operation == "analysis" and p.step not in self._revised:
                # a review is followed by at most one revision of what it reviewed
                self._revised.add(p.step)
                node.kind, node.noun = "revise", p.noun
                node.description = self._step_text("revise", the_src=p.ref)
                node.clause = self._pick("revise")
                node.cue_clause = node.clause
                node.ref = "the revised " + p.noun
                node.role = f"revise the {m} piece using the review in step {p.step}"
                return
            elif p.operation == "analysis":
                # another step after the same review makes something new from what it showed
                self._generate(node, "after_review", the_src=p.ref)
                node.role = f"create new {m} content using the review in step {p.step}"
            elif rng.random() < 0.55:
                node.kind, node.operation, node.noun = "review", "analysis", p.noun
                node.criterion = crit = self._criterion(m)
                node.description = self._step_text("review", the_src=p.ref, criterion=crit)
                node.clause = self._whether(self._pick("review").format(it="{it}", criterion=crit))
                node.cue_clause = rng.choice(
                    [
                        "check {it} over",
                        "have {it} checked",
                        "give {it} a once-over",
                        "test {it} on a few people",
                    ]
                )
                node.join_ref = "the feedback on the " + p.noun
                node.role = f"review the {m} piece of step {p.step}"
            else:
                node.kind = "derive"
                node.noun = self._fresh(self.v[m]["derived"])
                node.description = self._step_text("derive", the_src=p.ref, a_derived=_a(node.noun))
                node.clause = self._pick("derive").format(a_art=_a(node.noun), it="{it}")
                node.cue_clause = f"{self._make()} {self._cue(m)} from {{it}}"
                node.role = f"derive another {m} piece from step {p.step}"
            node.ref = "the " + node.noun
            return
        pair = self.v["transforms"][(p.modality, m)]
        if rng.random() < 0.7 and p.kind != "text_research":
            node.kind, node.operation = "transform", "transformation"
            node.noun = self._fresh(pair["artefacts"])
            node.description = _cap(rng.choice(pair["steps"]).format(the_src=p.ref, a_art=_a(node.noun)))
            node.clause = rng.choice(pair["clauses"]).format(a_art=self._adj(node.noun, m), it="{it}")
            node.cue_clause = rng.choice(self.v["turn"]).format(it="{it}", cue=self._cue(m))
            node.role = f"turn the {p.modality} of step {p.step} into {m}"
        else:
            kind = "after_review" if p.kind == "review" else "informed"
            self._generate(node, kind, the_src=p.ref)
            node.role = f"create new {m} content based on step {p.step}"
        node.ref = "the " + node.noun

    def _generate(self, node: _Node, kind: str, **slots: str) -> None:
        noun, verb = self._artefact(node.modality)
        self._verb = verb
        node.kind, node.operation, node.noun = kind, "generation", noun
        node.description = self._step_text(
            kind, verb=verb, a_art=self._styled(node, noun, node.modality), **slots
        )
        node.clause = f"{verb} {self._adj(noun, node.modality)}"
        node.cue_clause = f"{self._make()} {self._cue(node.modality)}"
        if kind in ("informed", "after_review", "from_material"):
            based = " " + self._pick("based_on") + " {it}"
            node.clause += based
            node.cue_clause += based

    # --- what the request talks about ----------------------------------------------------
    def _sinks(self, nodes: list[_Node]) -> list[_Node]:
        return [n for n in nodes if not n.children]

    def _thing(self, n: _Node, bare: bool = False) -> str:
        """A deliverable as the request lists it: 'a bold poster', 'a fact list'."""
        text = n.a_noun or self._adj(n.noun, n.modality)
        return _bare(text) if bare else text

    def _checked(self, n: _Node) -> tuple[_Node, _Node | None]:
        """(the artefact a check step works on, its review) for a review or revision."""
        review = n if n.kind == "review" else None
        while n.kind in ("review", "revise"):
            n = self._nodes[n.deps[0] - 1]
            if review is None and n.kind == "review":
                review = n
        return n, review

    def _things(self, items: list[_Node], bare: bool = False) -> list[str]:
        """The artefacts among `items` as the request lists them; one a final check works on
        says so ("a poster checked for legibility and then revised")."""
        rng, out = self.rng, []
        checks = [c for c in self._nodes if c.kind in ("review", "revise")][::-1]  # the last check first
        for n in items:
            if n.kind not in _ARTEFACT_KINDS:
                continue
            text = self._thing(n, bare)
            for c in checks:
                art, review = self._checked(c)
                if art is n and review is not None and bare:
                    text += rng.choice([" (checked)", " (reviewed)", ", checked", " - proofed"])
                    break
                if art is n and review is not None:
                    text += " " + self._whether(
                        rng.choice(self.iv["checked_thing"]).format(criterion=review.criterion)
                    )
                    if c.kind == "revise":
                        text += rng.choice(self.iv["revised_thing"])
                    break
            out.append(text)
        return out

    def _listable(self, items: list[_Node]) -> bool:
        """Whether the request can list `items` as things to make: every final step makes an
        artefact or checks one (a comparison or file analysis is told as a clause instead)."""
        sinks = {id(n) for n in self._sinks(self._nodes)}
        return (
            all(n.kind in _ARTEFACT_KINDS or n.kind in ("review", "revise") for n in items if id(n) in sinks)
            and not self.files
            and self.material is None
        )

    def _clauses(
        self, items: list[_Node], mode: str = "plain", with_subject: bool = True, aud: str = ""
    ) -> list[str]:
        """The plan told as clauses, one per item: 'record a short podcast episode about X',
        'then transcribe it into a transcript'. `mode` 'cue' words artefacts by what they are
        for (implicit style) and refers back to non-text ones by pronoun; 'bare' drops the
        articles (terse style)."""
        rng = self.rng
        conns = {k: rng.sample(v, len(v)) for k, v in self.iv["connectors"].items()}
        parts: list[str] = []
        prev: _Node | None = None
        n_files = len(self.files)
        said = False
        for n in items:
            if n.kind == "revise" and prev is not None and prev.step in n.deps and parts:
                # a revision right after its review is told with it: "check it for X and fix it"
                parts[-1] += " " + rng.choice(self.iv["fold_revise"])
                prev = n
                continue
            parent = next((p for p in self._nodes if p.step in n.deps), None)
            # steps the story skips (reviews, revisions) hand on the artefact they worked on
            while parent is not None and parent.kind in ("review", "revise") and parent is not prev:
                parent = self._nodes[parent.deps[0] - 1]
            if n.kind == "file":
                it = "it" if n_files == 1 and parts == [] and self.style == "first-person" else n.file
            elif prev is not None and parent is prev:
                it = self._pick("pronouns")
            elif parent is not None and mode == "cue" and parent.modality != "text" and parent.kind != "file":
                it = rng.choice(["it", "that", "the first one"])
            else:
                it = parent.ref if parent is not None else "the " + n.noun
            # the subject is said once; later clauses call it "the topic"
            topic = (
                self.subject
                if with_subject and not said
                else rng.choice(["the topic", "the basics", "the essentials"])
            )
            cue = n.modality != "text" or self.cell.modalities == ("text",) or rng.random() < 0.5
            source = n.cue_clause if mode == "cue" and cue else n.clause
            said = said or "{topic}" in source
            clause = source.format(it=it, topic=topic)
            if not parts and with_subject and n.kind == "gen_root":
                clause += " " + self._pick("about") + " " + self.subject + aud
                said = True
            if parts and mode == "bare":
                clause = ("then " if rng.random() < 0.3 else "") + clause
            elif parts and rng.random() < 0.65 and len(n.deps) <= 1:
                pass  # listed without a connector: "a, b, and c"
            elif parts:
                # "separately" only for a real fork: a step beside the one before, not after it
                told = {id(x) for x in items}
                fork = parent is None or (id(parent) in told and parent is not prev)
                rel = "joins" if len(n.deps) > 1 else "independent" if fork else "follows"
                pool = conns[rel]
                clause = (pool.pop() if len(pool) > 1 else pool[0]) + " " + clause
            parts.append(_bare(clause) if mode == "bare" else clause)
            prev = n
        return parts

    def _sentence(self, parts: list[str], split: float = 0.35) -> str:
        """Clauses as one sentence ('a, b, and c') or, with chance `split`, several; without
        the final full stop."""
        if len(parts) == 1:
            return parts[0]
        if self.rng.random() < split:  # separate sentences
            return parts[0] + ". " + ". ".join(_cap(p) for p in parts[1:])
        return ", ".join(parts[:-1]) + ", and " + parts[-1]

    def _fill(self, aud: str) -> dict[str, str]:
        verb = self._pick("verbs_mixed")
        fill = {
            "subject": self.subject,
            "Subject": _cap(self.subject),
            "org": self.org,
            "Org": _cap(self.org),
            "name": self.name,
            "Name": self.name,
            "aud": aud,
            "verb": verb,
            "Verb": _cap(verb),
            "Please": self._pick("please"),
            "To_goal": self._pick("to_goal"),
            "topic_is": self._pick("topic_is"),
            "about": self._pick("about"),
            "We_need": self._pick("we_need"),
            "We_have": self._pick("we_have"),
            "Using": self._pick("using"),
            "study": self._pick("study"),
            "day": self._pick("days"),
        }
        fill["Study"] = _cap(fill["study"])
        return fill

    def _aud(self, p: float = 0.35) -> str:
        return self._pick("aud").format(audience=self.audience) if self.rng.random() < p else ""

    def _extras(self, text: str, lead: float = 0.12, tail: float = 0.1) -> str:
        rng = self.rng
        if rng.random() < lead:
            text = _cap(self._pick("lead").format(name=self.name, org=self.org)) + " " + text
        if rng.random() < tail:
            text += " " + self._pick("tail").format(purpose=self.purpose, day=self._pick("days"))
        return text

    # --- the request, one writer per style -------------------------------------------------
    # Every writer but the implicit one tells every step of the plan (each thing it makes and
    # each check it runs), so a planner can read the number of steps off the request instead of
    # guessing hidden ones; the implicit style names only what the final results are for.
    def instruction(self, nodes: list[_Node]) -> str:
        # the steps are written: the request may say when and where (the steps keep the subject)
        self.plain_subject = self.subject
        if self.rng.random() < 0.35:
            specific = self._specific()
            if self.subject.endswith("in") and specific.startswith("in "):  # no "drop-in in Ashworth"
                specific = "at " + specific[3:]
            self.subject += " " + specific
        return getattr(self, "_" + self.style.replace("-", "_"))(nodes)

    def _specific(self) -> str:
        sp, rng = self.v["specifics"], self.rng
        venue = rng.choice(sp["venues"])
        return rng.choice(sp["forms"]).format(
            day=rng.randint(1, 28),
            month=rng.choice(sp["months"]),
            weekday=rng.choice(sp["weekdays"]),
            hour=rng.choice(sp["hours"]),
            place=self.place,
            venue=venue,
            venue_cap=_cap(venue),
        )

    def _imperative(self, nodes: list[_Node]) -> str:
        rng = self.rng
        items = list(nodes)
        aud = self._aud()
        fill = self._fill(aud)
        if self.material is not None:
            shape = "material"
            fill["material"] = "the " + self.material["ref"]
            story_items = [n for n in items if n.kind != "material"] or items
        else:
            shape = ("things" if rng.random() < 0.75 else "story") if self._listable(items) else "story"
            story_items = items
        things = self._things(items)
        fill["things"] = _join(things or [_a(nodes[-1].noun)], rng)
        template = rng.choice(self.iv[shape])
        with_subject = "{subject}" not in template and "{Subject}" not in template
        story = self._sentence(self._clauses(story_items, "plain", with_subject, aud)) + "."
        fill["story"], fill["Story"] = story, _cap(story)
        text = _cap(template.format(**fill))
        if not text.endswith((".", "?", "!")):
            text += "."
        return self._extras(text)

    def _question(self, nodes: list[_Node]) -> str:
        rng = self.rng
        q = self.v["question"]
        items = list(nodes)
        ask = rng.choice(q["asks"])
        fill = self._fill(self._aud(0.25))
        context = rng.choice(q["context"]).format(**fill)
        if self._listable(items) and rng.random() < 0.65:  # the deliverables by name
            things = _join(self._things(items), rng)
            frame = rng.choice(q["things"])
            if self.subject in context:  # the subject is said once
                fill = {**fill, "subject": "it"}
            text = frame.format(things=things, Context=context, **fill)
        else:
            frame = rng.choice(q["frames"])
            with_subject = not (self.subject in context and "{Context}" in frame)
            story = self._sentence(self._clauses(items, "plain", with_subject, fill["aud"]), split=0.0)
            text = frame.format(Ask=ask, ask=ask[:1].lower() + ask[1:], story=story, Context=context)
        if rng.random() < 0.15 and not frame.startswith("{Context}"):
            text = _cap(self._pick("lead").format(name=self.name, org=self.org)) + " " + text
        return _cap(text)

    def _terse(self, nodes: list[_Node]) -> str:
        """A short command (5 to 20 words): the deliverables listed, or the plan as bare clauses
        when a final step is a check or works on supplied material."""
        rng = self.rng
        t = self.v["terse"]
        items = list(nodes)
        sinks = {id(n) for n in self._sinks(nodes)}
        short = [n for n in items if n.kind not in _CHECK_KINDS or id(n) in sinks]
        subject = self.subject if rng.random() < 0.4 else self.plain_subject
        topic = re.sub(r"^(?:a|an|the|our|this year's|next month's)\s+", "", subject)
        things = [n for n in items if n.kind in _ARTEFACT_KINDS]
        listable = self._listable(items)
        list_forms = [f for f in t["forms"] if "{list}" in f]
        clause_forms = [f for f in t["forms"] if "{list}" not in f]
        sep = rng.choice(t["join"])
        best = ""
        for attempt in range(10):
            form = rng.choice(list_forms if listable and rng.random() < 0.75 else clause_forms)
            adj = 0.5 if attempt < 3 else 0.0
            items_list = [
                self._thing(n, bare=True) if rng.random() < adj else n.a_noun or n.noun for n in things
            ]
            told = items if attempt < 3 else short
            fill = {
                "topic": topic if attempt < 6 else _slug(topic, 3).replace("_", " "),
                "list": sep.join(_bare(x) for x in items_list),
                "clauses": ", ".join(self._clauses(told, "bare", "{topic}" not in form and attempt < 3, "")),
                "aud_short": rng.choice(t["aud_short"]).format(audience=self.audience),
                "day": self._pick("days"),
            }
            text = form.format(**fill)
            if self.material is not None and (attempt >= 3 or rng.random() < 0.4):
                # supplied material, then what to make of it
                mat = _bare(self._pick("study") + " " + self.material["ref"])
                made = [_bare(x) for x in self._things(items, bare=True)]
                if made:
                    text = rng.choice(
                        ["{m}, then {l}", "{m} -> {l}", "{m}; want {l}", "{m} and make {l}"]
                    ).format(m=mat, l=sep.join(made))
            words = len(text.split())
            if 5 <= words <= 20:
                best = text
                break
            if not best or abs(words - 12) < abs(len(best.split()) - 12):
                best = text
        text = best
        if len(text.split()) < 5:
            text += f" for {topic}"
        if rng.random() < 0.6:
            text = text[:1].lower() + text[1:]
        if rng.random() < 0.3:
            text += "."
        return text

    def _brief(self, nodes: list[_Node]) -> str:
        """Several sentences: who asks, what they need, then one or two constraints that are the
        steps' own (a deliverable's style, a review's criterion), so the plan does what the
        brief demands."""
        rng = self.rng
        b = self.v["brief"]
        items = list(nodes)
        reviews = [n for n in nodes if n.kind == "review"]
        checks = [rng.choice(reviews)] if reviews and rng.random() < 0.5 else []
        items = [n for n in items if n not in checks] or items
        fill = self._fill(self._aud(0.3))
        fill["doing"] = rng.choice(b["doing"])
        fill["Me"] = rng.choice(b["me"])
        context = _cap(rng.choice(b["context"]).format(**fill))
        if self._listable(items) and rng.random() < 0.7:
            ask = rng.choice([a for a in b["ask"] if "{things}" in a])
        else:
            ask = rng.choice([a for a in b["ask"] if "{things}" not in a])
        things = _join(self._things(items) or [_a(nodes[-1].noun)], rng)
        story = self._sentence(self._clauses(items, "plain", False, fill["aud"]), split=0.0)
        sentences = [context, ask.format(things=things + fill["aud"], story=story)]
        picked = []
        for n in checks:  # a review the brief states as a constraint instead of a step to tell
            reviewed = self._nodes[n.deps[0] - 1]
            picked.append(
                _cap(
                    rng.choice(b["checked"]).format(
                        the_art=reviewed.ref, The_art=_cap(reviewed.ref), criterion=n.criterion
                    )
                )
            )
        styled = [n for n in items if n.constraint]  # the told deliverables' own styles
        rng.shuffle(styled)
        for n in styled[: rng.choice([1, 1, 2]) - len(picked)]:
            picked.append(n.constraint.format(the_art=n.ref, The_art=_cap(n.ref)))
        if not picked or rng.random() < 0.15:
            picked.append(rng.choice(self.v["constraints"]))
        if rng.random() < 0.25:
            day = self._pick("days")
            picked.append(rng.choice(b["deadline"]).format(day=day, Day=_cap(day)))
        return " ".join(sentences + picked)

    def _first_person(self, nodes: list[_Node]) -> str:
        rng = self.rng
        v = self.v
        items = list(nodes)
        files = [n for n in self.files if not n.file.startswith("http")]
        urls = [n for n in self.files if n.file.startswith("http")]
        sentences = []
        if files:
            names = []
            for n in files:
                form = rng.random()
                if form < 0.5 or n.noun.split()[-1].lower() in n.file.lower():  # no "my vlog vlog.mp4"
                    names.append(n.file)
                elif form < 0.75:
                    names.append(f"{_a(n.noun)} ({n.file})")
                else:
                    names.append(f"my {n.noun} {n.file}")
            sentences.append(
                _cap(
                    (
                        rng.choice(v["have"]["verb"]) + " {files}" + rng.choice(v["have"]["origin"]) + "."
                    ).format(files=_join(names, rng), event=rng.choice(v["event"]), Name=self.name)
                )
            )
        if sentences:
            sentences[0] = sentences[0].replace("my my ", "my ").replace("My my ", "My ")
        for n in urls:
            found = rng.choice(v["urls"]["found"])
            sentences.append(
                _cap(found.format(a_noun=_a(n.noun), A_noun=_cap(_a(n.noun)), noun=n.noun, url=n.file))
            )
        made = [n for n in items if n.kind != "file"]
        sinks = {id(n) for n in self._sinks(nodes)}
        if (
            made
            and all(
                n.kind in _ARTEFACT_KINDS or n.kind in ("review", "revise") for n in made if id(n) in sinks
            )
            and not any(id(n) in sinks for n in self.files)
            and rng.random() < 0.5
        ):  # what the files are for, by name: the steps on the files serve it
            things = _join(self._things(made), rng)
            it = "it" if len(self.files) == 1 else "them"
            nf = v["need_first"]
            need = rng.choice(v["implicit"]["need"])
            lead = rng.choice(nf["lead"]).format(it=it)
            sentences.append(
                _cap(
                    rng.choice(nf["forms"]).format(
                        things=things, it=it, Lead=lead, need=need, Need=_cap(need)
                    )
                )
            )
        else:
            story = self._sentence(self._clauses(items, "plain", True, self._aud(0.2)), split=0.0)
            asks = v["ask_first"]
            if re.match(r"\w+ me\b", story):  # "help me tell me ...", "I want to give me ..." do not parse
                asks = [
                    a
                    for a in asks
                    if "help me" not in a.lower() and ("you" in a.lower() or a.startswith("Please"))
                ]
            sentences.append(rng.choice(asks).format(story=story))
        text = " ".join(sentences)
        if rng.random() < 0.12:
            text += " " + self._pick("tail").format(purpose=self.purpose, day=self._pick("days"))
        return text

    def _implicit(self, nodes: list[_Node]) -> str:
        """The deliverables by what they are for, not what they are: the final steps only
        (a planner infers the steps that lead to them), each a cue of its modality."""
        rng, iv = self.rng, self.v["implicit"]
        cues = []
        for n in self._sinks(nodes):
            art = n
            while art.kind in _CHECK_KINDS:
                art = nodes[art.deps[0] - 1]
            if art.kind in ("file", "material"):
                cue = art.clause.format(it="the " + art.noun, topic=self.subject)
            else:
                cue = self._cue(art.modality)
            if n.kind in _CHECK_KINDS:
                cue += " " + rng.choice(iv["checked"])
            cues.append(cue)
        cues = list(dict.fromkeys(cues))
        fill = self._fill(self._aud(0.2))
        fill["cues"] = _join(cues, rng)
        fill["cues_cap"] = _cap(fill["cues"])
        fill["need"] = rng.choice(iv["need"])
        fill["Need"] = _cap(fill["need"])
        text = _cap(rng.choice(iv["frames"]).format(**fill))
        return self._extras(text, lead=0.15, tail=0.15)

    # --- the row ---------------------------------------------------------------------------
    def compose(self) -> Draft:
        cell, rng = self.cell, self.rng
        deps = [[]] if cell.single else _graph(cell, _n_steps(cell, rng), rng)
        self.single_root = sum(1 for d in deps if not d) == 1
        mods = _modalities(deps, cell.modalities, rng)
        self._nodes = nodes = [
            _Node(i, d, m) for i, (d, m) in enumerate(zip(deps, mods, strict=True), start=1)
        ]
        for n in nodes:
            for d in n.deps:
                nodes[d - 1].children.append(n.step)
        for n in nodes:
            self.node(n, [nodes[d - 1] for d in n.deps])
        if self.material is not None:
            brief = self.material["input"]
        elif self.style not in ("terse", "first-person") and rng.random() < 0.15:
            brief = "Notes from the client: " + " ".join(rng.sample(self.v["constraints"], 2))
        else:
            brief = ""
        candidate = {
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
            "style": self.style,
        }
        return Draft(
            candidate,
            self.style,
            deliverables=tuple(n.file or n.noun for n in self._sinks(nodes)),
            files=tuple(n.file for n in self.files),
            roles=tuple(n.role for n in nodes),
        )


def _look_alike(descriptions: list[str]) -> bool:
    """Two steps that differ in at most two words ("Draw a pie chart ..." / "Draw a bar chart
    ...") would be rejected as duplicate steps by validation; compose another row instead."""
    toks = [d.lower().split() for d in descriptions]
    for i, a in enumerate(toks):
        for b in toks[i + 1 :]:
            if abs(len(a) - len(b)) <= 2 and len(set(a) ^ set(b)) <= 4:
                return True
    return False


_DOUBLED = re.compile(r"\b(\w+) \1\b", re.IGNORECASE)


def _compose(cell: Cell, rng: random.Random, style: str) -> Draft:
    """A draft the build's validator accepts (a few tries: a terse request that came out too
    long, two steps that read alike)."""
    for _ in range(20):
        draft = _Composer(cell, rng, style).compose()
        if _look_alike([st["description"] for st in draft.candidate["subtasks"]]):
            continue
        texts = [draft.candidate["instruction"]] + [st["description"] for st in draft.candidate["subtasks"]]
        if _DOUBLED.search("\n".join(texts)):
            continue  # "the trade-in in a fact sheet": slots that end and start with one word
        if not validate_row(make_row(draft.candidate, "offline"), cell):
            return draft
    return draft


def drafts(cell: Cell, n: int, seed: int) -> list[Draft]:
    """`n` drafts for `cell`, a pure function of (cell, n, seed); no repeated instruction. The
    rows' styles follow the cell's style weights (`taxonomy.assign_styles`)."""
    rng = random.Random(seed)
    out: list[Draft] = []
    seen: set[str] = set()
    for style in assign_styles(n, seed, dict(cell.styles) or None):
        for _ in range(20):
            draft = _compose(cell, rng, style)
            if draft.candidate["instruction"].lower() not in seen:
                break
        seen.add(draft.candidate["instruction"].lower())
        out.append(draft)
    return out


def generate_rows(cell: Cell, n: int, seed: int) -> list[dict[str, Any]]:
    """`n` candidates for `cell`, a pure function of (cell, n, seed); no repeated instruction."""
    return [d.candidate for d in drafts(cell, n, seed)]


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
