"""Pushing to the Hugging Face Hub: one atomic commit per push.

`push_files` creates the repo (and branch) if missing, then makes ONE `HfApi.create_commit`
with the files to add and the deletions of remote files that match `delete_patterns` but are
no longer part of the upload (stale shards). The Hub applies a commit all or nothing, and it is
made against the revision's current head (`parent_commit`), so a concurrent push makes ours
fail instead of silently mixing two versions. LFS objects are uploaded before the commit; if an
upload fails, no commit is made and the branch stays where it was.

`publish_dataset` is that push for a built dataset folder: the regenerated card, its chart,
the stats and the Parquet shards. Tokens never appear in messages: the Hub client's errors are
reduced to one line (what happened and what to do) and passed through `redact`. Local files
change only after the push succeeded: the card and chart are rendered into a temporary folder,
pushed, then written into the dataset folder together with `.published.json`, the record of
what was pushed where that `published_repo_id` reads back (the trainer uses it to fill the
model card's `datasets:` when training from a local folder).

This module is imported by trainer/ and evaluation/ just for `resolve_token`/`push_files`, so it
stays light: `huggingface_hub` loads its parts lazily, and the dataset card (datasets, pyarrow,
matplotlib) is imported inside `publish_dataset` only.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, get_token

# `HTTPError` is the base of the client's errors: `HfHubHTTPError` (an answer with an error
# status) and the transport errors (connection refused, timeouts) it raises unwrapped
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, HTTPError, RepositoryNotFoundError
from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
from huggingface_hub.utils import validate_repo_id as _hf_validate_repo_id

from taskdecomp.errors import AuthError, ConfigError, HubError, InputError, redact
from taskdecomp.files import atomic_path, atomic_write_json, atomic_write_text
from taskdecomp.reporter import Reporter

__all__ = [
    "resolve_token",
    "validate_repo_id",
    "push_files",
    "publish_dataset",
    "dataset_url",
    "published_repo_id",
    "check_write_access",
    "PUBLISHED_RECORD",
]

PUBLISHED_RECORD = ".published.json"  # in a dataset folder: which repo its current files were pushed to

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


def _detail(exc: HfHubHTTPError) -> str:
    """The server's one-line reason, or "" when it sent a web page instead of a Hub error."""
    detail = _first_line(exc.server_message) or _first_line(str(exc))
    return "" if detail.lstrip().startswith("<") else detail


def _hub_error(exc: BaseException, repo_id: str, stage: str) -> Exception:
    """A client exception → one-line `AuthError`/`HubError` saying what happened and what to do
    (never the token)."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, HTTPError):
        cause = cause.__cause__ or cause.__context__
    # an LFS upload failed (after the client's retries): the commit was never sent
    upload = re.search(r"Error while uploading '(.+?)'", str(exc)) if isinstance(exc, RuntimeError) else None
    where = f"upload of {upload.group(1)} to {repo_id}" if upload else stage
    unchanged = "; nothing was committed, the repo is unchanged: retry the push"
    endpoint = constants.ENDPOINT
    check_endpoint = "check HF_ENDPOINT (unset it to use huggingface.co)"
    if isinstance(cause, HfHubHTTPError) and cause.response is not None:
        status = cause.response.status_code
        detail = _detail(cause)
        said = f"{status}: {detail}" if detail else str(status)
        if upload:
            return HubError(f"{where} failed ({said}){unchanged}")
        if status == 401:
            return AuthError(
                f"token rejected by {endpoint} ({said}): set a valid HF_TOKEN or run `hf auth login`"
            )
        if status == 403:
            return AuthError(f"{stage}: no write access to {repo_id} ({said}); use a token with write access")
        if isinstance(cause, RepositoryNotFoundError):
            return HubError(f"{stage}: repository {repo_id} not found ({status}); check --repo-id")
        if status == 412:
            return HubError(f"{stage}: {repo_id} changed during the push (412){unchanged}")
        suffix = unchanged if stage.startswith("commit") else ""
        if status >= 500:
            return HubError(
                f"{stage}: {endpoint} had a server error ({said}){suffix or '; nothing was pushed'}: "
                "retry in a few minutes"
            )
        if status == 404:
            return HubError(
                f"{stage}: {endpoint} has no such API (404), it does not look like a Hugging Face Hub"
                f"{suffix}: {check_endpoint}"
            )
        return HubError(
            f"{stage}: {endpoint} refused the request ({said}){suffix}; check --repo-id and HF_ENDPOINT"
        )
    if isinstance(cause, HTTPError):
        suffix = unchanged if upload or stage.startswith("commit") else ""
        return HubError(
            f"{where}: cannot reach {endpoint} ({cause.__class__.__name__}){suffix}; "
            f"check the network or HF_ENDPOINT"
        )
    if isinstance(exc, json.JSONDecodeError):  # e.g. a web page where the API's JSON should be
        return HubError(
            f"{where}: {endpoint} did not answer like a Hugging Face Hub (not JSON)"
            f"{unchanged if stage.startswith('commit') else ''}: {check_endpoint}"
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
    space_sdk: str | None = None,
) -> str:
    """Upload `files` ({path_in_repo: local path}) in one commit; returns the commit URL (the
    current head's when nothing changed: the client makes no empty commit). Remote files
    matching `delete_patterns` that are not in `files` are deleted in the same commit.
    `space_sdk` ("gradio", ...) is the SDK a new Space repo is created with."""
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
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk)
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
    except (HTTPError, RuntimeError, ValueError, OSError) as exc:
        raise _hub_error(exc, repo_id, stage) from None
    finally:
        if quiet_bars:
            enable_progress_bars()
    return redact(info.commit_url)


def _fingerprint(out_dir: Path) -> str:
    """sha256 over stats.json and the shards (names and bytes): what a publish pushes as data."""
    from taskdecomp.loader_script.dataset_card import shard_files  # datasets/pyarrow: not at import

    digest = hashlib.sha256()
    for path in [out_dir / "stats.json", *shard_files(out_dir)]:
        digest.update(path.relative_to(out_dir).as_posix().encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def check_write_access(repo_id: str, token: str) -> None:
    """A rejected or read-only token, or a namespace the token cannot write to, fails now rather
    than after training. Read-only calls (`whoami`): no repo is created before there is an
    adapter. Fine-grained tokens are left to the push itself (their scopes are per repo)."""
    from huggingface_hub import HfApi, constants

    try:
        me = HfApi(token=token).whoami()
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        if status == 401:
            raise AuthError(
                f"--push: token rejected by {constants.ENDPOINT} (401); set a valid HF_TOKEN or run `hf auth login`"
            ) from None
        raise HubError(f"--push: checking the token with {constants.ENDPOINT} failed ({status})") from None
    except (HTTPError, OSError) as exc:
        raise HubError(
            f"--push: cannot reach {constants.ENDPOINT} ({exc.__class__.__name__}); "
            "check the network or HF_ENDPOINT, or drop --push and push later"
        ) from None
    role = ((me.get("auth") or {}).get("accessToken") or {}).get("role")
    namespace = repo_id.split("/")[0]
    if role == "read":
        raise AuthError(f"--push: the token is read-only; use a token with write access to {namespace}")
    if role == "fineGrained":
        return
    writable = {me.get("name")} | {
        o.get("name") for o in me.get("orgs") or [] if o.get("roleInOrg", "write") not in ("read",)
    }
    if namespace not in writable:
        raise AuthError(
            f"--push: the token of {me.get('name')} cannot write to {namespace}/ "
            f"(it can write to: {', '.join(sorted(str(n) for n in writable if n))}); pass another --repo-id"
        )


# --- TRL / PEFT configs --------------------------------------------------------------------


def published_repo_id(folder: Path | str) -> str | None:
    """The Hub repo id the built dataset in `folder` was published to (`publish-dataset` or
    `build-dataset --push`), or None: never published, or rebuilt since (its stats or shards are
    not the ones that were pushed). Reads `folder/.published.json`; never touches the network."""
    folder = Path(folder)
    try:
        record = json.loads((folder / PUBLISHED_RECORD).read_text(encoding="utf-8"))
        repo_id, fingerprint = record["repo_id"], record["fingerprint"]
        if not isinstance(repo_id, str) or fingerprint != _fingerprint(folder):
            return None
        return validate_repo_id(repo_id)
    except (OSError, ValueError, KeyError, TypeError, ConfigError):
        return None


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
    stats and shards in one commit (deleting stale shards); returns the dataset's URL. On any
    failure `out_dir` is left exactly as it was."""
    # datasets, pyarrow and matplotlib: only when publishing (see the module docstring)
    from taskdecomp.loader_script.dataset_card import (
        CHART_NAME,
        check_shards,
        render_dataset_card,
        require_built,
        shard_files,
    )

    reporter = reporter or Reporter.silent()
    out_dir = Path(out_dir)
    repo_id = validate_repo_id(repo_id)
    stats = require_built(out_dir)
    token = token or resolve_token()  # before reading the shards: a missing token fails fast
    stats_text = (out_dir / "stats.json").read_text(encoding="utf-8")
    if redact(stats_text) != stats_text:  # stats carry the build config: never publish a key by accident
        raise InputError(
            f"{out_dir / 'stats.json'} contains what looks like an API key or token; remove it first"
        )
    check_shards(out_dir)  # a corrupt shard: one line before anything is uploaded
    fingerprint = _fingerprint(out_dir)
    with tempfile.TemporaryDirectory(prefix="taskdecomp-publish-") as tmp:
        staged_card, staged_chart = Path(tmp) / "README.md", Path(tmp) / CHART_NAME
        staged_card.write_text(
            render_dataset_card(out_dir, repo_id=repo_id, chart=staged_chart), encoding="utf-8"
        )
        files = {"README.md": staged_card, CHART_NAME: staged_chart, "stats.json": out_dir / "stats.json"}
        files.update({f"data/{p.name}": p for p in shard_files(out_dir)})
        n_rows = stats.n_rows
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
        # pushed: now the local card may name the repo, and the folder records where it went
        atomic_write_text(out_dir / "README.md", staged_card.read_text(encoding="utf-8"))
        with atomic_path(out_dir / CHART_NAME) as chart:
            shutil.copyfile(staged_chart, chart)
    record: dict[str, Any] = {"repo_id": repo_id, "revision": revision or "main", "commit": commit}
    atomic_write_json(out_dir / PUBLISHED_RECORD, {**record, "fingerprint": fingerprint})
    reporter.info(f"committed: {commit}")
    return dataset_url(repo_id)
