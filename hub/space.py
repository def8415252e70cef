"""`publish-space`: the app (`taskdecomp.app`) pushed as a Hugging Face Space, in one commit.

A Space is a repo the Hub runs: `README.md` (a card whose YAML says `sdk: gradio`, the Gradio
version, `app_file: app.py`, and the dataset and adapter the app points to), `app.py` (builds
`taskdecomp.app.build_app(...)` with them) and `requirements.txt` (what the Space installs
before it runs `app.py`).

Where the Space gets the toolkit from:

- `--requirement SPEC` (e.g. `taskdecomp @ git+https://github.com/you/taskdecomp@v0.1.0`, or
  `taskdecomp==0.1.0` once it is on an index): `requirements.txt` lists it and gradio;
- otherwise the Space is self-contained: the installed package's source (every module, template
  and data file of `taskdecomp` and its sub-packages, laid out as they import) is pushed under
  `taskdecomp/`, where `app.py` imports it from, and `requirements.txt` lists the package's own
  dependencies and gradio.

Everything goes in ONE `create_commit` (`taskdecomp.hub.publish.push_files`, which creates the
Space with `space_sdk="gradio"` if it is new): a failed upload leaves the Space as it was.
Tokens, errors and redaction are handled as for `publish-dataset`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path

from taskdecomp.errors import ConfigError
from taskdecomp.hub.publish import push_files, resolve_token, validate_repo_id
from taskdecomp.reporter import Reporter

__all__ = [
    "GRADIO_VERSION",
    "SPACE_SDK",
    "SUBPACKAGES",
    "SpaceSpec",
    "space_files",
    "publish_space",
    "space_url",
    "check_hub_id",
]

SPACE_SDK = "gradio"
GRADIO_VERSION = "6.31.0"  # the `app` extra's pin in pyproject.toml (tests/test_space.py checks)
# The sub-packages of `taskdecomp` (pyproject's package-dir); a self-contained Space carries them all.
SUBPACKAGES = (
    "dataset_builder",
    "loader_script",
    "trainer",
    "hub",
    "prompts",
    "recipes",
    "evaluation",
    "planner",
    "app",
)
_SOURCE_SUFFIXES = {".py", ".j2", ".json", ".yaml", ".yml", ".txt", ".md"}  # pyproject's package-data
_TEMPLATE = Path(__file__).with_name("space_card.md.j2")


@dataclass(frozen=True)
class SpaceSpec:
    """What the Space shows: its repo, the dataset and adapter it points to, how it installs."""

    repo_id: str
    dataset: str | None = None
    adapter: str | None = None
    requirement: str | None = None  # None: a self-contained Space (the package source is pushed)
    title: str = "Task decomposition demo"

    @property
    def planner(self) -> str:
        return "adapter" if self.adapter else "heuristic"


def space_url(repo_id: str) -> str:
    from huggingface_hub import constants

    return f"{constants.ENDPOINT}/spaces/{repo_id}"


def check_hub_id(value: str | None, flag: str, kind: str, publish: str) -> str | None:
    """A Hub id for `flag` (`--dataset`/`--adapter`): a Space cannot read this machine's folders."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if Path(value).expanduser().exists() or value.startswith((".", "/", "~")):
        raise ConfigError(
            f"{flag} {value} is a local path: a Space can only read the Hub; push it with {publish} "
            f"and pass its {kind} id (USER/NAME)"
        )
    try:
        return validate_repo_id(value)
    except ConfigError:
        raise ConfigError(f"{flag} {value!r} is not a Hub {kind} id: expected USER/NAME") from None


def _version() -> str:
    try:
        return importlib.metadata.version("taskdecomp")
    except importlib.metadata.PackageNotFoundError:
        return "0.1.0"


def _dependencies() -> list[str]:
    """The installed package's runtime requirements (no extras), for a self-contained Space."""
    try:
        requires = importlib.metadata.requires("taskdecomp") or []
    except importlib.metadata.PackageNotFoundError:
        requires = []
    return [r for r in requires if "extra ==" not in r.replace("extra==", "extra ==")]


def _package_dirs() -> dict[str, Path]:
    """{folder in the Space: source folder} for `taskdecomp` and each sub-package (following the
    package-dir mapping, editable install or not; nothing is imported but `taskdecomp`)."""
    dirs: dict[str, Path] = {}
    for name in ("", *SUBPACKAGES):
        module = "taskdecomp" + (f".{name}" if name else "")
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"cannot find the package {module} to put in the Space; reinstall taskdecomp")
        dirs["taskdecomp" + (f"/{name}" if name else "")] = Path(list(spec.submodule_search_locations)[0])
    return dirs


def _source_files() -> dict[str, Path]:
    """{path in the Space: local file}: the package's modules, templates and data files."""
    files: dict[str, Path] = {}
    for prefix, folder in _package_dirs().items():
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if (
                path.is_file()
                and path.suffix in _SOURCE_SUFFIXES
                and not any(p == "__pycache__" or p.startswith(".") for p in rel.parts)
                and (prefix != "taskdecomp" or len(rel.parts) == 1 or rel.parts[0] == "catalogues")
            ):
                files[f"{prefix}/{rel.as_posix()}"] = path
    return files


def _app_py(spec: SpaceSpec) -> str:
    where = (
        "the taskdecomp package requirements.txt installs"
        if spec.requirement
        else "the copy of taskdecomp in this Space (taskdecomp/)"
    )
    return f'''"""{spec.title}: the taskdecomp app as a Hugging Face Space (pushed by `publish-space`).

Explore {spec.dataset or "a dataset (type its Hub id)"} and plan tasks with {spec.adapter or "the keyword heuristic"}.
The app is `taskdecomp.app` from {where}.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from taskdecomp.app import build_app  # noqa: E402

DATASET = {spec.dataset!r}
ADAPTER = {spec.adapter!r}

demo = build_app(dataset=DATASET, planner={spec.planner!r}, adapter=ADAPTER)

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=2).launch(ssr_mode=False)
'''


def _requirements(spec: SpaceSpec) -> str:
    lines = ["# Installed by the Space before app.py runs (written by publish-space)."]
    if spec.requirement:
        lines.append(spec.requirement)
    else:
        lines.append(f"# taskdecomp {_version()} itself is in taskdecomp/; these are its dependencies:")
        lines += _dependencies()
    lines.append(f"gradio=={GRADIO_VERSION}")
    return "\n".join(lines) + "\n"


def _card(spec: SpaceSpec) -> str:
    from huggingface_hub import SpaceCard, SpaceCardData

    data = SpaceCardData(
        title=spec.title,
        sdk=SPACE_SDK,
        sdk_version=GRADIO_VERSION,
        app_file="app.py",
        license="mit",
        datasets=[spec.dataset] if spec.dataset else None,
        models=[spec.adapter] if spec.adapter else None,
        tags=["task-decomposition", "planning", "multimodal", "taskdecomp"],
        emoji="🧩",
        colorFrom="blue",
        colorTo="green",
        pinned=False,
        short_description="Multi-modal task decomposition: plans drawn as graphs",
    )
    card = SpaceCard.from_template(
        data,
        template_str=_TEMPLATE.read_text(encoding="utf-8"),
        spec=spec,
        repo_id=spec.repo_id,
        version=_version(),
        gradio_version=GRADIO_VERSION,
        self_contained=spec.requirement is None,
    )
    text = str(card)
    return text if text.endswith("\n") else text + "\n"


def space_files(spec: SpaceSpec) -> dict[str, str | Path]:
    """{path in the Space: text or local file}: README.md, app.py, requirements.txt and, for a
    self-contained Space, the package source under taskdecomp/."""
    files: dict[str, str | Path] = {
        "README.md": _card(spec),
        "app.py": _app_py(spec),
        "requirements.txt": _requirements(spec),
    }
    if spec.requirement is None:
        files.update(_source_files())
    return files


def publish_space(
    spec: SpaceSpec,
    *,
    private: bool = False,
    token: str | None = None,
    reporter: Reporter | None = None,
    check_repos: bool = True,
) -> str:
    """Push the Space in one commit (creating it with the gradio SDK if new); returns its URL.
    With `check_repos`, the dataset and adapter must exist on the Hub first (one quick request
    each), so a typo fails before anything is pushed."""
    reporter = reporter or Reporter.silent()
    repo_id = validate_repo_id(spec.repo_id)
    token = token or resolve_token()
    if check_repos:
        from taskdecomp.hub_probe import check_hub_repo

        if spec.dataset:
            check_hub_repo(spec.dataset, "dataset", "--dataset")
        if spec.adapter:
            check_hub_repo(spec.adapter, "model", "--adapter")
    contents = space_files(spec)
    with tempfile.TemporaryDirectory(prefix="taskdecomp-space-") as tmp:
        local: dict[str, Path] = {}
        for path, content in contents.items():
            if isinstance(content, Path):
                local[path] = content
            else:
                staged = Path(tmp) / path
                staged.parent.mkdir(parents=True, exist_ok=True)
                staged.write_text(content, encoding="utf-8")
                local[path] = staged
        what = ", ".join(p for p in (spec.dataset, spec.adapter) if p) or "no dataset or adapter"
        commit = push_files(
            repo_id,
            local,
            repo_type="space",
            space_sdk=SPACE_SDK,
            token=token,
            private=private,
            # a re-publish replaces the vendored source (modules that no longer exist go too), and
            # a Space switched to --requirement drops it, so it cannot shadow the installed package
            delete_patterns=["taskdecomp/*"],
            commit_message=f"Publish the taskdecomp app ({what}) with publish-space",
            reporter=reporter,
        )
    reporter.info(f"committed: {commit}")
    return space_url(repo_id)
