"""Grammar-constrained decoding for transformers' `generate`, with llguidance.

Why llguidance: it reads the GBNF grammar of `taskdecomp.grammar` as is, runs on CPU, keeps
one matcher per row (so batches with left padding work), and is a 7.6 MB wheel with no
dependencies. xgrammar (0.2.8), which ships a ready transformers processor, pulls in triton
(1 GB on a CPU machine) for kernels a CPU never uses. llguidance has no transformers processor,
so the ~40 lines below are that glue: per step, each row's matcher consumes the token the row
just produced and writes the bitmask of the tokens the grammar allows next; disallowed logits
become -inf. The mask is applied after every other processor (repetition penalty included).

A row whose plan is complete has a stopped matcher, which allows only EOS; after EOS,
`generate` feeds that row padding, whatever the mask says.

The grammar alone cannot stop a plan from running into `max_new_tokens` halfway through a step
(a small model's descriptions loop until the token budget ends), and a cut plan is invalid. So the
processor knows the budget: in the last `CLOSE_MARGIN` tokens it steers each unfinished row to
the nearest end the grammar allows (EOS after a complete step, else the `]` that closes the tag,
else the `[` that opens it), which takes about six tokens from anywhere in a description. Plans
that end well inside the budget are never touched.

Nor can a grammar hold a plan's steps distinct, and a small model repeats a step word for word
("2. Create a social media thread ... 3. Create a social media thread ..."), which the validator
rejects. So before a description may end (its tag open), the processor checks it against the
plan's earlier steps with the validator's own rule (`taskdecomp.validation.repeats_a_step`); a
repeat may not open its tag and must go on writing until it says something else.

Where it cannot (the description reached the grammar's length bound, or the budget's closing
margin, and still repeats an earlier step), the step is *abandoned*: the row ends there (EOS)
and `generate_batched` drops that unfinished line (`drop_last_line`), so the plan is the steps
before it.
Nothing is lost (the dropped step only said again what an earlier one says), and no answer is
left to fail the validator's distinct-steps rule, so a repeat can no longer make a plan invalid.

Nor does the grammar stop a description from holding a list marker of its own ("1. Mark Davis
(video generation) and 2. Mark Davis ..."): a plan written on one line is split by the parser
at such a "2. ", and its pieces lack tags (1 of 229 constrained answers failed so). So after a
description word that is a step number ("2." or "2)"), no token starting with a space may
follow: the word goes on ("2.5") instead.

Tool plans (`processor(..., catalogue=...)`) get one more check the grammar leaves out. Its
typed `after` lists stop at `typed_steps_for(catalogue)` steps (5 of 6 for the default
catalogue: typing all six would need ~94k tool alternatives, past what llguidance compiles), and
it cannot tie a step's `<step-j>` arguments to its `after` list. The adapter wrote both errors
(7 of 100 constrained tool plans failed the validator). So, once a step's tag names its tool,
each token the grammar allows is checked by `links_fit` on the line it would make (inside a
literal argument, where almost any token is allowed, only those holding `]`, `<` or `;`): every
linked step feeds the tool (an output type of its tool is an input type of this one), every
`<step-j>` argument is in the `after` list, a number the strictly increasing list has skipped can
no longer be needed, and an `after` list or `<step-` is begun only where some earlier step fits.
A step left with no allowed token is abandoned, as a repeat is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from taskdecomp.errors import InputError

if TYPE_CHECKING:
    from taskdecomp.catalogue import Catalogue

__all__ = [
    "GrammarConstraint",
    "CLOSE_MARGIN",
    "description_repetition_penalty",
    "drop_last_line",
    "links_fit",
    "tool_of",
]

# tokens before the budget ends from which an unfinished plan is steered to its nearest end
CLOSE_MARGIN = 16


class GrammarConstraint:
    """One grammar compiled for one tokenizer; `processor(batch)` gives a fresh logits processor
    for one `generate` call (matchers carry state, so they are never shared between calls)."""

    def __init__(self, tokenizer: Any, grammar: str, *, eos_ids: Sequence[int], vocab_size: int) -> None:
        import llguidance
        import llguidance.hf
        from llguidance._grammar_from import grammar_from

        try:
            self._tokenizer = llguidance.hf.from_tokenizer(
                tokenizer, n_vocab=vocab_size, eos_token=list(eos_ids)
            )
        except (ValueError, TypeError) as exc:
            raise InputError(
                f"the tokenizer cannot be used for grammar-constrained decoding ({exc}); pass --no-constrain"
            ) from None
        try:
            self._grammar = grammar_from("gbnf", grammar)
        except ValueError as exc:
            raise InputError(f"the plan grammar does not compile: {exc}") from None
        probe = llguidance.LLMatcher(self._tokenizer, self._grammar, log_level=0)
        if probe.is_error():
            raise InputError(
                f"the plan grammar cannot be served with this tokenizer: {probe.get_error()}; pass --no-constrain"
            )
        self.vocab_size = vocab_size
        self.eos_ids = list(eos_ids)
        self._hf_tokenizer = tokenizer
        self._closers: tuple[Any, Any, Any] | None = None
        self._line_breaks: frozenset[int] | None = None
        self._token_texts: list[str] | None = None
        self._link_tokens: Any = None
        self._space_tokens: Any = None

    def closers(self) -> tuple[Any, Any, Any]:
        """Boolean masks over the vocabulary: tokens holding `]`, tokens holding `[`, tokens
        that start a new word (a description must reach its minimum of words before its tag
        can open) (cached)."""
        if self._closers is None:
            import torch

            pieces = self._hf_tokenizer.convert_ids_to_tokens(list(range(len(self._hf_tokenizer))))
            close = torch.zeros(self.vocab_size, dtype=torch.bool)
            open_ = torch.zeros(self.vocab_size, dtype=torch.bool)
            word = torch.zeros(self.vocab_size, dtype=torch.bool)
            for i, piece in enumerate(pieces[: self.vocab_size]):
                if piece:
                    close[i] = "]" in piece
                    open_[i] = "[" in piece
                    # a space (as is, byte-level BPE, SentencePiece) and a whole ASCII word: no
                    # token that starts a multi-byte character the next tokens must finish
                    word[i] = piece[0] in " \u0120\u2581" and piece[1:].isascii() and piece[1:].isalnum()
            self._closers = (close, open_, word)
        return self._closers

    def line_breaks(self) -> frozenset[int]:
        """The ids of tokens that hold a line break (a plan step ends with one) (cached)."""
        if self._line_breaks is None:
            self._line_breaks = frozenset(i for i, t in enumerate(self.token_texts()) if "\n" in t)
        return self._line_breaks

    def token_texts(self) -> list[str]:
        """Each token's text on its own, over the whole vocabulary ("" past the tokenizer's
        tokens) (cached: one decode of the vocabulary, ~1 s, for every mask below)."""
        if self._token_texts is None:
            tok = self._hf_tokenizer
            texts = [tok.decode([i]) for i in range(min(len(tok), self.vocab_size))]
            self._token_texts = texts + [""] * (self.vocab_size - len(texts))
        return self._token_texts

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._hf_tokenizer.decode(list(ids), skip_special_tokens=True))

    def matcher(self) -> Any:
        import llguidance

        return llguidance.LLMatcher(self._tokenizer, self._grammar, log_level=0)

    def space_tokens(self) -> Any:
        """A boolean mask of the tokens whose text starts with whitespace (cached)."""
        if self._space_tokens is None:
            import torch

            self._space_tokens = torch.tensor([t[:1].isspace() for t in self.token_texts()], dtype=torch.bool)
        return self._space_tokens

    def link_tokens(self) -> Any:
        """A boolean mask of the tokens that hold `]`, `<` or `;` (the ones that can close a tag,
        open a step argument, or end a literal one) (cached)."""
        if self._link_tokens is None:
            import torch

            texts = self.token_texts()
            self._link_tokens = torch.tensor([any(c in t for c in "]<;") for t in texts], dtype=torch.bool)
        return self._link_tokens

    def processor(
        self, batch_size: int, max_new_tokens: int | None = None, catalogue: Catalogue | None = None
    ) -> Any:
        """`max_new_tokens`: the `generate` call's budget, so plans are closed before it ends.
        `catalogue`: a tool plan's, whose links are checked (see the module's docstring).
        After `generate`, `processor.abandoned[row]` says whether that row's last step was
        abandoned (see the module's docstring): `drop_last_line` of its decoded text is the plan."""
        return _processor_class()(self, batch_size, max_new_tokens, catalogue)


# the tag of a tool step once its tool is named: "[audio analysis; tool speech-recognition; args ..."
_TOOL_TAG = re.compile(r"\[[a-z]+ [a-z]+; tool ([a-z][a-z0-9-]*)(.*)$", re.DOTALL)
_REF = re.compile(r"<step-(\d+)")
_MARKER_END = re.compile(r"(?:^|\s)\d{1,2}[.)]$")  # a description so far ending in a step marker
_FEW = 256  # more allowed tokens than this: the step is in a literal argument (any text)


def tool_of(line: str) -> str | None:
    """The tool a plan line names ("2. ... [audio analysis; tool speech-recognition ...]")."""
    m = _TOOL_TAG.search(line)
    return m.group(1) if m else None


def links_fit(line: str, earlier: Sequence[str | None], catalogue: Catalogue) -> bool:
    """Whether `line`, a tool step written so far, can still end in a tag whose links fit:
    every `<step-j>` argument and every `after` number is an earlier step whose tool feeds
    this step's tool (`earlier[j - 1]`: step j's tool), each argument's step is in the `after`
    list once the tag closes, none of them was skipped by the increasing `after` list, and an
    argument or list that has begun a step number can still find one that fits."""
    m = _TOOL_TAG.search(line)
    if not m or m.group(1) not in catalogue:
        return True  # no tool named yet (or its id is still being written)
    tool, rest = m.group(1), m.group(2)
    closed = "]" in rest
    args, started, after = rest.split("]")[0].partition("; after")
    refs = {int(j) for j in _REF.findall(args)}
    numbers = [int(n) for n in re.findall(r"\d+", after)] if started else []

    def feeds(j: int) -> bool:
        src = earlier[j - 1] if 1 <= j <= len(earlier) else None
        return src is None or src not in catalogue or catalogue.feeds(src, tool)

    if not all(feeds(j) for j in refs | set(numbers)):
        return False
    last = numbers[-1] if numbers else 0
    if any(j < last and j not in numbers for j in refs):
        return False  # the list is strictly increasing: a skipped step cannot come back
    if closed:
        return refs <= set(numbers)
    open_ref = re.search(r"<[a-z-]*$", args) is not None and not started
    if open_ref and not any(feeds(j) for j in range(1, len(earlier) + 1)):
        return False  # "<step-" with no earlier step that fits
    wants_number = started and (not numbers or after.rstrip().endswith(","))
    return not wants_number or any(feeds(j) for j in range(last + 1, len(earlier) + 1))


def drop_last_line(text: str) -> str:
    """`text` without its last line (a row's abandoned, unfinished step)."""
    return text.rstrip().rpartition("\n")[0].rstrip()


@cache
def _processor_class() -> type:
    # defined on first use: transformers is imported only by a run that generates
    from transformers import LogitsProcessor

    class _Processor(LogitsProcessor):  # type: ignore[misc]
        def __init__(
            self,
            constraint: GrammarConstraint,
            batch_size: int,
            max_new_tokens: int | None,
            catalogue: Catalogue | None = None,
        ) -> None:
            import torch

            self.constraint = constraint
            self.catalogue = catalogue
            # per row, the tool of each step written before the one being written
            self.tools: list[list[str | None]] = [[] for _ in range(batch_size)]
            self.budget = max_new_tokens
            self.calls = 0

            self.matchers = [constraint.matcher() for _ in range(batch_size)]
            self.eos_ids = constraint.eos_ids
            words = (constraint.vocab_size + 31) // 32
            self.bitmask = torch.zeros((batch_size, words), dtype=torch.int32)
            self.shifts = torch.arange(32, dtype=torch.int32)
            self.started = False
            # per row, the tokens of the step being written and the descriptions of the steps
            # written before it (for the distinct-steps rule: each line is decoded once it ends)
            self.line: list[list[int]] = [[] for _ in range(batch_size)]
            self.earlier: list[list[str]] = [[] for _ in range(batch_size)]
            self.breaks = constraint.line_breaks()
            # rows whose last step repeated an earlier one where nothing else was allowed: they
            # end at once (EOS only) and their unfinished line is dropped after decoding
            self.abandoned = [False] * batch_size
            self.eos_mask: Any = None

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            import torch

            if self.started:  # the token each row produced at the previous step
                for row, matcher in enumerate(self.matchers):
                    if not self.abandoned[row] and not matcher.is_stopped() and not matcher.is_error():
                        token = int(input_ids[row, -1])
                        matcher.consume_token(token)
                        self.line[row].append(token)
                        if token in self.breaks:  # a step ended: keep its description (and tool)
                            line = self.constraint.decode(self.line[row]).split("\n")[0]
                            done = _description(line)
                            if done:
                                self.earlier[row].append(done)
                                self.tools[row].append(tool_of(line))
                            self.line[row] = []
            self.started = True
            self.calls += 1
            for row, matcher in enumerate(self.matchers):
                v = self.bitmask[row]
                if matcher.is_error():  # cannot happen under the mask; if it does, end the answer
                    v.zero_()
                    for t in self.eos_ids:
                        v[t // 32] |= 1 << (t % 32)
                else:  # a stopped matcher (the plan is complete) allows only EOS
                    matcher.unsafe_compute_mask_ptr(v.data_ptr(), v.numel() * v.element_size())
            allowed = ((self.bitmask.unsqueeze(-1) >> self.shifts) & 1).bool().flatten(1)
            vocab = scores.shape[-1]
            if allowed.shape[1] < vocab:
                pad = torch.zeros((allowed.shape[0], vocab - allowed.shape[1]), dtype=torch.bool)
                allowed = torch.cat([allowed, pad], dim=1)
            allowed = allowed[:, :vocab]
            if self.eos_mask is None or self.eos_mask.shape[0] != vocab:
                self.eos_mask = torch.zeros(vocab, dtype=torch.bool)
                self.eos_mask[[t for t in self.eos_ids if t < vocab]] = True
            closing = self.budget is not None and self.budget - self.calls < CLOSE_MARGIN
            # each row's unfinished step, decoded once for the checks below
            lines = [
                self.constraint.decode(ids) if ids and not gone else ""
                for ids, gone in zip(self.line, self.abandoned, strict=True)
            ]
            self._no_list_markers(allowed, lines)
            if self.catalogue is not None:
                self._links(allowed, lines)
            self._distinct(allowed, closing, lines)
            if closing:
                allowed = self._closing(allowed)
            for row, gone in enumerate(self.abandoned):
                if gone:
                    allowed[row] = self.eos_mask
            return scores.masked_fill(~allowed.to(scores.device), float("-inf"))

        def _distinct(self, allowed: Any, closing: bool, lines: list[str]) -> None:
            """Per row where the grammar would let the description end: if it repeats an
            earlier step, forbid the tokens that open its tag; where nothing else is allowed
            (the length bound) or the budget is closing, abandon the step instead."""
            from taskdecomp.validation import repeats_a_step

            open_ = self.constraint.closers()[1][: allowed.shape[1]]
            for row, earlier in enumerate(self.earlier):
                if self.abandoned[row] or not earlier or not (allowed[row] & open_).any():
                    continue
                description = _description(lines[row])
                if description and repeats_a_step(description, earlier):
                    rest = allowed[row] & ~open_
                    if closing or not rest.any():
                        self.abandoned[row] = True
                    else:
                        allowed[row] = rest

        def _no_list_markers(self, allowed: Any, lines: list[str]) -> None:
            """Per row whose description ends in a word like "2." or "3)": no token that starts
            with whitespace, so the description holds no step marker for the parser to split at."""
            space = None
            for row, line in enumerate(lines):
                description = _description(line)
                if description is None or "[" in line or not _MARKER_END.search(description):
                    continue
                if space is None:
                    space = self.constraint.space_tokens()[: allowed.shape[1]]
                allowed[row] &= ~space
                if not allowed[row].any():
                    self.abandoned[row] = True

        def _links(self, allowed: Any, lines: list[str]) -> None:
            """Per row whose step has named its tool: forbid the tokens the grammar allows that
            would make a line `links_fit` rejects; a row left with nothing is abandoned."""
            assert self.catalogue is not None
            texts, special = self.constraint.token_texts(), self.constraint.link_tokens()
            vocab = allowed.shape[1]
            for row, line in enumerate(lines):
                if self.abandoned[row] or tool_of(line) not in self.catalogue:
                    continue
                candidates = allowed[row].nonzero().flatten()
                if len(candidates) > _FEW:  # inside a literal argument: only a `]`, `<` or `;` matters
                    candidates = (allowed[row] & special[:vocab]).nonzero().flatten()
                bad = [
                    t
                    for t in candidates.tolist()
                    if not links_fit(line + texts[t], self.tools[row], self.catalogue)
                ]
                if bad:
                    allowed[row, bad] = False
                    if not allowed[row].any():
                        self.abandoned[row] = True

        def _closing(self, allowed: Any) -> Any:
            """Near the end of the budget: per row, EOS if the grammar allows it, else `]`, else
            `[`, else a token that starts a new word (towards the words a tag may follow)."""
            vocab = allowed.shape[1]
            close, open_, word = (m[:vocab] for m in self.constraint.closers())
            for row in range(allowed.shape[0]):
                for prefer in (self.eos_mask, close, open_, word):
                    narrowed = allowed[row] & prefer
                    if narrowed.any():
                        allowed[row] = narrowed
                        break
            return allowed

    return _Processor


def _description(line: str) -> str | None:
    """The description of a plan line ("3. Record the intro. [audio ...]"), None if the line
    is no numbered step; only the part before its tag."""
    number, _, rest = line.partition(". ")
    return rest.split("[")[0] if number.strip().isdigit() else None


def description_repetition_penalty(tokenizer: Any, penalty: float, prompt_length: int) -> Any:
    """A repetition penalty over the plan's own descriptions, for `generate`.

    transformers' `repetition_penalty` counts every token in the sequence, the prompt included,
    so it also pushes the model away from the request's own words, the file names that the steps
    should repeat ("Transcribe meeting.mp3"), and away from a modality already used in a tag.
    Measured on the hand-labelled requests, it lowered step F1 to zero. This one only
    counts tokens the model wrote in a description (outside `[...]` tags and line breaks) and only
    acts while a description is being written, so tags and copied request words are free; a
    description that starts to loop on earlier wording is what it discourages.
    """
    return _penalty_class()(tokenizer, penalty, prompt_length)


@cache
def _penalty_class() -> type:
    from transformers import LogitsProcessor

    class _DescriptionPenalty(LogitsProcessor):  # type: ignore[misc]
        def __init__(self, tokenizer: Any, penalty: float, prompt_length: int) -> None:
            self.penalty, self.start = penalty, prompt_length
            self.pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
            self.rows: list[tuple[bool, set[int]]] = []  # per row: inside a tag?, tokens seen

        def _piece(self, token: int) -> str:
            return self.pieces[token] if token < len(self.pieces) and self.pieces[token] else ""

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            import torch

            if not self.rows:
                self.rows = [(False, set()) for _ in range(input_ids.shape[0])]
            if input_ids.shape[1] > self.start:  # the token each row produced at the previous step
                for row in range(input_ids.shape[0]):
                    in_tag, seen = self.rows[row]
                    token = int(input_ids[row, -1])
                    piece = self._piece(token)
                    if "[" in piece:
                        in_tag = True
                    elif "]" in piece:
                        in_tag = False
                    elif not in_tag and "\n" not in piece and "Ċ" not in piece:
                        seen.add(token)
                    self.rows[row] = (in_tag, seen)
            for row, (in_tag, seen) in enumerate(self.rows):
                if in_tag or not seen:
                    continue
                ids = torch.tensor(sorted(seen), dtype=torch.long, device=scores.device)
                got = scores[row, ids]
                scores[row, ids] = torch.where(got > 0, got / self.penalty, got * self.penalty)
            return scores

    return _DescriptionPenalty
