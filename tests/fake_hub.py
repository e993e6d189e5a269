"""A loopback stand-in for the Hugging Face hub: the endpoints huggingface_hub calls to download.

- `GET /api/models/ORG/NAME/revision/REV?blobs=true`: model info with the commit and every file's
  size, blob id and LFS sha256 (401 `GatedRepo` for a gated repo without a token, 404
  `RevisionNotFound` for an unknown revision); `.../tree/REV`: the same files as a tree listing,
- `HEAD /ORG/NAME/resolve/REV/FILE`: X-Repo-Commit, ETag, X-Linked-Size and Content-Length headers,
- `GET /ORG/NAME/resolve/REV/FILE` with `Range: bytes=N-` (206), sent at `rate_bytes_s`; with
  `xet` set, weight files carry the headers of a Xet-backed file (the bytes still come over HTTP).

Point HF_ENDPOINT at `FakeHub.url`. Serves tests/hub_repos.py repos.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

from hub_repos import Repo, etag

CHUNK = 4096


class FakeHub:
    def __init__(self, repos: dict[str, Repo], rate_bytes_s: float | None = None):
        self.repos = {repo.repo_id: repo for repo in repos.values()}
        self.rate_bytes_s = rate_bytes_s
        #: mark weight files as Xet-backed, as the real hub does (X-Xet-Hash and a xet-auth link)
        self.xet = False
        self.requests: list[tuple[str, str, str]] = []  # (method, path, range header)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (HubHandler,), {"hub": self}))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def resolve(self, repo: Repo, revision: str) -> str | None:
        if revision in repo.refs:
            return repo.refs[revision]
        return revision if revision == repo.commit or revision in repo.others else None


class HubHandler(BaseHTTPRequestHandler):
    """One request to the loopback hub; `hub` is the FakeHub it serves."""

    hub: "FakeHub"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, body: bool) -> None:
        path = unquote(urlparse(self.path).path)
        self.hub.requests.append((self.command, path, self.headers.get("Range", "")))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            return self._info("/".join(parts[2:4]), parts[5], tree=parts[4] == "tree")
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._file("/".join(parts[:2]), parts[3], "/".join(parts[4:]), body)
        self._error(404, "EntryNotFound")

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(401, "RepoNotFound")
        elif repo.gated and not self.headers.get("Authorization"):
            self._error(401, "GatedRepo")
            return None
        return repo

    def _commit(self, repo_id: str, revision: str):
        """The repo and the commit a revision names, or (None, None) once an error is sent."""
        repo = self._repo(repo_id)
        if repo is None:
            return None, None
        commit = self.hub.resolve(repo, revision)
        if commit is None:
            self._error(404, "RevisionNotFound")
            return None, None
        return repo, commit

    def _info(self, repo_id: str, revision: str, tree: bool = False) -> None:
        repo, commit = self._commit(repo_id, revision)
        if commit is None:
            return
        siblings = []
        for name, data in repo.tree(commit).items():
            sibling = {"rfilename": name, "size": len(data), "blobId": etag("x.json", data)}
            if name.endswith((".safetensors", ".bin")):
                sibling["lfs"] = {"sha256": etag(name, data), "size": len(data), "pointerSize": 134}
            siblings.append(sibling)
        info = {"id": repo_id, "modelId": repo_id, "sha": commit, "private": False,
                "gated": "manual" if repo.gated else False, "siblings": siblings}
        if tree:  # what huggingface_hub's snapshot_download lists (one page)
            info = [{"type": "file", "path": s["rfilename"], "size": s["size"], "oid": s["blobId"],
                     **({"lfs": {"oid": s["lfs"]["sha256"], "size": s["size"], "pointerSize": 134}}
                        if "lfs" in s else {})} for s in siblings]
        payload = json.dumps(info).encode()
        self._send(200, {"Content-Type": "application/json"}, payload, True)

    def _file(self, repo_id: str, revision: str, name: str, body: bool) -> None:
        repo, commit = self._commit(repo_id, revision)
        if commit is None:
            return
        data = repo.tree(commit).get(name)
        if data is None:
            return self._error(404, "EntryNotFound")
        tag = etag(name, data)
        headers = {"X-Repo-Commit": commit, "ETag": f'"{tag}"', "X-Linked-Etag": f'"{tag}"',
                   "X-Linked-Size": str(len(data)), "Accept-Ranges": "bytes"}
        if self.hub.xet and name.endswith((".safetensors", ".bin")):
            headers["X-Xet-Hash"] = tag  # any 64 hex digits; the token route below serves nothing
            headers["Link"] = f'<{self.hub.url}/api/models/{repo_id}/xet-read-token/{commit}>; rel="xet-auth"'
        start = 0
        ranged = self.headers.get("Range", "")
        if body and ranged.startswith("bytes="):
            start = int(ranged[6:].split("-")[0] or 0)
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self._send(206 if start else 200, headers, data[start:], body, throttle=True)

    def _error(self, status: int, code: str) -> None:
        payload = json.dumps({"error": code}).encode()
        # no body after HEAD: it would be read as the next response on a kept-alive connection
        self._send(status, {"X-Error-Code": code, "Content-Type": "application/json"}, payload,
                   self.command != "HEAD")

    def _send(self, status: int, headers: dict, payload: bytes, body: bool,
              throttle: bool = False) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not body:
            return
        try:
            for i in range(0, len(payload), CHUNK):
                self.wfile.write(payload[i:i + CHUNK])
                if throttle and self.hub.rate_bytes_s:
                    time.sleep(CHUNK / self.hub.rate_bytes_s)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading (cancelled): nothing to clean up
