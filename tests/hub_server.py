"""A test double of the Hugging Face Hub's HTTP API: an in-memory Hub served on 127.0.0.1.

Why: these machines have no internet, and MemFace's Hub code (``push_to_hub``, ``from_pretrained`` by repo
id, ``list_speakers``) must be exercised through the *real* ``huggingface_hub`` client, not mocks. The
client only speaks HTTP, so this server answers the endpoints it calls (read off huggingface_hub 2.4.0):

    GET  /api/whoami-v2                                     the user owning the bearer token
    POST /api/repos/create                                  {name, organization, visibility, type, sdk, variables}; 409
    POST /api/validate-yaml                                 a README's YAML front matter must be a mapping
    POST /api/{type}s/{repo_id}/preupload/{revision}        every file "regular" (inline base64): no LFS, no Xet
    POST /api/{type}s/{repo_id}/commit/{revision}           NDJSON lines: header, file, deletedFile, deletedFolder
    GET  /api/{type}s/{repo_id}[/revision/{revision}]       repo info: sha, siblings, tags, cardData, private
    GET  /api/{type}s/{repo_id}/tree/{revision}[/{path}]    file and folder entries, recursive or not
    GET  /api/{type}s?author=..&filter=..&search=..         repo listing; every filter value must be a tag
    PUT  /api/{type}s/{repo_id}/settings                    {gated: "auto"|"manual"|false, private}: the owner only
    POST /api/spaces/{repo_id}/variables                    {key, value, description}: a Space's variables
    HEAD|GET /[{type}s/]{repo_id}/resolve/{revision}/{path}  the bytes, with X-Repo-Commit, ETag, Content-Length

Errors carry the Hub's ``X-Error-Code`` (RepoNotFound, RevisionNotFound, EntryNotFound), so the client raises
its usual exceptions. Simplified on purpose: one branch (``main``), every commit also resolvable by its sha, no
LFS/Xet, no pagination, no pull requests, gating recorded but not enforced, no Range requests; a repo's tags
are its card's ``tags`` plus its ``library_name``. Private repos exist only for their owner's token (others get
RepoNotFound, as on the Hub). ``log`` records every request line, so a test can check what was (not) downloaded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

USER, TOKEN = "memface-tester", "hf_memface_tester_token"
OTHER_USER, OTHER_TOKEN = "someone-else", "hf_someone_else_token"
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.mp4 filter=lfs diff=lfs merge=lfs -text\n"
FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)", re.S)
REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
API_REPO = r"/api/(?P<type>models|datasets|spaces)/" + REPO


class HubError(Exception):
    """An error answer: HTTP status, message, and the Hub's ``X-Error-Code`` when it has one."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


def git_oid(data: bytes) -> str:
    """A file's git blob id: the Hub serves it as the ETag and the tree ``oid`` of regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def card_metadata(readme: bytes | str | None) -> dict:
    """A README's YAML front matter ({} when there is none); malformed YAML raises ``ValueError``."""
    text = readme.decode("utf-8") if isinstance(readme, bytes) else (readme or "")
    match = FRONT_MATTER.match(text)
    if match is None:
        return {}
    try:
        data = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"YAML front matter does not parse: {err}") from None
    if not isinstance(data, dict):
        raise ValueError("YAML front matter is not a mapping")
    return data


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]   # path in repo → content: the whole tree at this commit
    summary: str
    date: str


@dataclass
class Repo:
    repo_type: str            # "model", "dataset" or "space"
    repo_id: str
    owner: str
    private: bool
    commits: list[Commit] = field(default_factory=list)   # oldest first; "main" is the last
    gated: str | bool = False                             # "auto", "manual" or False (recorded, not enforced)
    sdk: str | None = None                                # a Space's SDK ("gradio", ...)
    variables: dict[str, dict] = field(default_factory=dict)   # a Space's variables: key → {value, description}

    def at(self, revision: str) -> Commit:
        if revision == "main":
            return self.commits[-1]
        for commit in self.commits:
            if commit.sha == revision:
                return commit
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def info(self, commit: Commit, card_data: bool = True, siblings: bool = True) -> dict:
        try:
            card = card_metadata(commit.files.get("README.md"))
        except ValueError:
            card = {}
        tags = [str(tag) for tag in card.get("tags") or []]
        library = card.get("library_name")
        if library and library not in tags:
            tags.append(str(library))
        info = {"_id": git_oid(self.repo_id.encode()), "id": self.repo_id, "author": self.owner, "sha": commit.sha,
                "private": self.private, "gated": self.gated, "disabled": False, "downloads": 0, "likes": 0,
                "tags": tags, "library_name": library, "createdAt": self.commits[0].date, "lastModified": commit.date}
        if self.repo_type == "space":
            info["sdk"] = self.sdk
        if card_data:
            info["cardData"] = card
        if siblings:
            info["siblings"] = [{"rfilename": path, "size": len(data), "blobId": git_oid(data)}
                                for path, data in sorted(commit.files.items())]
        return info


class HubServer:
    """The in-memory Hub plus its HTTP server on 127.0.0.1 (a free port), served from a daemon thread.

    ``users`` maps bearer tokens to user names; by default two users, ``token``/``user`` and
    ``other_token``/``other_user``.
    """

    def __init__(self, users: dict[str, str] | None = None):
        self.users = users or {TOKEN: USER, OTHER_TOKEN: OTHER_USER}
        self.token, self.user = TOKEN, USER
        self.other_token, self.other_user = OTHER_TOKEN, OTHER_USER
        self.repos: dict[tuple[str, str], Repo] = {}   # (repo type, repo id) → repo
        self.log: list[str] = []                        # "METHOD /path?query" of every request
        self.lock = threading.Lock()
        handler = type("BoundHubHandler", (HubHandler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._httpd.server_port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="test-hub", daemon=True)

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def url(self, repo: Repo) -> str:
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return f"{self.endpoint}/{prefix}{repo.repo_id}"


class HubHandler(BaseHTTPRequestHandler):
    """One request: route it, answer under the hub's lock, send the answer."""

    hub: HubServer
    protocol_version = "HTTP/1.1"   # keep-alive; every answer has a Content-Length

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def log_message(self, format, *args):   # quiet: the request lines go to hub.log instead
        pass

    # -- plumbing -------------------------------------------------------------------------------
    def _routes(self):
        return [("GET", r"/api/whoami-v2", self.whoami),
                ("POST", r"/api/repos/create", self.create_repo),
                ("POST", r"/api/validate-yaml", self.validate_yaml),
                ("POST", API_REPO + r"/preupload/(?P<rev>[^/]+)", self.preupload),
                ("POST", API_REPO + r"/commit/(?P<rev>[^/]+)", self.commit),
                ("GET", API_REPO + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", self.tree),
                ("GET", API_REPO + r"(?:/revision/(?P<rev>[^/]+))?", self.repo_info),
                ("GET", r"/api/(?P<type>models|datasets|spaces)", self.list_repos),
                ("PUT", API_REPO + r"/settings", self.settings),
                ("POST", API_REPO + r"/variables", self.add_variable),
                ("GET", r"/(?:(?P<type>datasets|spaces)/)?" + REPO + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)",
                 self.resolve)]

    def _dispatch(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        headers: dict[str, str] = {}
        with self.hub.lock:
            self.hub.log.append(f"{method} {self.path}")
            try:
                for route_method, pattern, action in self._routes():
                    match = re.fullmatch(pattern, url.path)
                    if match and method in (route_method, "HEAD" if route_method == "GET" else None):
                        groups = {key: unquote(value) for key, value in match.groupdict().items() if value}
                        status, answer, headers = action(groups, query, body)
                        break
                else:
                    raise HubError(404, f"no route for {method} {url.path} in the test Hub")
            except HubError as err:
                status, answer = err.status, {"error": err.message}
                headers = {"X-Error-Message": err.message}
                headers.update({"X-Error-Code": err.code} if err.code else {})
                headers.update({"X-Repo-Commit": err.commit} if err.commit else {})
            except Exception as err:   # a bug in this test double: answer 500 rather than hang the client
                status, answer = 500, {"error": f"test Hub failed: {err!r}"}
        data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    def _caller(self) -> str | None:
        """The user of the bearer token (None when anonymous); an unknown token is a 401."""
        authorization = self.headers.get("Authorization", "")
        if not authorization.lower().startswith("bearer "):
            return None
        user = self.hub.users.get(authorization[7:].strip())
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    def _repo(self, groups: dict, write: bool = False) -> Repo:
        """The repo named by the route, if the caller may see it (and write to it when ``write``)."""
        repo_type = {"models": "model", "datasets": "dataset", "spaces": "space"}.get(groups.get("type"), "model")
        caller = self._caller()
        repo = self.hub.repos.get((repo_type, groups["repo"]))
        if repo is None or (repo.private and repo.owner != caller):
            raise HubError(404, "Repository not found", "RepoNotFound")
        if write and repo.owner != caller:
            raise HubError(403 if caller else 401, "You don't have the rights to write to this repository")
        return repo

    # -- endpoints: each returns (status, JSON-able answer or bytes, extra headers) ---------------
    def whoami(self, groups, query, body):
        user = self._caller()
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return 200, {"type": "user", "id": git_oid(user.encode()), "name": user, "fullname": user, "orgs": [],
                     "avatarUrl": f"/avatars/{user}.svg",
                     "auth": {"type": "access_token", "accessToken": {"displayName": "tests", "role": "write"}}}, {}

    def create_repo(self, groups, query, body):
        request, caller = json.loads(body), self._caller()
        if caller is None:
            raise HubError(401, "You must be authenticated to create a repository")
        owner = request.get("organization") or caller
        if owner != caller:
            raise HubError(403, f"You don't have the rights to create a repository under {owner}")
        repo_id, repo_type = f"{owner}/{request['name']}", request.get("type") or "model"
        if (repo_type, repo_id) in self.hub.repos:
            repo = self.hub.repos[(repo_type, repo_id)]
            return 409, {"error": "You already created this repo", "url": self.hub.url(repo)}, {}
        if repo_type == "space" and not request.get("sdk"):
            raise HubError(400, "A Space needs an SDK (sdk: gradio, docker, static)")
        files = {".gitattributes": GITATTRIBUTES}
        repo = Repo(repo_type, repo_id, owner, request.get("visibility") == "private",
                    [Commit(_commit_sha(None, files, "initial commit"), files, "initial commit", now())],
                    sdk=request.get("sdk"),
                    variables={item["key"]: {"value": item["value"], "description": item.get("description")}
                               for item in request.get("variables") or []})
        self.hub.repos[(repo_type, repo_id)] = repo
        return 200, {"url": self.hub.url(repo), "name": repo_id, "id": git_oid(repo_id.encode())}, {}

    def settings(self, groups, query, body):
        repo, request = self._repo(groups, write=True), json.loads(body)
        if "gated" in request:
            if request["gated"] not in ("auto", "manual", False):
                raise HubError(400, f"invalid gated value {request['gated']!r}")
            repo.gated = request["gated"]
        if "private" in request:
            repo.private = bool(request["private"])
        return 200, {}, {}

    def add_variable(self, groups, query, body):
        repo, request = self._repo(groups, write=True), json.loads(body)
        if repo.repo_type != "space":
            raise HubError(400, "only Spaces have variables")
        repo.variables[request["key"]] = {"value": request["value"], "description": request.get("description"),
                                          "updatedAt": now()}
        return 200, repo.variables, {}

    def validate_yaml(self, groups, query, body):
        try:
            card_metadata(json.loads(body)["content"])
        except ValueError as err:
            return 400, {"errors": [{"message": str(err)}], "warnings": []}, {}
        return 200, {"errors": [], "warnings": []}, {}

    def preupload(self, groups, query, body):
        self._repo(groups, write=True)
        files = json.loads(body)["files"]
        return 200, {"files": [{"path": file["path"], "uploadMode": "regular", "shouldIgnore": False}
                               for file in files]}, {}

    def commit(self, groups, query, body):
        repo = self._repo(groups, write=True)
        if groups["rev"] != "main":
            raise HubError(404, f"the test Hub has one branch, main (got {groups['rev']})", "RevisionNotFound")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0]["key"] != "header":
            raise HubError(400, "a commit starts with a header line")
        header, head = lines[0]["value"], repo.commits[-1]
        if header.get("parentCommit") not in (None, head.sha):
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(head.files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
            elif key == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                files = {path: data for path, data in files.items() if not path.startswith(folder)}
            else:
                raise HubError(400, f"'{key}' operations are not supported by the test Hub (no LFS)")
        if "README.md" in files:
            try:
                card_metadata(files["README.md"])
            except ValueError as err:
                raise HubError(400, f"Invalid metadata in README.md: {err}") from None
        commit = Commit(_commit_sha(head.sha, files, header["summary"]), files, header["summary"], now())
        repo.commits.append(commit)
        return 200, {"success": True, "commitOid": commit.sha, "commitUrl": f"{self.hub.url(repo)}/commit/{commit.sha}",
                     "pullRequestUrl": None}, {}

    def repo_info(self, groups, query, body):
        repo = self._repo(groups)
        return 200, repo.info(repo.at(groups.get("rev", "main"))), {}

    def tree(self, groups, query, body):
        repo = self._repo(groups)
        commit = repo.at(groups["rev"])
        prefix = groups["path"].strip("/") + "/" if groups.get("path") else ""
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries: dict[str, dict] = {}
        for path, data in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                folder = prefix + "/".join(parts[:depth])
                entries[folder] = {"type": "directory", "oid": git_oid(folder.encode()), "size": 0, "path": folder}
            if recursive or len(parts) == 1:
                entries[path] = {"type": "file", "oid": git_oid(data), "size": len(data), "path": path}
        if prefix and not entries:
            raise HubError(404, f"{groups['path']} does not exist", "EntryNotFound", commit.sha)
        return 200, list(entries.values()), {}

    def list_repos(self, groups, query, body):
        repo_type, caller = groups["type"][:-1], self._caller()
        author, search = query.get("author", [None])[0], query.get("search", [None])[0]
        wanted_tags = set(query.get("filter", []))
        card_data = query.get("cardData", ["false"])[0].lower() == "true"
        found = []
        for (kind, repo_id), repo in sorted(self.hub.repos.items()):
            info = repo.info(repo.commits[-1], card_data=card_data, siblings=False)
            if (kind == repo_type and (not repo.private or repo.owner == caller)
                    and author in (None, repo.owner) and (search is None or search in repo_id)
                    and wanted_tags <= set(info["tags"])):
                found.append(info)
        return 200, found, {}

    def resolve(self, groups, query, body):
        repo = self._repo(groups)
        commit = repo.at(groups["rev"])
        if groups["path"] not in commit.files:
            raise HubError(404, "Entry not found", "EntryNotFound", commit.sha)
        data = commit.files[groups["path"]]
        return 200, data, {"Content-Type": "application/octet-stream", "X-Repo-Commit": commit.sha,
                           "ETag": f'"{git_oid(data)}"'}


def _commit_sha(parent: str | None, files: dict[str, bytes], summary: str) -> str:
    """A 40-hex commit id from the parent, the tree and the message (unique enough for one test session)."""
    tree = json.dumps([parent, summary, now(), sorted((path, git_oid(data)) for path, data in files.items())])
    return hashlib.sha1(tree.encode()).hexdigest()
