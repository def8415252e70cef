"""The crash-safe build journal under `<out>/.build/`.

`build.json` names the build (its fingerprint: everything that changes which rows a request
produces), and `journal.jsonl` is append-only, one JSON object per line, fsync'd:

    {"t": "result", "id": ..., "cell": "audio+text/chain", "k": 3, "candidates": [...],
     "usage": {...}, "cost": 0.0123, "attempts": 1}
    {"t": "batch", "batch_id": "batch_abc", "requests": [[id, cell, k], ...]}
    {"t": "batch_done", "batch_id": "batch_abc"}
    {"t": "spend", "id": ..., "usage": {...}, "cost": 0.0123}   # billed by a request that failed

A `spend` record keeps what a failed request was billed (unusable replies, retries): it yields
no rows, so the request is sent again, but its cost counts in stats.json and in --max-cost.

Only raw results are journaled; which rows were accepted, rejected or de-duplicated is
*derived* by replaying them through the same deterministic scheduler. So a re-run after
kill -9 reaches exactly the state it would have had, and no journaled request is sent twice.
A torn last line (the process died mid-write) is dropped; damage anywhere else is an error.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskdecomp.errors import ConfigError, InputError
from taskdecomp.files import atomic_write_json

from .backend import GenerationResult, Usage

__all__ = ["JOURNAL_DIR", "Journal", "JournalState"]

# the build journal's folder inside --out: its presence marks a folder as a (resumable) build
JOURNAL_DIR = ".build"

VERSION = 1


@dataclass
class JournalState:
    results: dict[str, GenerationResult] = field(default_factory=dict)
    batches: list[dict[str, Any]] = field(
        default_factory=list
    )  # created, not yet done: {"batch_id", "requests"}
    spent_usage: Usage = field(default_factory=Usage)  # billed to requests that failed
    spent_cost: float = 0.0


class Journal:
    def __init__(self, out: Path, fingerprint: dict[str, Any], *, fsync_every: int = 1) -> None:
        self.dir = out / JOURNAL_DIR
        self.path = self.dir / "journal.jsonl"
        self.meta_path = self.dir / "build.json"
        self.fingerprint = fingerprint
        self.fsync_every = fsync_every
        self._fh: Any = None
        self._armed = False
        self._unsynced = 0

    # -- opening ---------------------------------------------------------------------------
    def check_compatible(self) -> bool:
        """True if a journal of this same build exists; raise if it is another build's."""
        if not self.meta_path.exists():
            return False
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            raise InputError(
                f"{self.meta_path} is unreadable; delete {self.dir} to start this build over"
            ) from None
        theirs = meta.get("fingerprint", {})
        if theirs != self.fingerprint:
            diff = sorted(
                k for k in set(theirs) | set(self.fingerprint) if theirs.get(k) != self.fingerprint.get(k)
            )
            shown = ", ".join(f"{k}={theirs.get(k)!r} (now {self.fingerprint.get(k)!r})" for k in diff[:3])
            raise ConfigError(
                f"{self.dir.parent} holds a different build ({shown}); use another --out, "
                f"re-run with the same settings to resume, or delete that folder"
            )
        return True

    def load(self) -> JournalState:
        state = JournalState()
        if not self.path.exists():
            return state
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        good_bytes = 0
        for i, line in enumerate(lines):
            if not line.strip():
                good_bytes += len(line) + 1
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if i == len(lines) - 1 or all(not x.strip() for x in lines[i + 1 :]):
                    break  # torn tail: the writer died mid-line; this request will be redone
                raise InputError(
                    f"{self.path} is corrupt at line {i + 1}; delete {self.dir} to start over"
                ) from None
            good_bytes += len(line) + 1
            if rec.get("t") == "result":
                state.results[rec["id"]] = GenerationResult(
                    request_id=rec["id"],
                    candidates=rec["candidates"],
                    usage=Usage(**rec.get("usage", {})),
                    cost_usd=float(rec.get("cost", 0.0)),
                    attempts=int(rec.get("attempts", 1)),
                )
            elif rec.get("t") == "spend":
                state.spent_usage = state.spent_usage + Usage(**rec.get("usage", {}))
                state.spent_cost += float(rec.get("cost", 0.0))
            elif rec.get("t") == "batch":
                state.batches.append(rec)
            elif rec.get("t") == "batch_done":
                state.batches = [b for b in state.batches if b["batch_id"] != rec["batch_id"]]
        if good_bytes < len(raw):
            # cut the torn tail so the next append starts on a clean line
            with open(self.path, "r+b") as fh:
                fh.truncate(min(good_bytes, len(raw)))
        return state

    def open(self) -> None:
        """Arm the journal. Nothing is created on disk until the first record is appended: a
        build that fails before anything is journaled (bad URL, 401, ...) must leave no
        `.build/` behind, or the corrected command would be refused as a different build."""
        self._armed = True

    def _create(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.meta_path.exists():
            atomic_write_json(self.meta_path, {"version": VERSION, "fingerprint": self.fingerprint})
        # held open for the whole build (closed in `close`), so not a `with` block
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    # -- appending -------------------------------------------------------------------------
    def _append(self, rec: dict[str, Any], *, force_sync: bool = False) -> None:
        assert self._armed, "journal not open"
        if self._fh is None:
            self._create()
        self._fh.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._unsynced += 1
        if force_sync or self._unsynced >= self.fsync_every:
            self.sync()

    def sync(self) -> None:
        if self._fh is not None and self._unsynced:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._unsynced = 0

    def add_result(self, result: GenerationResult, cell_key: str, k: int) -> None:
        self._append(
            {
                "t": "result",
                "id": result.request_id,
                "cell": cell_key,
                "k": k,
                "candidates": result.candidates,
                "usage": {
                    "prompt_tokens": result.usage.prompt_tokens,
                    "completion_tokens": result.usage.completion_tokens,
                },
                "cost": round(result.cost_usd, 8),
                "attempts": result.attempts,
            }
        )

    def add_spend(self, request_id: str, usage: Usage, cost_usd: float) -> None:
        """What a request that failed for good was billed; synced at once (it is money)."""
        self._append(
            {
                "t": "spend",
                "id": request_id,
                "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens},
                "cost": round(cost_usd, 8),
            },
            force_sync=True,
        )

    def add_batch(self, batch_id: str, requests: list[tuple[str, str, int]]) -> None:
        """`requests`: (request id, cell key, k). A batch costs money the moment it exists:
        always synced at once."""
        self._append({"t": "batch", "batch_id": batch_id, "requests": requests}, force_sync=True)

    def batch_done(self, batch_id: str) -> None:
        self._append({"t": "batch_done", "batch_id": batch_id}, force_sync=True)

    def close(self) -> None:
        self._armed = False
        if self._fh is not None:
            self.sync()
            self._fh.close()
            self._fh = None
