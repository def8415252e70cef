"""The package's import layers: no cycle between modules, and the light stages stay light.

The contracts between stages are import-linter's (`make lint`); these check what it does not:
module-level cycles anywhere in the package, and what `import taskdecomp.hub` really loads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_GRAPH = """
import json, grimp
g = grimp.build_graph("taskdecomp", exclude_type_checking_imports=True)
print(json.dumps({m: sorted(g.find_modules_directly_imported_by(m)) for m in g.modules}))
"""


def _cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges.get(root, [])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif nxt not in index:
                index[nxt] = low[nxt] = counter
                counter += 1
                stack.append(nxt)
                on.add(nxt)
                work.append((nxt, iter(edges.get(nxt, []))))
            elif nxt in on:
                low[node] = min(low[node], index[nxt])
    return out


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": []}) == []


def test_no_import_cycle_between_modules() -> None:
    tree = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "package_tree.py")], capture_output=True, text=True, check=True
    ).stdout.strip()
    proc = subprocess.run(
        [sys.executable, "-c", _GRAPH], cwd=tree, capture_output=True, text=True, check=True
    )
    edges = {
        m: [d for d in deps if d.startswith("taskdecomp")] for m, deps in json.loads(proc.stdout).items()
    }
    stages = {m for m in edges if m.count(".") >= 2}
    assert len(stages) > 30, "the graph misses the stage folders"  # the package-dir mapping was followed
    # A package's __init__ re-exporting its own modules is not a cycle between modules.
    edges = {m: [d for d in deps if not m.startswith(d + ".")] for m, deps in edges.items()}
    assert _cycles(edges) == []


def test_light_imports_stay_light() -> None:
    code = (
        "import sys, taskdecomp.hub, taskdecomp.hub.cli, taskdecomp.trainer.cli, taskdecomp.evaluation.cli,"
        " taskdecomp.planner.cli, taskdecomp.dataset_builder.cli;"
        " print(' '.join(sorted(m for m in ('numba','matplotlib','datasets','pyarrow','torch','transformers',"
        "'peft','trl') if m in sys.modules)))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.split() == []
