"""`pip install .` (not only editable) must carry the templates and never shadow `hub`/`trainer`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def source_copy(dest: Path) -> Path:
    """The project's sources (pyproject, README, every top-level package folder) in `dest`:
    setuptools builds in the source tree, so building the checkout itself would leave
    `build/` there."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for package in sorted(p.parent for p in REPO.glob("*/__init__.py")):
        shutil.copytree(package, dest / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_wheel_carries_templates_and_installs_under_one_package(tmp_path):
    src = source_copy(tmp_path / "src")
    wheel_dir = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheel_dir),
            str(src),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = wheel_dir.glob("taskdecomp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.startswith("taskdecomp-")}
    assert top_level == {"taskdecomp"}, top_level  # no top-level `hub` or `trainer` package
    for needed in (
        "taskdecomp/row.schema.json",
        "taskdecomp/prompts/decompose_system.txt",
        "taskdecomp/loader_script/features.py",
        "taskdecomp/recipes/smollm2-135m-cpu.yaml",
        "taskdecomp/hub/space_card.md.j2",
        "taskdecomp/app/ui.py",
        "taskdecomp/mermaid.py",
    ):
        assert needed in names, needed
    assert any(n.startswith("taskdecomp/prompts/") and n.endswith(".j2") for n in names)
    entry_points = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    )
    for script in (
        "build-dataset",
        "import-dataset",
        "publish-dataset",
        "train-adapter",
        "evaluate-adapter",
        "decompose",
        "publish-space",
        "taskdecomp-app",
    ):
        assert f"{script} = taskdecomp." in entry_points

    # the installed (non-editable) copy reads its templates from the install location
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )
    code = (
        "import taskdecomp, taskdecomp.prompts as p, taskdecomp.schema as s;"
        f"assert taskdecomp.__file__.startswith({str(target)!r}), taskdecomp.__file__;"
        "assert 'decompose' in p.read('decompose_system.txt');"
        "assert s.row_schema()['title']"
    )
    subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"], check=True
    )
