"""Lexicon-based typing of a free-text step: which modality, which operation.

Used where steps arrive without tags: importing the original rows, scoring model output
that dropped its tags, and the evaluation metric's modality F1. Rules are ordered: a
transformation cue ("transcribe", "convert ... into audio") wins over generation/analysis
cues, and the modality of a transformation is the one it *produces*.
"""

from __future__ import annotations

import re

__all__ = ["infer_step"]

_MODALITY_WORDS: dict[str, tuple[str, ...]] = {
    "video": (
        "video",
        "animation",
        "animated",
        "footage",
        "clip",
        "film",
        "movie",
        "trailer",
        "vlog",
        "reel",
    ),
    "audio": (
        "audio",
        "podcast",
        "music",
        "song",
        "jingle",
        "voice",
        "speech",
        "sound",
        "narration",
        "narrate",
        "recording",
        "soundtrack",
        "melody",
        "audiobook",
        "voiceover",
        "voice-over",
    ),
    "image": (
        "image",
        "photo",
        "picture",
        "illustration",
        "poster",
        "infographic",
        "logo",
        "painting",
        "drawing",
        "diagram",
        "chart",
        "graphic",
        "visual",
        "artwork",
        "thumbnail",
        "flyer",
        "sketch",
        "storyboard",
        "banner",
        "portrait",
        "render",
        "3d model",
        "mockup",
    ),
}
_TRANSFORM_TO: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\btranscri(be|ption|bing)\b|\bcaption|\bsubtitle"), "text"),
    (re.compile(r"\b(text[- ]to[- ]speech|narrat(e|ion)|voice ?over|read aloud|dub)"), "audio"),
    (
        re.compile(
            r"\b(convert|turn|transform|adapt|render)\b.*\b(into|to)\b.*\b(audio|speech|podcast|narration|voice)"
        ),
        "audio",
    ),
    (
        re.compile(r"\b(convert|turn|transform|adapt|animate)\b.*\b(into|to)\b.*\b(video|animation|clip)"),
        "video",
    ),
    (
        re.compile(
            r"\b(convert|turn|transform|adapt|illustrate|visuali[sz]e)\b.*\b(into|to|as)\b.*\b(image|illustration|infographic|diagram|chart|picture)"
        ),
        "image",
    ),
    (
        re.compile(
            r"\b(convert|turn|transform)\b.*\b(into|to)\b.*\b(text|article|script|summary|transcript)"
        ),
        "text",
    ),
    (
        re.compile(
            r"\b(summari[sz]e|describe|translate)\b.*\b(video|audio|podcast|image|photo|recording|clip)"
        ),
        "text",
    ),
]
_ANALYSIS = re.compile(
    r"\b(analy[sz]e|analysis|evaluate|assess|measure|identify|classify|detect|recogni[sz]e|extract|"
    r"review|examine|inspect|compare|critique|monitor|track|survey|test|rate|score|check|understand|"
    r"study|inspect|interpret|gather feedback|collect feedback|research)"
)
_GENERATION = re.compile(
    r"\b(generate|create|write|compose|produce|design|draft|record|film|shoot|draw|paint|develop|"
    r"build|make|craft|synthesi[sz]e|render|edit|compile|prepare|plan|outline|publish|share|upload)"
)


def _modality(text: str) -> str:
    best, best_pos = "text", len(text) + 1
    for modality, words in _MODALITY_WORDS.items():
        for w in words:
            m = re.search(r"\b" + re.escape(w), text)
            if m and m.start() < best_pos:
                best, best_pos = modality, m.start()
    return best


def infer_step(description: str) -> tuple[str, str]:
    """(modality, operation) for one step's text."""
    text = description.lower()
    for pattern, produced in _TRANSFORM_TO:
        if pattern.search(text):
            return produced, "transformation"
    if _ANALYSIS.match(text.strip()) or (_ANALYSIS.search(text) and not _GENERATION.match(text.strip())):
        op = "analysis"
    else:
        op = "generation"
    if op == "analysis" and re.match(r"\s*(research|gather|collect)", text):
        return "text", "analysis"
    return _modality(text), op
