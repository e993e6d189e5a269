"""Endpoint models: a base URL + a model name (+ the name of the environment variable that holds its
API key), declared in models.yaml (path in BILLION_MODELS_FILE) or added from a page for a session.

The key itself is read from the environment at request time only: it is never part of an
EndpointModel, a record, a message or a log line. A name like `endpoint:tinyllama-vllm` picks one.
Which file, and whether the page may add endpoints, come from billion.core.settings.Settings.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from billion.core.errors import BillionError

PREFIX = "endpoint:"
MODELS_FILE_ENV = "BILLION_MODELS_FILE"
#: "off" stops visitors from adding endpoints on a page (a public Space may want that)
PAGE_ENDPOINTS_ENV = "BILLION_PAGE_ENDPOINTS"
ALIAS = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class EndpointModel:
    """One model an OpenAI-compatible server serves."""

    alias: str
    #: up to and including the API version, e.g. http://gpu-box:8000/v1
    base_url: str
    #: the name the server knows the model by (vLLM: the served model name)
    model: str
    #: name of the environment variable holding the API key; None for servers without keys
    api_key_env: str | None = None
    display_name: str = ""
    #: seconds to connect, and between two streamed chunks
    timeout_s: float = DEFAULT_TIMEOUT_S
    #: retries of a request that failed before its first token (connection, 429, 5xx)
    max_retries: int = 1
    #: "file" (models.yaml) or "page" (added by a visitor for the session)
    origin: str = "file"
    #: stop strings sent with every request (a base model served with a plain transcript template
    #: runs on into the next "User:" turn without them)
    stop: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """How billion refers to it: in dropdowns, ratings, benchmark results."""
        return PREFIX + self.alias

    @property
    def host(self) -> str:
        """host[:port] of the server, for "over the network, from <host>"."""
        return urlparse(self.base_url).netloc

    @property
    def label(self) -> str:
        return self.display_name or f"{self.model} @ {self.host}"

    def api_key(self) -> str | None:
        """The key from the environment (None when the endpoint needs none)."""
        if not self.api_key_env:
            return None
        value = os.environ.get(self.api_key_env, "")
        if not value:
            raise BillionError(f"{self.name} needs its API key in the environment variable "
                               f"{self.api_key_env}, which is not set: set it (a Space secret) and "
                               "restart the app.")
        return value

    def to_record(self) -> dict[str, Any]:
        """JSON-ready description (the key's variable name, never the key)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "EndpointModel":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        return cls(**{**values, "stop": tuple(values.get("stop") or ())})


#: why the speculative race lists no endpoint model
RACE_LOCAL_ONLY = ("The speculative race runs local models only: verifying drafted tokens needs the "
                   "target's logits at every position, which an OpenAI-compatible endpoint does not "
                   "return. Pick a local model (endpoint models work in Chat, the Arena and the "
                   "Leaderboard).")


def is_endpoint_name(name: str | None) -> bool:
    return bool(name) and str(name).startswith(PREFIX)


def _check_url(url: str, where: str) -> str:
    url = (url or "").strip().rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise BillionError(f"{where}: base_url {url!r} is not an http(s) URL: write it as "
                           "http://host:port/v1 (the part before /chat/completions).")
    return url


def make_endpoint(alias: str, base_url: str, model: str, api_key_env: str | None = None,
                  display_name: str = "", timeout_s: float = DEFAULT_TIMEOUT_S,
                  max_retries: int = 1, origin: str = "file", stop: Any = (),
                  where: str = "endpoint") -> EndpointModel:
    """A checked EndpointModel; `where` prefixes every error (a file and entry, or the page)."""
    from billion.core.registry import all_models

    alias = (alias or "").strip().lower()
    if not ALIAS.fullmatch(alias):
        raise BillionError(f"{where}: alias {alias!r} must be 1-63 lowercase letters, digits, '.', "
                           "'_' or '-', starting with a letter or digit.")
    if any(alias in (m.alias, *m.extra_aliases) for m in all_models()):
        raise BillionError(f"{where}: alias {alias!r} is a registry model's alias: pick another "
                           "(e.g. add '-served').")
    model = (model or "").strip()
    if not model:
        raise BillionError(f"{where}: no model name: give the name the server serves it under.")
    key_env = (api_key_env or "").strip() or None
    if key_env is not None and not ENV_NAME.fullmatch(key_env):
        raise BillionError(f"{where}: api_key_env must be the NAME of an environment variable "
                           "(letters, digits, '_'), not the key itself.")
    try:
        timeout, retries = float(timeout_s), int(max_retries)
    except (TypeError, ValueError):
        raise BillionError(f"{where}: timeout_s and max_retries must be numbers.") from None
    if not 0 < timeout <= 3600 or not 0 <= retries <= 5:
        raise BillionError(f"{where}: timeout_s must be in (0, 3600] s and max_retries in 0..5.")
    if isinstance(stop, str) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
        raise BillionError(f"{where}: stop must be a list of at most 4 non-empty strings.")
    return EndpointModel(alias, _check_url(base_url, where), model, key_env,
                         (display_name or "").strip(), timeout, retries, origin, tuple(stop))


# ---- models.yaml ---------------------------------------------------------------------------------

_FILE_KEYS = {"alias", "base_url", "model", "api_key_env", "display_name", "timeout_s", "max_retries",
              "stop"}
_file_memo: dict[tuple[str, int, int], tuple[EndpointModel, ...]] = {}


def parse_models_file(text: str, where: str = "models.yaml") -> tuple[EndpointModel, ...]:
    """Entries of a models.yaml: `models:` followed by a list of endpoint entries."""
    import yaml

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise BillionError(f"{where} is not valid YAML ({exc}): fix the file.") from None
    entries = data.get("models") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise BillionError(f"{where} must hold `models:` followed by a list of entries "
                           "(alias, base_url, model, optional api_key_env).")
    endpoints: list[EndpointModel] = []
    for number, entry in enumerate(entries, 1):
        place = f"{where}, entry {number}"
        if not isinstance(entry, dict):
            raise BillionError(f"{place}: each entry is a mapping (alias: ..., base_url: ..., model: ...).")
        unknown = sorted(set(entry) - _FILE_KEYS)
        if unknown:
            raise BillionError(f"{place}: unknown keys {unknown}: use {sorted(_FILE_KEYS)} "
                               "(an API key goes in an environment variable named by api_key_env).")
        missing = [k for k in ("alias", "base_url", "model") if k not in entry]
        if missing:
            raise BillionError(f"{place}: missing {', '.join(missing)}.")
        endpoint = make_endpoint(**{k: entry[k] for k in entry}, where=place)  # type: ignore[arg-type]
        if any(e.alias == endpoint.alias for e in endpoints):
            raise BillionError(f"{place}: alias {endpoint.alias!r} appears twice: aliases are unique.")
        endpoints.append(endpoint)
    return tuple(endpoints)


def configured_endpoints(path: Path | None) -> tuple[EndpointModel, ...]:
    """The endpoints of a models.yaml (Settings.models_file; none when None), re-read when the
    file changes."""
    if path is None:
        return ()
    try:
        stat = path.stat()
    except OSError:
        raise BillionError(f"{MODELS_FILE_ENV}={path} does not exist: create it or unset the "
                           "variable.") from None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _file_memo:
        _file_memo.clear()
        _file_memo[key] = parse_models_file(path.read_text(encoding="utf-8"), str(path))
    return _file_memo[key]


def find_endpoint(name: str, endpoints: Sequence[EndpointModel]) -> EndpointModel:
    """`endpoint:<alias>` (or the bare alias) among these endpoints (a session's, then the
    configured ones)."""
    alias = name[len(PREFIX):] if is_endpoint_name(name) else name
    for endpoint in endpoints:
        if endpoint.alias == alias:
            return endpoint
    known = ", ".join(e.name for e in endpoints) or "none"
    raise BillionError(f"No endpoint model {name!r}: known ones are {known}. Declare it in the "
                       f"file {MODELS_FILE_ENV} names, or add it on the page.")


# ---- added on a page, for one session --------------------------------------------------------------

def _origin(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc}".lower()


def page_endpoint(alias: str, base_url: str, model: str, api_key_env: str = "",
                  session: Sequence[EndpointModel] = (), configured: Sequence[EndpointModel] = (),
                  allowed: bool = True) -> EndpointModel:
    """An endpoint a visitor adds for the session (allowed: Settings.page_endpoints).

    A key variable is accepted only for the server models.yaml (`configured`) binds it to:
    otherwise a page could have the app send one of its secrets (HF_TOKEN, say) to any address.
    """
    if not allowed:
        raise BillionError(f"Adding endpoints on the page is switched off here ({PAGE_ENDPOINTS_ENV}"
                           "=off): ask the operator to declare it in models.yaml.")
    endpoint = make_endpoint(alias, base_url, model, api_key_env, origin="page", where="New endpoint")
    if any(e.alias == endpoint.alias for e in (*session, *configured)):
        raise BillionError(f"New endpoint: alias {endpoint.alias!r} is taken: pick another.")
    if endpoint.api_key_env:
        bound = {_origin(e.base_url) for e in configured if e.api_key_env == endpoint.api_key_env}
        if _origin(endpoint.base_url) not in bound:
            raise BillionError(f"New endpoint: the key variable {endpoint.api_key_env} may only be "
                               "sent to the server models.yaml declares it for. Leave the key "
                               "variable empty, or declare the endpoint in models.yaml.")
    return endpoint
