"""Generation throughput vs the account's bound, and billed tokens per accepted row.

1. Throughput: the fake OpenAI server on 127.0.0.1 answers with `--latency` and enforces an
   RPM and a TPM limit over a sliding `--window` (30 s: stricter than the per-minute accounting
   providers document, and shorter than a run, so bursts are punished). The OpenAI backend (real
   `openai` client, our limiter and retry policy) generates as fast as it can for `--seconds`
   in two scenarios: RPM-bound and TPM-bound. Printed: accepted rows/min ÷ the bound
   min(RPM, TPM / billed tokens per call) × rows per call (target ≥ 0.90), and the 429s.
2. Billed tokens per accepted row against the same server with the same failure rate (`--fail`
   of calls answer 500 or a truncated, invalid reply): our scheme (5 and 20 rows per call, structured
   output, retries) vs the original's (one call per 20 rows, no retries: a failed or invalid
   reply loses the whole call).

    .venv/bin/python benchmarks/generation_bound.py [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from pathlib import Path

import openai

from taskdecomp.dataset_builder.backend import GenerationRequest
from taskdecomp.dataset_builder.openai_backend import OpenAIBackend, build_messages, parse_candidates
from taskdecomp.errors import BackendError
from taskdecomp.schema import make_row, schema_errors
from taskdecomp.taxonomy import CELLS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_openai import FakeOpenAIProcess  # noqa: E402


def accepted(candidates: list[dict], request: GenerationRequest, source: str) -> int:
    """Rows that pass the schema and have exactly the requested cell's modalities."""
    n = 0
    for cand in candidates:
        row = make_row(cand, source)
        n += not schema_errors(row) and tuple(row["modalities"]) == request.cell.modalities
    return n


async def generate_for(backend: OpenAIBackend, seconds: float, rows_per_call: int, start: int = 0):
    """Keep `concurrency` requests going until `seconds` have passed; (rows, calls, elapsed)."""
    counter = itertools.count(start)
    deadline = time.monotonic() + seconds
    rows = calls = failed = 0
    t0 = time.monotonic()

    async def worker() -> None:
        nonlocal rows, calls, failed
        while time.monotonic() < deadline:
            i = next(counter)
            request = GenerationRequest(f"bench-{i}", CELLS[i % len(CELLS)], rows_per_call, seed=i)
            try:
                res = await backend.generate(request)
            except BackendError:
                failed += 1
                continue
            calls += 1
            rows += accepted(res.candidates, request, backend.source)

    await asyncio.gather(*(worker() for _ in range(backend.limiter.concurrency)))
    return rows, calls, failed, time.monotonic() - t0


def throughput(
    name: str,
    *,
    rpm: float | None,
    tpm: float | None,
    seconds: float,
    latency: float,
    n: int,
    window: float = 30.0,
) -> float:
    with FakeOpenAIProcess(latency=latency, rpm=rpm, tpm=tpm, window=window) as fake:
        backend = OpenAIBackend(
            "gpt-4o",
            base_url=fake.base_url,
            api_key="sk-bench",
            rows_per_call=n,
            concurrency=16,
            rpm=rpm,
            tpm=tpm,
        )

        async def go():
            try:
                return await generate_for(backend, seconds, n)
            finally:
                await backend.aclose()

        rows, calls, failed, elapsed = asyncio.run(go())
        stats = fake.stats()
        billed_calls = stats["status_200"]
        per_call = (stats["prompt_tokens"] + stats["completion_tokens"]) / max(1, billed_calls)
        limits = [x for x in (rpm, tpm and tpm / per_call) if x]
        bound = min(limits) * n
        achieved = rows / (elapsed / 60)
        ratio = achieved / bound
        print(
            f"{name:<10} rpm={rpm or '-'} tpm={tpm or '-'} tokens/call={per_call:.0f} calls={calls} "
            f"failed={failed} 429s={stats['status_429']} in {elapsed:.1f}s\n"
            f"{'':<10} achieved {achieved:.0f} rows/min / bound {bound:.0f} rows/min = {ratio:.3f} (target >= 0.90)"
        )
        return ratio


async def original_scheme(base_url: str, calls: int) -> tuple[int, int]:
    """One call per 20 rows, no retries, no structured output; any failure loses the call."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    rows = 0
    try:
        for i in range(calls):
            request = GenerationRequest(f"orig-{i}", CELLS[i % len(CELLS)], 20, seed=i)
            messages = build_messages(request, json_mode=True)
            try:
                reply = await client.chat.completions.create(
                    model="gpt-4-turbo-preview", messages=messages, temperature=1
                )
                rows += accepted(parse_candidates(reply.choices[0].message.content), request, "openai:orig")
            except Exception:
                continue  # the original had no retries: the call's tokens are lost
    finally:
        await client.close()
    return rows, calls


def billed_per_row(fail: float, latency: float) -> None:
    print(f"\nbilled tokens per accepted row, {fail:.0%} of calls fail (500 or truncated invalid JSON):")
    target_rows = 1000
    results = {}

    def failing_server() -> FakeOpenAIProcess:  # the same seeded failures for every scheme
        return FakeOpenAIProcess(
            latency=latency / 4, failure_rate=fail, failure_kinds=("500", "truncated"), seed=7
        )

    for per_call in (5, 20):
        with failing_server() as fake:
            backend = OpenAIBackend(
                "gpt-4o",
                base_url=fake.base_url,
                api_key="sk-bench",
                rows_per_call=per_call,
                backoff_base=0.01,
            )

            async def go(backend=backend, per_call=per_call):
                rows = 0
                try:
                    reqs = [
                        GenerationRequest(f"c-{i}", CELLS[i % len(CELLS)], per_call, i)
                        for i in range(target_rows // per_call)
                    ]
                    for res, req in zip(
                        await asyncio.gather(*(backend.generate(r) for r in reqs)), reqs, strict=True
                    ):
                        rows += accepted(res.candidates, req, backend.source)
                finally:
                    await backend.aclose()
                return rows

            rows = asyncio.run(go())
            stats = fake.stats()
            billed = stats["prompt_tokens"] + stats["completion_tokens"]
            results[f"ours ({per_call}/call, retries)"] = (billed, rows, stats["chat_requests"])
    with failing_server() as fake:
        rows, _ = asyncio.run(original_scheme(fake.base_url, target_rows // 20))
        stats = fake.stats()
        billed = stats["prompt_tokens"] + stats["completion_tokens"]
        results["original (20/call, no retries)"] = (billed, rows, stats["chat_requests"])
    base = results["original (20/call, no retries)"]
    base_tpr = base[0] / max(1, base[1])
    for name, (billed, rows, calls) in results.items():
        tpr = billed / max(1, rows)
        print(
            f"  {name:<32} calls={calls:<4} rows={rows:<4} of {target_rows} wanted  billed={billed:<7} "
            f"tokens/row={tpr:.0f}  ratio vs original={tpr / base_tpr:.2f}  yield={rows / target_rows:.0%}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="seconds per throughput scenario (two run)")
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--rows-per-call", type=int, default=10)
    ap.add_argument("--fail", type=float, default=0.1)
    ap.add_argument(
        "--window", type=float, default=30.0, help="server's sliding rate-limit window in seconds"
    )
    args = ap.parse_args(argv)
    n = args.rows_per_call
    print(
        f"fake server latency {args.latency * 1000:.0f} ms, rows per call {n}, {args.seconds:.0f}s per scenario"
    )
    r1 = throughput(
        "RPM-bound", rpm=300, tpm=None, seconds=args.seconds, latency=args.latency, n=n, window=args.window
    )
    r2 = throughput(
        "TPM-bound", rpm=600, tpm=200_000, seconds=args.seconds, latency=args.latency, n=n, window=args.window
    )
    print(f"min ratio: {min(r1, r2):.3f} ({'OK' if min(r1, r2) >= 0.9 else 'BELOW'} target 0.90)")
    billed_per_row(args.fail, args.latency)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
