"""Lexicon-based typing of a free-text step: which modality, which operation.

Used where steps arrive without tags: importing the original rows, scoring model output
that dropped its tags, and the evaluation metric's modality F1.

Steps are imperative sentences ("Record a podcast episode about ..."), so we read them the
way a person does: the *lead verbs* ("Research and write", "Film and edit") say what kind of
work it is, and the *object* noun phrase right after them (up to the first preposition or
clause, "a script" in "Write a script for a motivational speech") says what is produced or
examined. The rest of the sentence is only a fallback: a modality word in a trailing
"... for the video" or ", adding captions" does not decide the step.

Operation, first rule that fires:
- transformation: existing content re-expressed in another modality: transcription,
  captions/subtitles, translation, narration / voice-over / text-to-speech of a text,
  "convert/turn/adapt X into Y" where Y's modality differs from X's, summarising or
  describing non-text media in words. The modality is the one *produced*.
- analysis: an analysis lead verb ("analyze", "assess", "track and analyze"), "conduct a
  survey", "gather feedback", or a writing verb whose object is an analysis ("write an
  analysis of ..."). The modality is what is examined; feedback, metrics, comments and other
  collected data count as text.
- generation: everything else; the modality is the object's, else the verb's habit ("film"
  → video, "record" → audio, "photograph" → image), else the first modality word anywhere,
  else text.

Inside the object phrase the head of the first compound noun wins, since English puts the
head last: "podcast script" is text, "audio guide" is audio, "copy and visuals" is text,
"the cooking video following the script" is video; a medium adjective beats its noun
("audio narrative" is audio). The word lists live in `lexicon.yaml`.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import yaml

__all__ = ["infer_step", "modality_mentions"]

# --- vocabulary (lexicon.yaml) -----------------------------------------------------------------

_VOCAB: dict[str, Any] = yaml.safe_load(
    resources.files("taskdecomp").joinpath("lexicon.yaml").read_text(encoding="utf-8")
)
_NOUN_MODALITY: dict[str, str] = {w: m for m, ws in _VOCAB["nouns"].items() for w in ws}
# Longest terms first, so "photo essay" wins over "photo" and "essay".
_NOUN_RE = re.compile(
    r"\b(" + "|".join(re.escape(w) for w in sorted(_NOUN_MODALITY, key=len, reverse=True)) + r")(?:s|es)?\b"
)
_MEDIUM_ADJECTIVES = frozenset(_VOCAB["medium_adjectives"])
_ANALYSIS_VERBS = frozenset(_VOCAB["analysis_verbs"])
_GENERATION_VERBS = frozenset(_VOCAB["generation_verbs"])
_CONVERT_VERBS = frozenset(_VOCAB["convert_verbs"])
_COLLECT_VERBS = frozenset(_VOCAB["collect_verbs"])
_CONDUCT_VERBS = frozenset(_VOCAB["conduct_verbs"])
_VERB_MODALITY: dict[str, str] = dict(_VOCAB["verb_modality"])
_KNOWN_VERBS = _ANALYSIS_VERBS | _GENERATION_VERBS | _CONVERT_VERBS | _COLLECT_VERBS | _CONDUCT_VERBS

# Collected data: analysing it is text analysis, whatever medium it is about.
_DATA = re.compile(
    r"\b(feedback|engagement|comments?|metrics|data|results|responses|analytics|traffic|reach|performance|"
    r"impact|surveys?|questionnaires?|interviews?|ratings|reviews|statistics|stats|trends|questions|shares|"
    r"likes|views|downloads|sales|scores|reactions|opinions|sentiment|usage|behaviou?r|participation|"
    r"attendance|polls?|answers|findings|demand|market)\b"
)

_ANALYSIS_NOUNS = re.compile(
    r"\b(analysis|analyses|assessment|evaluation|critique|comparison|survey|study|audit|test|poll|"
    r"interview|focus group|research|investigation|review session)\b"
)

# --- sentence parts ----------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9][a-z0-9'’\-]*")
_FILLER = frozenset(["then", "next", "finally", "first", "afterwards", "lastly", "also", "please", "and"])
# Where the object phrase ends.
_BOUNDARY = re.compile(
    r"\b(for|of|about|on|that|which|who|to|from|based|using|with|in|into|by|as|featuring|showcasing|"
    r"highlighting|demonstrating|including|focusing|focused|covering|describing|explaining|capturing|"
    r"representing|illustrating|showing|detailing|discussing|depicting|behind|between|among|within|"
    r"across|at|via|through|while|where|so|after|before|during|under|over|around|against|like|"
    r"targeting|aimed|aiming|designed|inspired|set|integrating|combining|incorporating|mixing|blending|"
    r"pairing|promoting|teaching|introducing|comparing|outlining|listing|presenting|summari[sz]ing)\b|[,;:(]"
)
# "a series of photographs": the head is the photographs.
_QUANTIFIER = re.compile(
    r"\b(?:a |an |the )?(?:short |small |large |new )?(?:series|set|collection|number|variety|range|pair|"
    r"couple|selection|handful|sequence|bunch|few|lot|group|compilation|batch) of\b"
)
# A trailing participle clause (", adding captions") describes manner, not the step's product.
_TRAILING = re.compile(r",\s+(?:\w+ing|and then|while|so that|ensuring)\b.*$")
_SPEECH = re.compile(
    r"\b(text[- ]to[- ]speech|narrat(?:e|es|ed|ing|ion|ions)|voice ?-?overs?|read (?:\w+ )?aloud|"
    r"dub(?:s|bed|bing)?|audiobooks?|(?:audio|spoken) (?:version|summary|summaries|reading|adaptation)s?)\b"
)
_TEXT_SOURCE = re.compile(
    r"\b(?:based on|from|of) (?:the |this |that |our |its |each )?(?:\w+ ){0,2}"
    r"(script|text|story|article|guide|transcript|poem|book|essay|post|report|summary|speech)s?\b"
)


def _lead(words: list[str]) -> tuple[list[str], int]:
    """The leading verb group and the index after it: 'research and write' → (['research',
    'write'], 3). 'use AI to compose ...' skips to 'compose'."""
    i = 0
    while i < len(words) - 1 and words[i] in _FILLER:
        i += 1
    if i < len(words) and words[i] in ("use", "utilize", "utilise", "leverage", "employ"):
        for j in range(i + 1, min(i + 6, len(words) - 1)):
            if words[j] == "to":
                i = j + 1
                break
    if i >= len(words):
        return [], i
    verbs, i = [words[i]], i + 1
    while i + 1 < len(words) and words[i] in ("and", "or", "&", "then") and words[i + 1] in _KNOWN_VERBS:
        verbs.append(words[i + 1])
        i += 2
    if words[i - 1] in _CONDUCT_VERBS and i < len(words) and words[i] == "out":  # "carry out"
        i += 1
    return verbs, i


def _phrase(text: str) -> str:
    """The object phrase: from the start of `text` to the first boundary (quantifiers skipped)."""
    text = _QUANTIFIER.sub(" ", text).strip()
    m = _BOUNDARY.search(text)
    return text[: m.start()] if m else text


def _phrase_modality(phrase: str) -> str | None:
    """The head modality of a noun phrase: in the first conjunct that has modality words, the
    last word of the first compound ('podcast episode script' → text, 'the cooking video
    following the script' → video, 'copy and visuals' → text), unless a medium adjective
    names the artefact's own medium ('audio narrative' → audio, 'written guide' → text)."""
    for conjunct in re.split(r"\band\b|&|/|\bor\b", phrase):
        found = list(_NOUN_RE.finditer(conjunct))
        if not found:
            continue
        head = found[0]
        for m in found[1:]:
            if len(_WORD.findall(conjunct[head.end() : m.start()])) > 1:
                break  # not part of the same compound noun
            if head.group(1) in _MEDIUM_ADJECTIVES:
                break
            head = m
        return _NOUN_MODALITY[head.group(1)]
    return None


def _first_modality(text: str) -> str | None:
    m = _NOUN_RE.search(text)
    return _NOUN_MODALITY[m.group(1)] if m else None


def _rest_after(text: str, words_consumed: int) -> str:
    """`text` after the first `words_consumed` words (character-accurate)."""
    matches = list(_WORD.finditer(text))
    if words_consumed >= len(matches):
        return ""
    return text[matches[words_consumed].start() :]


# --- the rules ---------------------------------------------------------------------------------


def infer_step(description: str) -> tuple[str, str]:
    """(modality, operation) for one step's text."""
    text = description.lower().replace("’", "'")
    main = _TRAILING.sub("", text)
    words = _WORD.findall(main)
    verbs, after = _lead(words)
    verb = verbs[-1] if verbs else ""
    rest = _rest_after(main, after)
    obj = _phrase(rest)
    obj_mod = _phrase_modality(obj)
    # the product named after 'into' (after 'to'/'as' as well for conversion verbs)
    target = r"into|to|as" if verb in _CONVERT_VERBS else r"into"
    into = re.search(rf"\b(?:{target})\s+(?:an? |the )?(.*)$", rest)
    into_mod = _phrase_modality(_phrase(into.group(1))) if into else None

    # transformation -----------------------------------------------------------------------
    # "turn the transcript into a video": the product after 'into' decides
    if verb in _CONVERT_VERBS and verb != "transcribe" and into_mod:
        source = obj_mod or "text"
        if source != into_mod:
            return into_mod, "transformation"
    if re.search(r"\btranscri(?:be|bes|bed|bing|ption|ptions|pt|pts)\b", main):
        return "text", "transformation"
    if verb in ("caption", "subtitle") or re.search(r"\b(captions?|subtitles?|closed captions?)\b", obj):
        return "text", "transformation"
    if verb == "translate":
        return (into_mod if into_mod and into_mod != "text" else "text"), "transformation"
    if _SPEECH.search(" ".join(verbs) + " " + obj):
        return "audio", "transformation"
    if (
        (obj_mod or _VERB_MODALITY.get(verb)) == "audio"
        and _TEXT_SOURCE.search(rest)
        and verb not in _ANALYSIS_VERBS
    ):
        return "audio", "transformation"  # an audio guide "based on the script" is read aloud
    if verb in ("summarize", "summarise", "describe", "explain", "recap"):
        # "summarize the article's findings in an infographic": text → image
        shown = re.search(r"\b(?:in|into|as)\s+(?:an? |the )?(.*)$", rest)
        shown_mod = _phrase_modality(_phrase(shown.group(1))) if shown else None
        source = obj_mod or _first_modality(rest) or "text"
        if shown_mod and shown_mod != source:
            return shown_mod, "transformation"
        if verb != "explain" and source != "text":
            return "text", "transformation"
    summary = re.search(r"\b(summary|summaries|recap|synopsis|description|descriptions)\b", obj)
    if summary and verb not in _ANALYSIS_VERBS:
        about = re.match(r"\s*(?:of|for)\s+(.*)$", rest[len(obj) :])
        if about and (_phrase_modality(_phrase(about.group(1))) or "text") != "text" and obj_mod == "text":
            return "text", "transformation"  # "a summary of the podcast episode" is audio → text

    # analysis -----------------------------------------------------------------------------
    analysis = (
        verb in _ANALYSIS_VERBS
        or (verb in _COLLECT_VERBS and _DATA.search(obj) is not None)
        or (verb in _CONDUCT_VERBS and _ANALYSIS_NOUNS.search(obj) is not None)
        or (
            verb in _GENERATION_VERBS
            and re.search(r"\b(analysis|analyses|assessment|evaluation|critique)\b", obj)
        )
    )
    if analysis:
        if _DATA.search(obj):
            return "text", "analysis"
        mod = obj_mod if obj_mod is not None else _first_modality(rest)
        return (mod or "text"), "analysis"

    # generation ---------------------------------------------------------------------------
    if into_mod and verb in _GENERATION_VERBS | _CONVERT_VERBS:
        # "combine the slogans and images into a poster": the product follows 'into'
        return into_mod, "generation"
    mod = obj_mod or _VERB_MODALITY.get(verb) or _first_modality(rest) or "text"
    return mod, "generation"


def modality_mentions(text: str) -> list[tuple[int, str]]:
    """(character offset, modality) of every modality noun in `text` ("podcast" → audio,
    "thumbnail" → image), in order: the keyword part of the heuristic planner."""
    low = text.lower().replace("’", "'")
    return [(m.start(), _NOUN_MODALITY[m.group(1)]) for m in _NOUN_RE.finditer(low)]
