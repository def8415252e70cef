"""A small Hugging Face Hub on 127.0.0.1 for tests: the real `huggingface_hub` and `datasets`
clients talk to it through `HF_ENDPOINT`.

It speaks the part of the protocol those clients use (huggingface_hub 2.x with
`HF_HUB_DISABLE_XET=1`, so uploads take the plain LFS path):

    GET  /api/whoami-v2                              who the token belongs to
    POST /api/repos/create                           409 + {"url"} when it exists; a Space needs its `sdk`
    POST /api/validate-yaml                          README front matter must be YAML
    GET  /api/{type}s/{repo}[/revision/{rev}]        repo info (sha, siblings, cardData)
    POST /api/{type}s/{repo}/preupload/{rev}         regular or LFS per file, + remote oid
    POST /{prefix}{repo}.git/info/lfs/objects/batch  LFS upload links (which authorise themselves)
    PUT  /lfs-upload/{ticket}                        the LFS object (size + sha256 checked)
    POST /api/{type}s/{repo}/commit/{rev}            NDJSON: header, file, lfsFile, deletedFile, deletedFolder
    GET  /api/{type}s/{repo}/tree/{rev}[/{path}]     listing (recursive or not)
    POST /api/{type}s/{repo}/paths-info/{rev}        info for given paths
    GET  /api/{type}s/{repo}/commits/{rev}           history, newest first
    GET  /api/{type}s/{repo}/refs                    branches
    POST /api/{type}s/{repo}/branch/{branch}         create a branch (409 if it exists)
    HEAD|GET /{prefix}{repo}/resolve/{rev}/{path}    file bytes, X-Repo-Commit, ETag, X-Linked-*, Range → 206

Repos live in memory with their full commit history; a commit is all or nothing and is refused
when it names an LFS object the server does not hold, so a push whose upload failed leaves the
branch where it was. `fail_lfs_uploads(after=n)` makes every LFS upload after the n-th fail;
`fail_requests(status)` answers every request (or those whose path matches) with an error or,
with `html=True`, with a web page, like a dead or wrong HF_ENDPOINT would.
Errors carry `X-Error-Code` / `X-Error-Message` the way the real Hub does, because the client
maps them to its exception classes.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

__all__ = ["HubServer", "DEFAULT_TOKEN", "DEFAULT_USER"]

DEFAULT_USER = "alice"
DEFAULT_TOKEN = "hf_testTokenAlice0123456789abcdef"
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
LFS_PATTERNS = ("*.parquet", "*.png", "*.jpg", "*.bin", "*.safetensors", "*.gguf", "*.pt", "*.arrow", "*.zip")
LFS_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
SPACE_SDKS = ("gradio", "docker", "static")
REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Blob:
    size: int
    oid: str  # git blob id (of the pointer file for LFS objects)
    content: bytes | None = None  # regular files
    sha256: str | None = None  # LFS files: the object lives in the repo's LFS store

    def tree_entry(self, path: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": self.oid, "size": self.size, "path": path}
        if self.sha256:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": 134}
        return entry


@dataclass
class Commit:
    id: str
    title: str
    message: str
    date: str
    author: str
    files: dict[str, Blob]


@dataclass
class Repo:
    type: str
    id: str
    private: bool
    created: str
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit id
    commits: dict[str, Commit] = field(default_factory=dict)
    parents: dict[str, str | None] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> bytes
    sdk: str | None = None  # a Space's SDK (gradio, docker, static)

    def resolve(self, rev: str) -> Commit | None:
        cid = self.branches.get(rev, rev)
        if cid in self.commits:
            return self.commits[cid]
        matches = [c for c in self.commits if len(rev) >= 7 and c.startswith(rev)]
        return self.commits[matches[0]] if len(matches) == 1 else None

    def history(self, cid: str) -> list[Commit]:
        out = []
        cur: str | None = cid
        while cur is not None:
            out.append(self.commits[cur])
            cur = self.parents[cur]
        return out


class HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, body: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.body = status, message, code, body


class HubServer:
    """`with HubServer() as hub:` → `hub.endpoint`, `hub.token`; repos in `hub.repos`."""

    def __init__(self, tokens: dict[str, str] | None = None) -> None:
        self.tokens = dict(tokens) if tokens is not None else {DEFAULT_TOKEN: DEFAULT_USER}
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lock = threading.RLock()
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status): for assertions/debugging
        self.tickets: dict[str, tuple[tuple[str, str], str, int]] = {}
        self._fail_after: int | None = None
        self._fail_status = 403
        self._uploads_ok = 0
        self._fault: tuple[int, bool, re.Pattern[str] | None, int | None] | None = None
        self._counter = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------
    @property
    def token(self) -> str:
        return next(iter(self.tokens))

    @property
    def endpoint(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> HubServer:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """The environment a client process needs to use this server."""
        return {"HF_ENDPOINT": self.endpoint, "HF_TOKEN": self.token, "HF_HUB_DISABLE_XET": "1"}

    def point_clients_here(self, monkeypatch: Any) -> None:
        """Aim this process's huggingface_hub at the server for one test (pytest `monkeypatch`).

        huggingface_hub reads HF_ENDPOINT and HF_HUB_DISABLE_XET into `constants` when it is
        imported, so setting the environment is not enough in-process: patch the constants
        too. Subprocesses started with `os.environ` get the environment and need nothing else.
        """
        from huggingface_hub import constants

        for key, value in self.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(constants, "ENDPOINT", self.endpoint)
        monkeypatch.setattr(
            constants,
            "HUGGINGFACE_CO_URL_TEMPLATE",
            self.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        )
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)

    # --- test controls ----------------------------------------------------------------
    def fail_lfs_uploads(self, after: int | None = 0, status: int = 403) -> None:
        """Every LFS upload after the first `after` successful ones fails with `status` (None:
        heal). 403 is what storage answers to an expired upload link and is not retried; a
        5xx is retried by the client (5 times, with backoff) before it gives up."""
        with self.lock:
            self._fail_after, self._fail_status = after, status
            self._uploads_ok = 0

    def fail_requests(
        self,
        status: int | None = 500,
        *,
        html: bool = False,
        match: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer every request whose path matches the regex `match` (default: all) with `status`
        (None: heal): a Hub-style JSON error, or with `html=True` a web page (what a proxy or a
        wrong HF_ENDPOINT sends). `retry_after` adds a `Retry-After` header, which the client's
        retries of 5xx honour (0 keeps tests fast)."""
        with self.lock:
            self._fault = (
                None if status is None else (status, html, re.compile(match) if match else None, retry_after)
            )

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> dict[str, bytes]:
        """{path: bytes} at `revision` (for assertions)."""
        with self.lock:
            repo = self.repo(repo_id, repo_type)
            commit = repo.resolve(revision)
            assert commit is not None
            return {
                p: b.content if b.content is not None else repo.lfs[b.sha256 or ""]
                for p, b in commit.files.items()
            }

    # --- state changes (under the lock) ---------------------------------------------
    def _new_commit_id(self, *parts: str) -> str:
        self._counter += 1
        return hashlib.sha1("\0".join((*parts, str(self._counter), str(time.time_ns()))).encode()).hexdigest()

    def _add_commit(
        self, repo: Repo, branch: str, title: str, message: str, author: str, files: dict[str, Blob]
    ) -> Commit:
        parent = repo.branches.get(branch)
        commit = Commit(self._new_commit_id(repo.id, branch, title), title, message, _now(), author, files)
        repo.commits[commit.id] = commit
        repo.parents[commit.id] = parent
        repo.branches[branch] = commit.id
        return commit

    def create_repo(
        self,
        repo_type: str,
        repo_id: str,
        *,
        private: bool = False,
        author: str = DEFAULT_USER,
        sdk: str | None = None,
    ) -> Repo:
        with self.lock:
            repo = Repo(repo_type, repo_id, private, _now(), sdk=sdk)
            self.repos[(repo_type, repo_id)] = repo
            blob = Blob(len(GITATTRIBUTES), _git_sha1(GITATTRIBUTES), content=GITATTRIBUTES)
            self._add_commit(repo, "main", "initial commit", "", author, {".gitattributes": blob})
            return repo

    def url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.endpoint}/{PREFIX[repo_type]}{repo_id}"


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    # --- plumbing ---------------------------------------------------------------------
    def _body(self) -> bytes:
        return self.body

    def _read_body(self) -> bytes:
        # always read the whole body first: an error answered before reading it would leave
        # the rest on a keep-alive connection, to be parsed as the next request
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False
    ) -> None:
        # logged before answering: a client that got its answer finds the request in the log
        self.hub.requests.append((self.command, self.path, status))
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        headers.setdefault("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, err: HttpError, extra: dict[str, str] | None = None) -> None:
        headers = {"X-Error-Message": err.message, **(extra or {})}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._send(
            err.status,
            json.dumps({"error": err.message, **(err.body or {})}).encode(),
            headers,
            head=self.command == "HEAD",
        )

    def _user(self, required: bool = False) -> str | None:
        """The token's user; a wrong token is always a 401, a missing one only when required."""
        auth = self.headers.get("Authorization", "")
        if not auth:
            if required:
                raise HttpError(401, "You must be authenticated to do this: pass a token", None)
            return None
        token = auth.removeprefix("Bearer ").strip()
        user = self.hub.tokens.get(token)
        if user is None:
            raise HttpError(401, INVALID_CREDENTIALS)
        return user

    def _repo(self, repo_type: str, repo_id: str, *, write: bool = False) -> Repo:
        user = self._user(required=write)
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and repo_id.split("/")[0] != user):
            raise HttpError(404, "Repository not found", "RepoNotFound")
        if write and repo_id.split("/")[0] != user:
            raise HttpError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    def _commit(self, repo: Repo, rev: str) -> Commit:
        commit = repo.resolve(unquote(rev))
        if commit is None:
            raise HttpError(404, f"Invalid rev id: {unquote(rev)}", "RevisionNotFound")
        return commit

    def _dispatch(self) -> None:
        self.body = self._read_body()
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        fault = self.hub._fault
        if fault is not None and (fault[2] is None or fault[2].search(url.path)):
            status, html, _, retry_after = fault
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            if html:
                page = f"<!DOCTYPE html><html><body><h1>{status}</h1><p>Welcome to nginx!</p></body></html>"
                return self._send(status, page.encode(), {"Content-Type": "text/html", **headers})
            reason = "Internal Error - We're working hard to fix this as soon as possible!"
            return self._error(HttpError(status, reason if status >= 500 else "Not Found"), headers)
        try:
            with self.hub.lock:
                self._route(url.path)
        except HttpError as err:
            self._error(err)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _dispatch

    # --- routing --------------------------------------------------------------------------
    API = re.compile(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+?)(?:/(\w[\w-]*)(?:/([^/]+)(/.*)?)?)?$")
    RESOLVE = re.compile(r"^/(datasets/|spaces/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
    LFS_BATCH = re.compile(r"^/(datasets/|spaces/)?([^/]+/[^/]+?)\.git/info/lfs/objects/batch$")

    def _route(self, path: str) -> None:
        m, c = self.command, None
        if path == "/api/whoami-v2" and m == "GET":
            return self._whoami()
        if path == "/api/agent-harnesses" and m == "GET":
            return self._json(200, {"standardEnvVars": [], "harnesses": {}})
        if path == "/api/repos/create" and m == "POST":
            return self._create_repo()
        if path == "/api/validate-yaml" and m == "POST":
            return self._validate_yaml()
        if path.startswith("/lfs-upload/") and m == "PUT":
            return self._lfs_put(path.rsplit("/", 1)[1])
        if (c := self.LFS_BATCH.match(path)) and m == "POST":
            kind = {"datasets/": "dataset", "spaces/": "space"}.get(c.group(1) or "", "model")
            return self._lfs_batch(self._repo(kind, unquote(c.group(2)), write=True))
        if (c := self.RESOLVE.match(path)) and m in ("GET", "HEAD"):
            kind = {"datasets/": "dataset", "spaces/": "space"}.get(c.group(1) or "", "model")
            return self._resolve(self._repo(kind, c.group(2)), c.group(3), unquote(c.group(4)))
        if c := self.API.match(path):
            kind, repo_id, action, rev, rest = c.group(1)[:-1], c.group(2), c.group(3), c.group(4), c.group(5)
            rest = unquote(rest.lstrip("/")) if rest else ""
            write = (action in ("preupload", "commit", "branch")) and m == "POST"
            repo = self._repo(kind, repo_id, write=write)
            if action is None and m == "GET":
                return self._info(repo, "main")
            if action == "revision" and rev and m == "GET":
                return self._info(repo, rev)
            if action == "preupload" and rev and m == "POST":
                return self._preupload(repo, rev)
            if action == "commit" and rev and m == "POST":
                return self._commit_post(repo, rev)
            if action == "tree" and rev and m == "GET":
                return self._tree(repo, rev, rest)
            if action == "paths-info" and rev and m == "POST":
                return self._paths_info(repo, rev)
            if action == "commits" and rev and m == "GET":
                return self._commits(repo, rev)
            if action == "refs" and m == "GET":
                return self._refs(repo)
            if action == "branch" and rev and m == "POST":
                return self._branch(repo, unquote(rev))
        raise HttpError(404, f"Sorry, we can't find the page you are looking for ({m} {path})")

    # --- account and repos ------------------------------------------------------------
    def _whoami(self) -> None:
        user = self._user(required=True)
        self._json(
            200,
            {
                "type": "user",
                "id": user,
                "name": user,
                "fullname": user.title(),
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "tests", "role": "write"}},
            },
        )

    def _create_repo(self) -> None:
        user = self._user(required=True)
        payload = json.loads(self._body() or b"{}")
        kind = payload.get("type") or "model"
        name, org = payload.get("name") or "", payload.get("organization") or user
        if kind not in PREFIX or not REPO_NAME.match(name) or not REPO_NAME.match(org or ""):
            raise HttpError(400, f"Invalid repo name {org}/{name}")
        if org != user:
            raise HttpError(403, f"You don't have the rights to create a repo under {org}")
        repo_id = f"{org}/{name}"
        url = self.hub.url(kind, repo_id)
        if (kind, repo_id) in self.hub.repos:
            raise HttpError(409, f"You already created this {kind} repo", body={"url": url})
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        sdk = payload.get("sdk")
        if kind == "space" and sdk not in SPACE_SDKS:  # as the Hub: a Space says how it runs
            raise HttpError(
                400, f"Invalid or missing sdk for a Space: {sdk!r} (one of {', '.join(SPACE_SDKS)})"
            )
        self.hub.create_repo(kind, repo_id, private=private, author=user, sdk=sdk)
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self) -> None:
        payload = json.loads(self._body() or b"{}")
        content = payload.get("content") or ""
        errors = []
        m = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.S)
        if m:
            try:
                meta = yaml.safe_load(m.group(1))
                if meta is not None and not isinstance(meta, dict):
                    errors.append({"message": "metadata must be a YAML mapping"})
                elif meta and payload.get("repoType") == "dataset":
                    for cfg in meta.get("configs") or []:
                        if not isinstance(cfg, dict) or "config_name" not in cfg:
                            errors.append({"message": '"configs" items must have a "config_name"'})
            except yaml.YAMLError as exc:
                errors.append({"message": f"Invalid YAML: {exc}"})
        if errors:
            return self._json(400, {"errors": errors, "error": errors[0]["message"]})
        self._json(
            200, {"errors": [], "warnings": [] if m else [{"message": "empty or missing yaml metadata"}]}
        )

    def _info(self, repo: Repo, rev: str) -> None:
        commit = self._commit(repo, rev)
        blobs = self.query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for path, blob in sorted(commit.files.items()):
            sib: dict[str, Any] = {"rfilename": path}
            if blobs:
                sib.update(size=blob.size, blobId=blob.oid)
                if blob.sha256:
                    sib["lfs"] = {"sha256": blob.sha256, "size": blob.size, "pointerSize": 134}
            siblings.append(sib)
        card_data = None
        if "README.md" in commit.files and commit.files["README.md"].content is not None:
            m = re.match(r"^---\s*\n(.*?)\n---", commit.files["README.md"].content.decode(), re.S)
            card_data = yaml.safe_load(m.group(1)) if m else None
        self._json(
            200,
            {
                "_id": repo.id,
                "id": repo.id,
                "author": repo.id.split("/")[0],
                "sha": commit.id,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "createdAt": repo.created,
                "lastModified": commit.date,
                "tags": [],
                "cardData": card_data,
                "siblings": siblings,
                **({"sdk": repo.sdk} if repo.type == "space" else {}),
            },
        )

    # --- uploads ---------------------------------------------------------------------------
    def _preupload(self, repo: Repo, rev: str) -> None:
        commit = self._commit(repo, rev)
        files = []
        for f in json.loads(self._body() or b"{}").get("files", []):
            sample = base64.b64decode(f.get("sample") or "")
            lfs = (
                f.get("size", 0) >= LFS_SIZE
                or b"\0" in sample
                or any(fnmatch.fnmatch(f["path"], p) for p in LFS_PATTERNS)
            )
            existing = commit.files.get(f["path"])
            # what the client compares with its local oid to skip unchanged files
            oid = (existing.sha256 or existing.oid) if existing is not None else None
            files.append(
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        self._json(200, {"files": files, "commitOid": commit.id})

    def _lfs_batch(self, repo: Repo) -> None:
        payload = json.loads(self._body() or b"{}")
        if payload.get("operation") != "upload":
            raise HttpError(400, "only uploads are supported")
        objects = []
        for obj in payload.get("objects", []):
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in repo.lfs:
                ticket = secrets.token_urlsafe(16)  # the link authorises the upload by itself
                self.hub.tickets[ticket] = ((repo.type, repo.id), obj["oid"], obj["size"])
                entry["actions"] = {
                    "upload": {"href": f"{self.hub.endpoint}/lfs-upload/{ticket}", "expires_in": 3600}
                }
            objects.append(entry)
        self._json(
            200,
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            {"Content-Type": "application/vnd.git-lfs+json"},
        )

    def _lfs_put(self, ticket: str) -> None:
        data = self._body()
        if ticket not in self.hub.tickets:
            raise HttpError(403, "upload link is invalid or expired")
        hub = self.hub
        if hub._fail_after is not None and hub._uploads_ok >= hub._fail_after:
            raise HttpError(hub._fail_status, "injected fault: storage refused the upload")
        key, oid, size = hub.tickets[ticket]
        if len(data) != size or hashlib.sha256(data).hexdigest() != oid:
            raise HttpError(400, "uploaded content does not match its oid/size")
        hub.repos[key].lfs[oid] = data
        hub._uploads_ok += 1
        del hub.tickets[ticket]
        self._send(200, b"", {"ETag": f'"{oid}"'})

    def _commit_post(self, repo: Repo, rev: str) -> None:
        branch = unquote(rev)
        user = self._user(required=True) or ""
        if "create_pr" in self.query:
            raise HttpError(400, "pull requests are not supported by this test server")
        if branch not in repo.branches:
            raise HttpError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HttpError(400, "the first line of a commit must be its header")
        header = lines[0]["value"]
        parent = repo.branches[branch]
        if header.get("parentCommit") and not parent.startswith(header["parentCommit"]):
            raise HttpError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(repo.commits[parent].files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"]
            if key == "file":
                data = (
                    base64.b64decode(value["content"])
                    if value.get("encoding") == "base64"
                    else value["content"].encode()
                )
                files[path] = Blob(len(data), _git_sha1(data), content=data)
            elif key == "lfsFile":
                data = repo.lfs.get(value["oid"])
                if data is None:  # all or nothing: never point at an object we do not hold
                    raise HttpError(
                        422,
                        f"Your push was rejected because an LFS pointer pointed to a file that "
                        f"does not exist: {path} ({value['oid']})",
                    )
                pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{value['oid']}\nsize {len(data)}\n"
                files[path] = Blob(len(data), _git_sha1(pointer.encode()), sha256=value["oid"])
            elif key == "deletedFile":
                if path not in files:
                    raise HttpError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                gone = [p for p in files if p.startswith(prefix)]
                if not gone:
                    raise HttpError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in gone:
                    del files[p]
            else:
                raise HttpError(400, f"unknown commit operation {key!r}")
        commit = self.hub._add_commit(
            repo, branch, header.get("summary") or "update", header.get("description") or "", user, files
        )
        self._json(
            200,
            {
                "success": True,
                "commitOid": commit.id,
                "commitMessage": commit.title,
                "hookOutput": "",
                "commitUrl": f"{self.hub.url(repo.type, repo.id)}/commit/{commit.id}",
                "pullRequestUrl": None,
            },
        )

    def _branch(self, repo: Repo, branch: str) -> None:
        payload = json.loads(self._body() or b"{}")
        if branch in repo.branches:
            raise HttpError(409, f"Reference already exists: refs/heads/{branch}")
        start = self._commit(repo, payload.get("startingPoint") or "main")
        repo.branches[branch] = start.id
        self._json(200, {})

    # --- listing and download ----------------------------------------------------------
    @staticmethod
    def _entries(commit: Commit, base: str, recursive: bool) -> list[dict[str, Any]]:
        prefix = base.rstrip("/") + "/" if base else ""
        out, folders = [], set()
        for path, blob in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                if folder not in folders and (recursive or depth == 1):
                    folders.add(folder)
                    out.append(
                        {
                            "type": "directory",
                            "oid": hashlib.sha1(folder.encode()).hexdigest(),
                            "size": 0,
                            "path": folder,
                        }
                    )
            if recursive or len(parts) == 1:
                out.append(blob.tree_entry(path))
        return out

    def _tree(self, repo: Repo, rev: str, path: str) -> None:
        commit = self._commit(repo, rev)
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        if path and not any(p.startswith(path.rstrip("/") + "/") for p in commit.files):
            raise HttpError(404, f"Entry not found: {path}", "EntryNotFound")
        self._json(200, self._entries(commit, path, recursive))

    def _paths_info(self, repo: Repo, rev: str) -> None:
        commit = self._commit(repo, rev)
        form = parse_qs(self._body().decode())
        out = []
        for path in form.get("paths", []):
            if path in commit.files:
                out.append(commit.files[path].tree_entry(path))
            elif any(p.startswith(path.rstrip("/") + "/") for p in commit.files):
                out.append(
                    {
                        "type": "directory",
                        "oid": hashlib.sha1(path.encode()).hexdigest(),
                        "size": 0,
                        "path": path,
                    }
                )
        self._json(200, out)

    def _commits(self, repo: Repo, rev: str) -> None:
        commit = self._commit(repo, rev)
        self._json(
            200,
            [
                {
                    "id": c.id,
                    "title": c.title,
                    "message": c.message,
                    "date": c.date,
                    "authors": [{"user": c.author}],
                }
                for c in repo.history(commit.id)
            ],
        )

    def _refs(self, repo: Repo) -> None:
        branches = [
            {"name": b, "ref": f"refs/heads/{b}", "targetCommit": c} for b, c in sorted(repo.branches.items())
        ]
        self._json(200, {"branches": branches, "tags": [], "converts": []})

    def _resolve(self, repo: Repo, rev: str, path: str) -> None:
        commit = self._commit(repo, rev)
        blob = commit.files.get(path)
        if blob is None:
            raise HttpError(404, "Entry not found", "EntryNotFound")
        data = blob.content if blob.content is not None else repo.lfs[blob.sha256 or ""]
        etag = f'"{blob.sha256 or blob.oid}"'
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": commit.id,
            "ETag": etag,
            "Accept-Ranges": "bytes",
        }
        if blob.sha256:
            headers.update({"X-Linked-Size": str(blob.size), "X-Linked-Etag": etag})
        status = 200
        rng = self.headers.get("Range")
        if rng and (m := re.match(r"bytes=(\d*)-(\d*)$", rng.strip())):
            start_s, end_s = m.groups()
            if start_s:
                start, end = int(start_s), min(int(end_s) if end_s else len(data) - 1, len(data) - 1)
            else:  # suffix range: the last N bytes
                start, end = max(0, len(data) - int(end_s or 0)), len(data) - 1
            if start >= len(data) and len(data) > 0:
                raise HttpError(416, "Requested range not satisfiable")
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        self._send(status, data, headers, head=self.command == "HEAD")
