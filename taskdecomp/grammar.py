"""The plan format as a grammar: what constrained decoding lets a model write.

Generated in one place from the schema's enums and limits, so the local decoder
(`taskdecomp.constrain`) and a remote server (`decompose --base-url`: vLLM, SGLang, llama.cpp)
get the same text. The grammar is GBNF (llama.cpp's dialect, which vLLM and SGLang also
read) and holds every rule of the plan format that a grammar can hold:

    1. Record a two-minute voice memo about the launch. [audio generation]
    2. Transcribe the memo into text. [text transformation; after 1]

- step k starts with the literal `k. `, steps are numbered 1, 2, … in order, 1 to 8 of them;
- a description of bounded length with no brackets or newline (a small model decoding greedily
  loops, "audio-video-audio-…": the bound turns a loop into a short, checkable step);
- the tag's modality and operation come from the schema's enums;
- `after` lists only earlier steps, strictly increasing ("after 1, 1, 1" cannot be written).

What a grammar cannot say (distinct steps, no boilerplate, every modality of the task) stays
with the validator: a constrained answer is still parsed and validated before it is a Plan.

`plan_json_schema()` is the same plan as JSON, for servers that only take `response_format`
(`--constraint json`); `plan_text_from_json` turns such an answer into the plan text.

Tool plans (`decompose --tools CATALOGUE`): `tool_plan_grammar(catalogue)` makes every step

    3. Transcribe the interview. [audio analysis; tool speech-recognition; args interview.wav; after 1, 2]

name a catalogue tool, with that tool's own modality and operation in front of it, at most as many
`args` as the tool has argument names (or inputs), each a literal or `<step-j>`, and `after` only
earlier steps whose tool *feeds* this one (an output type of step j is an input type of this
tool). That last rule needs state: which steps can come before a tool depends on the tools chosen
earlier. A context-free grammar carries it in its nonterminals: step k's rule is indexed by the
output sets of steps 1..k-1 (`s3_02`: step 1's tool makes output set 0, step 2's set 2), and a
tool's `after` list (and its `<step-j>` arguments) draw from the earlier steps that sequence
makes compatible. With O distinct output sets that is 1 + O + ... + O^(k-1) rules for k typed
steps, each listing every tool class, so the grammar types the first `typed_steps_for(catalogue)`
steps, as many as fit `TYPED_BUDGET` tool alternatives (the default catalogue, 5 output sets: 5
of 6 steps). Later steps may name any earlier step in the grammar: there, as for the JSON
Schema, it is a two-level check. Local decoding closes that gap in the logits processor, which
reads the catalogue (`taskdecomp.constrain.links_fit`: types past the typed steps, and every
`<step-j>` argument in its step's `after` list, which no grammar here ties); a server gets the
grammar only, and the validator (`taskdecomp.validation.tool_errors`) checks the types after
parsing, so a mistyped plan is re-asked, never returned. Tool plans have at most
`TOOL_PLAN_MAX_STEPS` steps (the tool-graph datasets' sizes, 1 to 6).
"""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Any

from taskdecomp.schema import MODALITIES, OPERATIONS, row_schema

if TYPE_CHECKING:  # annotations only: the plain grammar needs no catalogue
    from taskdecomp.catalogue import Catalogue, Tool

__all__ = [
    "PLAN_MIN_STEPS",
    "PLAN_MAX_STEPS",
    "DESC_MIN_CHARS",
    "DESC_MAX_CHARS",
    "DESC_MIN_WORDS",
    "TOOL_PLAN_MAX_STEPS",
    "TYPED_BUDGET",
    "ARG_MAX_CHARS",
    "plan_grammar",
    "tool_plan_grammar",
    "typed_steps_for",
    "plan_json_schema",
    "plan_text_from_json",
]


def _limits() -> tuple[int, int, int, int]:
    subtasks = row_schema()["properties"]["subtasks"]
    desc = subtasks["items"]["properties"]["description"]
    return subtasks["minItems"], subtasks["maxItems"], desc["minLength"], desc["maxLength"]


PLAN_MIN_STEPS, PLAN_MAX_STEPS, DESC_MIN_CHARS, _SCHEMA_DESC_MAX = _limits()
# The schema allows 400 characters; generated rows' descriptions are far shorter (1,000
# offline rows: median 87, 99th percentile 153, longest 174; the hand-labelled requests: at
# most 94). 200 leaves room and still stops a loop at half the schema's bound.
DESC_MAX_CHARS = min(200, _SCHEMA_DESC_MAX)
# The validator's lower bound on words per description (DESCRIPTION_WORDS there): the grammar
# holds it too, so that a constrained plan cannot fail it. Words of at most _WORD_MAX characters.
DESC_MIN_WORDS, _WORD_MAX = 3, 40
# Tool plans: the tool-graph datasets sample 1 to 6 tools per plan.
TOOL_PLAN_MAX_STEPS = 6
# Tool alternatives of the typed tool grammar at most (see the module doc): ~20k compile in
# about a second; llguidance refuses grammars a few times larger.
TYPED_BUDGET = 20000
ARG_MAX_CHARS = 80  # a literal argument: ^[^,;\[\]\n]{1,80}$ (the row schema's rule)


def _lit(text: str) -> str:
    return json.dumps(text)  # a GBNF string literal: double quotes, JSON escapes


def _after_rules(k: int) -> list[str]:
    """`after` lists of step k: strictly increasing numbers from 1..k-1. `dK_M` is such a list
    whose first number is at least M; each number n is followed by an optional tail `dK_{n+1}`."""
    rules = []
    for m in range(1, k):
        alts = [_lit(str(n)) + (f' (", " d{k}_{n + 1})?' if n + 1 < k else "") for n in range(m, k)]
        rules.append(f"d{k}_{m} ::= " + " | ".join(alts))
    return rules


@cache
def plan_grammar(
    max_steps: int = PLAN_MAX_STEPS,
    min_steps: int = PLAN_MIN_STEPS,
    desc_max_chars: int = DESC_MAX_CHARS,
) -> str:
    """The GBNF grammar of a plan with `min_steps`..`max_steps` steps."""
    if not 1 <= min_steps <= max_steps <= PLAN_MAX_STEPS:
        raise ValueError(f"steps must satisfy 1 <= {min_steps} <= {max_steps} <= {PLAN_MAX_STEPS}")
    if not DESC_MIN_CHARS <= desc_max_chars <= _SCHEMA_DESC_MAX:
        raise ValueError(f"desc_max_chars must be {DESC_MIN_CHARS} to {_SCHEMA_DESC_MAX}")
    lines = [
        "# A numbered, typed plan (generated by taskdecomp.grammar from the row schema).",
        "root ::= s1 r2",
    ]
    for k in range(2, max_steps + 1):
        tail = f" r{k + 1}" if k < max_steps else ""
        body = f'"\\n" s{k}{tail}'
        # steps up to min_steps are required, later ones optional
        lines.append(f"r{k} ::= {body}" if k <= min_steps else f"r{k} ::= ({body})?")
    if max_steps == 1:
        lines[1] = "root ::= s1"
    for k in range(1, max_steps + 1):
        after = f' ("; after " d{k}_1)?' if k > 1 else ""
        lines.append(f's{k} ::= {_lit(f"{k}. ")} desc " [" tag{after} "]"')
    for k in range(2, max_steps + 1):
        lines += _after_rules(k)
    lines += [
        'tag ::= modality " " operation',
        "modality ::= " + " | ".join(_lit(m) for m in MODALITIES),
        "operation ::= " + " | ".join(_lit(o) for o in OPERATIONS),
        *_desc_rules(desc_max_chars),
    ]
    return "\n".join(lines) + "\n"


def _desc_rules(desc_max_chars: int) -> list[str]:
    """A description starts like a word (not a digit, space or punctuation: "1.1.1.1" is no
    step), holds at least `DESC_MIN_WORDS` words (the validator's lower bound: a one-word step
    is no step either), and ends on a non-space; no brackets or line breaks anywhere. The
    first two words are at most `_WORD_MAX` characters each, so the whole stays within
    `desc_max_chars`."""
    rest_min = max(0, DESC_MIN_CHARS - 5)  # the shortest head: "a b " + dedge
    word = max(1, min(_WORD_MAX, (desc_max_chars - 4 - rest_min) // 2))  # a short bound: short words
    rest_max = desc_max_chars - 2 * word - 4  # dstart, two spaces, dedge
    return [
        f'desc ::= dstart dword{{0,{word - 1}}} " " dword{{1,{word}}} " " dchar{{{rest_min},{rest_max}}} dedge',
        "dstart ::= [^\\[\\]\\n\\r 0-9.,;:!?()-]",
        "dword ::= [^\\[\\]\\n\\r ]",
        "dedge ::= [^\\[\\]\\n\\r ]",
        "dchar ::= [^\\[\\]\\n\\r]",
    ]


def _tool_classes(
    catalogue: Catalogue,
) -> tuple[
    list[frozenset[str]],
    list[tuple[frozenset[str], int, int]],
    dict[tuple[frozenset[str], int, int], list[Tool]],
]:
    """The catalogue's distinct output sets, and its tools grouped by what the grammar tells
    apart: (input types, output-set index, most arguments)."""
    outputs: list[frozenset[str]] = []
    groups: dict[tuple[frozenset[str], int, int], list[Tool]] = {}
    for tool in catalogue.tools:
        out = frozenset(tool.outputs)
        if out not in outputs:
            outputs.append(out)
        key = (frozenset(tool.inputs), outputs.index(out), max(1, len(tool.args) or len(tool.inputs)))
        groups.setdefault(key, []).append(tool)
    return outputs, list(groups), groups


def _typed_size(n_outputs: int, n_classes: int, max_steps: int, typed_steps: int) -> int:
    """Tool alternatives in the grammar: each step rule lists every tool class once; steps up to
    `typed_steps` have one rule per output-set sequence before them, later steps one rule."""
    return n_classes * (sum(n_outputs**k for k in range(typed_steps)) + max_steps - typed_steps)


def typed_steps_for(catalogue: Catalogue, max_steps: int = TOOL_PLAN_MAX_STEPS) -> int:
    """How many leading steps get type-checked `after` lists within `TYPED_BUDGET`."""
    outputs, classes, _ = _tool_classes(catalogue)
    fits = [
        d
        for d in range(max_steps + 1)
        if _typed_size(len(outputs), len(classes), max_steps, d) <= TYPED_BUDGET
    ]
    return max(fits, default=0)


@cache
def tool_plan_grammar(
    catalogue: Catalogue,
    max_steps: int = TOOL_PLAN_MAX_STEPS,
    min_steps: int = PLAN_MIN_STEPS,
    desc_max_chars: int = DESC_MAX_CHARS,
    typed_steps: int | None = None,
) -> str:
    """The GBNF grammar of a tool plan over `catalogue` (see the module doc). `typed_steps`:
    how many leading steps get type-checked `after` lists (0: the two-level grammar; default:
    `typed_steps_for`, as many as `TYPED_BUDGET` allows)."""
    if not 1 <= min_steps <= max_steps <= PLAN_MAX_STEPS:
        raise ValueError(f"steps must satisfy 1 <= {min_steps} <= {max_steps} <= {PLAN_MAX_STEPS}")
    if not DESC_MIN_CHARS <= desc_max_chars <= _SCHEMA_DESC_MAX:
        raise ValueError(f"desc_max_chars must be {DESC_MIN_CHARS} to {_SCHEMA_DESC_MAX}")
    if not catalogue.tools:
        raise ValueError("the catalogue has no tools")
    typed = typed_steps_for(catalogue, max_steps) if typed_steps is None else min(typed_steps, max_steps)
    outputs, classes, groups = _tool_classes(catalogue)
    lines = [
        f"# A numbered tool plan over {len(catalogue.tools)} tools, generated by taskdecomp.grammar; "
        f"typed links in steps 1-{typed} of {max_steps}" if typed else
        f"# A numbered tool plan over {len(catalogue.tools)} tools, generated by taskdecomp.grammar; "
        "links to earlier steps (the validator checks their types)",
        "root ::= s1",
    ]  # fmt: skip
    for c, key in enumerate(classes):
        tags = [_lit(f"{t.modality} {t.operation}; tool {t.id}") for t in groups[key]]
        lines.append(f"tc{c} ::= " + " | ".join(tags))
    lines.append(
        f"lit ::= [^,;\\[\\]\\n\\r <] ([^,;\\[\\]\\n\\r]{{0,{ARG_MAX_CHARS - 2}}} [^,;\\[\\]\\n\\r ])?"
    )
    # `xM_N`: the optional `; args` (at most N) and `; after` segments when the earlier steps a
    # tool may name are the bits of M (bit j: step j); `aM` one argument, `lM_i` an `after` list
    # of M's steps from its i-th on, strictly increasing. Shared by every state with that M.
    extras: set[tuple[int, int]] = set()
    masks: set[int] = set()

    def extra(mask: int, n_args: int) -> str:
        name = f"x{mask}_{n_args}"
        if (mask, n_args) in extras:
            return name
        extras.add((mask, n_args))
        steps = [j for j in range(1, max_steps) if mask >> j & 1]
        if mask not in masks:
            masks.add(mask)
            lines.append(f"a{mask} ::= lit" + "".join(f' | "<step-{j}>"' for j in steps))
            for i in range(len(steps)):
                alts = [
                    _lit(str(steps[m])) + (f' (", " l{mask}_{m + 1})?' if m + 1 < len(steps) else "")
                    for m in range(i, len(steps))
                ]
                lines.append(f"l{mask}_{i} ::= " + " | ".join(alts))
        more = f' (", " a{mask}){{0,{n_args - 1}}}' if n_args > 1 else ""
        after = f' ("; after " l{mask}_0)?' if steps else ""
        lines.append(f'{name} ::= ("; args " a{mask}{more})?{after}')
        return name

    # A state is the output-set index of each earlier step; past `typed`, ANY: every earlier
    # step may be named (the validator checks what the grammar no longer tracks).
    frontier: list[tuple[int, ...]] = [()]
    for k in range(1, max_steps + 1):
        following: list[tuple[int, ...]] = []
        for state in frontier:
            # the tools that make one output set share what follows them: the next step's state
            by_output: dict[int, list[str]] = {}
            for c, (inputs, out, n_args) in enumerate(classes):
                mask = sum(1 << j for j, o in enumerate(state, start=1) if o == ANY or outputs[o] & inputs)
                by_output.setdefault(out if k < typed else ANY, []).append(f"tc{c} {extra(mask, n_args)}")
            alts = []
            for out, tags in by_output.items():
                alt = "(" + " | ".join(tags) + ') "]"' if len(tags) > 1 else f'{tags[0]} "]"'
                if k < max_steps:
                    nxt = (*state, out) if out != ANY else (ANY,) * k
                    if nxt not in following:
                        following.append(nxt)
                    cont = f'"\\n" {_state_name(k + 1, nxt)}'
                    alt += f" {cont}" if k < min_steps else f" ({cont})?"
                alts.append(alt)
            lines.append(f'{_state_name(k, state)} ::= {_lit(f"{k}. ")} desc " [" (' + " | ".join(alts) + ")")
        frontier = following
    lines += _desc_rules(desc_max_chars)
    return "\n".join(lines) + "\n"


ANY = -1  # a step whose output set the grammar does not track


def _state_name(k: int, state: tuple[int, ...]) -> str:
    """`s3_02`: step 3 after steps whose tools make output sets 0 and 2 (`s3_nn`: two-level)."""
    sep = "" if all(o < 10 for o in state) else "_"
    return f"s{k}" + ("_" if state else "") + sep.join(str(o) if o >= 0 else "n" for o in state)


@cache
def _json_schema(
    max_steps: int, min_steps: int, desc_max_chars: int, catalogue: Catalogue | None = None
) -> str:
    after = {
        "type": "array",
        "items": {"type": "integer", "minimum": 1, "maximum": max_steps - 1 or 1},
        "uniqueItems": True,
        "maxItems": max_steps - 1,
    }
    description = {"type": "string", "minLength": DESC_MIN_CHARS, "maxLength": desc_max_chars}
    items: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["description", "modality", "operation", "after"],
        "properties": {
            "description": description,
            "modality": {"enum": list(MODALITIES)},
            "operation": {"enum": list(OPERATIONS)},
            "after": after,
        },
    }
    if catalogue is not None:
        # one branch per tool: its id with its own modality and operation, at most its args
        items = {
            "anyOf": [
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["description", "modality", "operation", "tool", "args", "after"],
                    "properties": {
                        "description": description,
                        "modality": {"const": t.modality},
                        "operation": {"const": t.operation},
                        "tool": {"const": t.id},
                        "args": {
                            "type": "array",
                            "items": {"type": "string", "pattern": f"^[^,;\\[\\]\\n]{{1,{ARG_MAX_CHARS}}}$"},
                            "maxItems": max(1, len(t.args) or len(t.inputs)),
                        },
                        "after": after,
                    },
                }
                for t in catalogue.tools
            ]
        }
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["steps"],
        "properties": {
            "steps": {
                "type": "array",
                "minItems": min_steps,
                "maxItems": max_steps,
                "items": items,
            }
        },
    }
    return json.dumps(schema, sort_keys=True)


def plan_json_schema(
    max_steps: int | None = None,
    min_steps: int = PLAN_MIN_STEPS,
    desc_max_chars: int = DESC_MAX_CHARS,
    catalogue: Catalogue | None = None,
) -> dict[str, Any]:
    """JSON Schema of a plan answer `{"steps": [{"description", "modality", "operation",
    "after"}]}` (step numbers are the positions; `after` = earlier step numbers). With a
    `catalogue`, each step is one of its tools (`"tool"`, that tool's modality and operation,
    `"args"`: literals or `<step-j>`), at most `TOOL_PLAN_MAX_STEPS` steps by default. What JSON
    Schema cannot say ("only earlier steps", type-compatible links, references in `after`) the
    validator checks after `plan_text_from_json`."""
    if max_steps is None:
        max_steps = PLAN_MAX_STEPS if catalogue is None else TOOL_PLAN_MAX_STEPS
    result: dict[str, Any] = json.loads(_json_schema(max_steps, min_steps, desc_max_chars, catalogue))
    return result


def plan_text_from_json(answer: str) -> str:
    """A `plan_json_schema` answer as plan text (then parsed and validated like any answer).
    Anything that is not such an object comes back unchanged: the parser reports it."""
    try:
        data = json.loads(answer)
    except ValueError:
        return answer
    steps = data.get("steps") if isinstance(data, dict) else None
    if not isinstance(steps, list):
        return answer
    lines = []
    for k, st in enumerate(steps, start=1):
        if not isinstance(st, dict):
            return answer
        after = st.get("after") or []
        deps = (
            sorted({int(d) for d in after if isinstance(d, int | float)}) if isinstance(after, list) else []
        )
        tag = f"{st.get('modality', '')} {st.get('operation', '')}"
        if st.get("tool"):
            tag += f"; tool {st['tool']}"
            args = st.get("args") if isinstance(st.get("args"), list) else []
            if args:
                tag += "; args " + ", ".join(" ".join(str(a).split()) for a in args)
        if deps:
            tag += "; after " + ", ".join(map(str, deps))
        desc = " ".join(str(st.get("description", "")).split())
        lines.append(f"{k}. {desc} [{tag}]")
    return "\n".join(lines)
