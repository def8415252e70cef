"""Lay the installed package out on disk for the tools that read source files, not imports.

The user's top-level folders (`dataset_builder/`, `hub/`, ...) install as sub-packages of
`taskdecomp` through `[tool.setuptools] package-dir`. Python's import system follows that
mapping (an editable install adds a finder), but mypy and import-linter (grimp) walk a package's
folder and never see the stage folders. This writes `build/package-tree/taskdecomp/`: links to
`taskdecomp/`'s own files and one link per mapped folder, read from pyproject.toml (the one place
the layout is declared), so `make lint` type-checks and layer-checks every shipped module.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "package-tree"


def main() -> int:
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    mapping: dict[str, str] = setup["package-dir"]
    if TREE.exists():
        shutil.rmtree(TREE)
    top = TREE / "taskdecomp"
    top.mkdir(parents=True)
    for entry in (ROOT / mapping["taskdecomp"]).iterdir():
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry)
    for package, folder in mapping.items():
        if package != "taskdecomp":
            (TREE / package.replace(".", "/")).symlink_to(ROOT / folder, target_is_directory=True)
    print(TREE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
