"""Start-up cost of every command: `--help` wall time, and what `import taskdecomp.hub` loads.

    .venv/bin/python benchmarks/cli_startup.py [--repeat 3]

Prints, per console script, the best of `--repeat` runs of `COMMAND --help` (target: under 1 s),
as a ratio against a bare `python -c pass` measured in the same run, and the import time of
`taskdecomp.hub` (which trainer and evaluation import to read a token) with the heavy modules
it pulls in (target: none of numba, matplotlib, datasets, pyarrow, torch).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (
    "build-dataset",
    "import-dataset",
    "publish-dataset",
    "train-adapter",
    "evaluate-adapter",
    "decompose",
)
HEAVY = ("numba", "matplotlib", "datasets", "pyarrow", "torch", "transformers", "peft", "trl")


def best(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    bin_dir = Path(sys.executable).parent
    baseline = best([sys.executable, "-c", "pass"], args.repeat)
    print(f"baseline `python -c pass`: {baseline:.3f} s")
    worst = 0.0
    for name in COMMANDS:
        t = best([str(bin_dir / name), "--help"], args.repeat)
        worst = max(worst, t)
        print(
            f"{name:17s} --help  {t:6.3f} s  ({t / baseline:5.1f}x baseline){'' if t < 1 else '  OVER 1 s'}"
        )
    code = (
        "import sys, time; t0 = time.perf_counter(); import taskdecomp.hub; dt = time.perf_counter() - t0; "
        f"print(round(dt, 3), ' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    print(f"import taskdecomp.hub: {out[0]} s; heavy modules loaded: {' '.join(out[1:]) or 'none'}")
    print(f"slowest --help: {worst:.3f} s (target < 1 s: {'met' if worst < 1 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
