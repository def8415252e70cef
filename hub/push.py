"""Pushing to the Hugging Face Hub: one atomic commit per push.

`push_files` creates the repo (and branch) if missing, then makes ONE `HfApi.create_commit`
with the files to add and the deletions of remote files that match `delete_patterns` but are
no longer part of the upload (stale shards). The Hub applies a commit all or nothing, and it is
made against the revision's current head (`parent_commit`), so a concurrent push makes ours
fail instead of silently mixing two versions. LFS objects are uploaded before the commit; if an
upload fails, no commit is made and the branch stays where it was.

`publish_dataset` is that push for a built dataset folder: the regenerated card, its chart,
the stats and the Parquet shards. Tokens never appear in messages: the Hub client's errors are
reduced to one line and passed through `redact`.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

import httpx2 as httpx  # the HTTP client huggingface_hub 2.x is built on
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RepositoryNotFoundError
from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
from huggingface_hub.utils import validate_repo_id as _hf_validate_repo_id

from taskdecomp.errors import AuthError, ConfigError, HubError, InputError, redact
from taskdecomp.loader_script.card import require_built, shard_files, write_dataset_card
from taskdecomp.reporter import Reporter

__all__ = ["resolve_token", "validate_repo_id", "push_files", "publish_dataset", "dataset_url"]

NO_TOKEN = "no Hugging Face token: set HF_TOKEN or run `hf auth login`"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def resolve_token() -> str:
    """`HF_TOKEN`, else the saved HF login; `AuthError` when there is neither."""
    token = os.environ.get("HF_TOKEN", "").strip()
    if not token:
        try:
            token = (get_token() or "").strip()
        except Exception as exc:  # e.g. a failed OIDC exchange: say so, without details that may hold secrets
            raise AuthError(f"{NO_TOKEN} ({exc.__class__.__name__} while reading the login)") from None
    if not token:
        raise AuthError(NO_TOKEN)
    return token


def validate_repo_id(repo_id: str) -> str:
    """`namespace/name` as the Hub accepts it; anything else is a `ConfigError` (exit 2)."""
    repo_id = (repo_id or "").strip()
    hint = "expected USER/NAME, e.g. alice/task-decomposition"
    if not _REPO_ID.match(repo_id):
        raise ConfigError(f"invalid repo id {repo_id!r}: {hint}")
    try:
        _hf_validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ConfigError(f"invalid repo id {repo_id!r}: {str(exc).splitlines()[0]} ({hint})") from None
    return repo_id


def dataset_url(repo_id: str) -> str:
    return f"{constants.ENDPOINT}/datasets/{repo_id}"


def _first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def _hub_error(exc: BaseException, repo_id: str, stage: str) -> Exception:
    """A client exception → one-line `AuthError`/`HubError` (never the token)."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, HfHubHTTPError | httpx.HTTPError):
        cause = cause.__cause__ or cause.__context__
    # an LFS upload failed (after the client's retries): the commit was never sent
    upload = re.search(r"Error while uploading '(.+?)'", str(exc)) if isinstance(exc, RuntimeError) else None
    where = f"upload of {upload.group(1)} to {repo_id}" if upload else stage
    unchanged = "; nothing was committed, the repo is unchanged: retry the push"
    if isinstance(cause, HfHubHTTPError) and cause.response is not None:
        status = cause.response.status_code
        detail = _first_line(cause.server_message) or _first_line(str(cause))
        if upload:
            return HubError(f"{where} failed ({status}: {detail}){unchanged}")
        if status == 401:
            return AuthError(
                f"token rejected by {constants.ENDPOINT} (401: {detail}): set a valid HF_TOKEN or run `hf auth login`"
            )
        if status == 403:
            return AuthError(
                f"{stage}: no write access to {repo_id} (403: {detail}); use a token with write access"
            )
        if isinstance(cause, RepositoryNotFoundError):
            return HubError(f"{stage}: repository {repo_id} not found ({status}); check --repo-id")
        if status == 412:
            return HubError(f"{stage}: {repo_id} changed during the push (412){unchanged}")
        suffix = unchanged if stage.startswith("commit") else ""
        return HubError(f"{stage}: the Hub answered {status} ({detail}){suffix}")
    if isinstance(cause, httpx.HTTPError):
        suffix = unchanged if upload or stage.startswith("commit") else ""
        return HubError(
            f"{where}: cannot reach {constants.ENDPOINT} ({cause.__class__.__name__}); "
            f"check the network or HF_ENDPOINT{suffix}"
        )
    if isinstance(exc, ValueError):  # e.g. the Hub rejected the README's YAML metadata
        return HubError(f"{where}: {' '.join(str(exc).splitlines()[:2])}")
    return HubError(f"{where}: {exc.__class__.__name__}: {_first_line(str(exc))}")


def push_files(
    repo_id: str,
    files: dict[str, Path],
    *,
    repo_type: str,
    token: str,
    private: bool = False,
    revision: str | None = None,
    delete_patterns: list[str] | None = None,
    commit_message: str,
    reporter: Reporter | None = None,
) -> str:
    """Upload `files` ({path_in_repo: local path}) in one commit; returns the commit URL (the
    current head's when nothing changed: the client makes no empty commit). Remote files
    matching `delete_patterns` that are not in `files` are deleted in the same commit."""
    reporter = reporter or Reporter.silent()
    repo_id = validate_repo_id(repo_id)
    missing = sorted(str(p) for p in files.values() if not Path(p).is_file())
    if missing:
        raise InputError(
            f"cannot push {missing[0]}: no such file ({len(missing)} missing); nothing was pushed"
        )
    api = HfApi(token=token)
    stage = f"creating {repo_type} repo {repo_id}"
    # the client's per-file upload bars only make sense on a terminal we are allowed to talk to
    quiet_bars = not (reporter.enabled and reporter.is_tty) and not are_progress_bars_disabled()
    if quiet_bars:
        disable_progress_bars()
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        if revision:
            stage = f"creating branch {revision} of {repo_id}"
            api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
        stage = f"reading {repo_id}"
        head = api.repo_info(repo_id, repo_type=repo_type, revision=revision)
        if private and head.private is False:
            reporter.warn(
                f"{repo_id} already exists and is public: --private only applies when creating a repo"
            )
        remote = api.list_repo_files(repo_id, repo_type=repo_type, revision=head.sha)
        stale = sorted(
            p
            for p in remote
            if p not in files and any(fnmatch.fnmatch(p, pat) for pat in delete_patterns or [])
        )
        operations: list[CommitOperationAdd | CommitOperationDelete] = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(local))
            for path, local in sorted(files.items())
        ]
        operations += [CommitOperationDelete(path_in_repo=p) for p in stale]
        size = sum(Path(p).stat().st_size for p in files.values())
        reporter.info(
            f"pushing {len(files)} files ({size / 1e6:.2f} MB) to {repo_id}"
            + (f"@{revision}" if revision else "")
            + (f", deleting {len(stale)} stale: {', '.join(stale)}" if stale else "")
        )
        stage = f"commit to {repo_id}"
        info = api.create_commit(
            repo_id,
            operations=operations,
            commit_message=commit_message,
            repo_type=repo_type,
            revision=revision,
            parent_commit=head.sha,
        )
    except (HfHubHTTPError, httpx.HTTPError, RuntimeError, ValueError, OSError) as exc:
        raise _hub_error(exc, repo_id, stage) from None
    finally:
        if quiet_bars:
            enable_progress_bars()
    return redact(info.commit_url)


def publish_dataset(
    out_dir: Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    reporter: Reporter | None = None,
    token: str | None = None,
) -> str:
    """Regenerate the card of the built dataset in `out_dir` for `repo_id` and push card, chart,
    stats and shards in one commit (deleting stale shards); returns the dataset's URL."""
    reporter = reporter or Reporter.silent()
    out_dir = Path(out_dir)
    repo_id = validate_repo_id(repo_id)
    stats = require_built(out_dir)
    token = token or resolve_token()  # before writing anything: a missing token changes nothing
    stats_text = (out_dir / "stats.json").read_text(encoding="utf-8")
    if redact(stats_text) != stats_text:  # stats carry the build config: never publish a key by accident
        raise InputError(
            f"{out_dir / 'stats.json'} contains what looks like an API key or token; remove it first"
        )
    card = write_dataset_card(out_dir, repo_id=repo_id)
    files = {
        "README.md": card,
        "coverage.png": out_dir / "coverage.png",
        "stats.json": out_dir / "stats.json",
    }
    files.update({f"data/{p.name}": p for p in shard_files(out_dir)})
    n_rows = stats.get("n_rows", "?")
    commit = push_files(
        repo_id,
        files,
        repo_type="dataset",
        token=token,
        private=private,
        revision=revision,
        delete_patterns=["data/*.parquet"],
        commit_message=f"Publish {n_rows} rows ({len(files) - 3} shards) with taskdecomp",
        reporter=reporter,
    )
    reporter.info(f"committed: {commit}")
    return dataset_url(repo_id)
