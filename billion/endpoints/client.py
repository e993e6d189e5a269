"""Streaming chat completions from an endpoint model, as the same GenerationUpdate stream local models
give, with every failure turned into an EndpointError that names the fix and nothing of the key.

Client: the `openai` package (see docs/deploy.md for why not huggingface_hub's InferenceClient).
Timing is measured here, at the app: "over the network, from <host>".
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from billion.core.errors import BillionError
from billion.core.sampling import SamplingSettings
from billion.endpoints.config import EndpointModel

log = logging.getLogger(__name__)
#: the Arena's words for any endpoint failure before the vote: no side, model or server named
BLIND_FAILURE = "One of the answers failed"


class EndpointError(BillionError):
    """An endpoint could not answer. `blind` says the same without naming the model or server."""

    def __init__(self, message: str, blind: str):
        super().__init__(message)
        #: the failure in a few words that name no model, server or side ("its server is busy")
        self.reason = blind
        self.blind = f"{BLIND_FAILURE} ({blind}); no vote can be cast on it: press Regenerate to " \
                     "ask again, or New round."


@dataclass(frozen=True)
class EndpointResult:
    """One finished answer from an endpoint (the fields the UI and the arena read off a result)."""

    model: str
    text: str
    #: as the server counted them (usage), else the number of streamed chunks with text
    completion_tokens: int
    prompt_tokens: int
    ttft_s: float
    decode_tokens_per_s: float
    total_s: float
    finish_reason: str
    #: seconds since the call at which each chunk with text arrived
    token_times: tuple[float, ...]
    host: str
    #: no ids come back over the API; kept so code that counts ids sees none, not a guess
    token_ids: tuple[int, ...] = ()
    peak_memory_bytes: int = 0


@functools.lru_cache(maxsize=64)
def _client(base_url: str, key: str, timeout_s: float, max_retries: int):
    import openai

    # One client (one connection pool) per endpoint and key; the key only lives in its headers.
    return openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout_s, max_retries=max_retries)


def client_for(endpoint: EndpointModel):
    # Servers without keys still get a placeholder: the openai client insists on one.
    return _client(endpoint.base_url, endpoint.api_key() or "none", endpoint.timeout_s,
                   endpoint.max_retries)


def _redact(text: str, endpoint: EndpointModel) -> str:
    try:
        key = endpoint.api_key()
    except BillionError:
        key = None
    return text.replace(key, "[key]") if key else text


def explain(exc: BaseException, endpoint: EndpointModel, tokens: int = 0) -> EndpointError:
    """The failure in words: what happened at which server, and what to do."""
    import openai

    where = f"{endpoint.name} at {endpoint.host}"
    if tokens or isinstance(exc, ConnectionError):
        return EndpointError(f"{where} cut its answer off after {tokens} chunks "
                             f"({type(exc).__name__}): the server stopped or lost the connection; "
                             "ask again.", "its stream was cut off")
    if isinstance(exc, openai.APITimeoutError):
        return EndpointError(f"{where} did not answer within {endpoint.timeout_s:g} s: the server "
                             "is overloaded or stuck; try again, or raise timeout_s in models.yaml.",
                             "its server did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return EndpointError(f"Could not reach {where}: check that the server is running and the "
                             "base_url is right.", "its server could not be reached")
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        variable = endpoint.api_key_env or "(none configured)"
        return EndpointError(f"{where} refused the API key (HTTP {exc.status_code}; key variable "
                             f"{variable}): set a valid key in that variable and restart the app.",
                             "its server refused the request")
    if isinstance(exc, openai.RateLimitError):
        return EndpointError(f"{where} is rate limiting requests (HTTP 429): wait a moment, or "
                             "lower the app's concurrency (BILLION_CONCURRENCY).",
                             "its server is busy")
    if isinstance(exc, openai.NotFoundError):
        return EndpointError(f"{where} does not serve a model named {endpoint.model!r} (HTTP 404): "
                             "check `model` against the server's /v1/models.",
                             "its server refused the request")
    if isinstance(exc, openai.APIStatusError):
        body = _redact(str(getattr(exc, "body", "") or ""), endpoint)[:200]
        return EndpointError(f"{where} answered HTTP {exc.status_code}: {body}",
                             "its server refused the request")
    return EndpointError(f"{where} failed ({type(exc).__name__}): see the server's log.",
                         "its server failed")


def request_args(endpoint: EndpointModel, messages: Sequence[dict], settings: SamplingSettings,
                 stop: Sequence[str] = ()) -> dict[str, Any]:
    """The chat completions request for these settings (OpenAI parameters; others only if set)."""
    args: dict[str, Any] = {
        "model": endpoint.model, "messages": [dict(m) for m in messages],
        "max_tokens": settings.max_new_tokens, "temperature": settings.temperature,
        "stream": True, "stream_options": {"include_usage": True}}
    if not settings.greedy:
        args["top_p"] = settings.top_p
    if settings.seed is not None:
        args["seed"] = settings.seed
    stops = list(dict.fromkeys(s for s in (*settings.stop, *endpoint.stop, *stop) if s))[:4]
    if stops:
        args["stop"] = stops
    # Not OpenAI parameters: vLLM and TGI take them, stricter servers refuse them (422).
    extra = {k: v for k, v, default in (("top_k", settings.top_k, 0),
                                         ("repetition_penalty", settings.repetition_penalty, 1.0))
             if v != default}
    if extra:
        args["extra_body"] = extra
    return args


def stream_endpoint_chat(endpoint: EndpointModel, messages: Sequence[dict],
                         settings: SamplingSettings, cancel: threading.Event | None = None,
                         stop: Sequence[str] = ()) -> Iterator[Any]:
    """Stream an answer as GenerationUpdates; the last one carries an EndpointResult.

    Raises EndpointError on any failure, from outside the except block so that no exception
    holding the request (and its Authorization header) is chained to it.
    """
    from billion.core.generation import GenerationUpdate, validate_messages

    validate_messages(messages)
    settings.validate()
    started = time.perf_counter()
    text, times, usage = "", [], None
    finished: str | None = None
    failure: EndpointError | None = None
    stream = None
    try:
        client = client_for(endpoint)
    except BillionError as exc:  # its key variable is not set
        raise EndpointError(str(exc), "its server is not set up here: an API key is missing") from None
    try:
        stream = client.chat.completions.create(
            **request_args(endpoint, messages, settings, stop))
        for chunk in stream:
            usage = chunk.usage or usage
            for choice in chunk.choices[:1]:
                piece = (choice.delta.content or "") if choice.delta else ""
                piece = piece if text else piece.lstrip()
                if piece:
                    times.append(time.perf_counter() - started)
                    text += piece
                    yield GenerationUpdate(text, piece, len(times))
                finished = finished or choice.finish_reason
            if cancel is not None and cancel.is_set():
                finished = "cancelled"
                break
        if not finished:  # the body ended cleanly but the answer did not: a cut all the same
            raise ConnectionError("the stream ended without a finish_reason")
    except BillionError:
        raise
    except Exception as exc:  # openai and httpx raise many types; explain() sorts them
        log.warning("%s at %s failed: %s", endpoint.name, endpoint.host, type(exc).__name__)
        failure = explain(exc, endpoint, len(times))
    finally:
        if stream is not None:
            stream.close()  # also when the caller stops early: the server stops generating
    if failure is not None:
        raise failure
    yield GenerationUpdate(text, "", len(times),
                           _result(endpoint, text, times, finished or "length", usage, started))


def _result(endpoint: EndpointModel, text: str, times: list[float], finish: str, usage: Any,
            started: float) -> EndpointResult:
    total = time.perf_counter() - started
    tokens = int(getattr(usage, "completion_tokens", 0) or len(times))
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    # Chunks, not tokens, arrive: tokens after the first over the time between first and last chunk.
    rate = (tokens - 1) / span if span > 0 and tokens > 1 else 0.0
    finish = {"stop": "eos"}.get(finish, finish)
    return EndpointResult(model=endpoint.name, text=text, completion_tokens=tokens,
                          prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                          ttft_s=times[0] if times else total, decode_tokens_per_s=rate,
                          total_s=total, finish_reason=finish, token_times=tuple(times),
                          host=endpoint.host)


def generate_endpoint_chat(endpoint: EndpointModel, messages: Sequence[dict],
                           settings: SamplingSettings, cancel: threading.Event | None = None,
                           stop: Sequence[str] = ()) -> EndpointResult:
    update = None
    for update in stream_endpoint_chat(endpoint, messages, settings, cancel, stop):
        pass
    assert update is not None and update.result is not None
    return update.result


# ---- one entry point for local and endpoint models ------------------------------------------------

def stream_answer(model: Any, messages: Sequence[dict], settings: SamplingSettings,
                  cancel: threading.Event | None = None) -> Iterator[Any]:
    """stream_chat for a LoadedModel, stream_endpoint_chat for an EndpointModel."""
    if isinstance(model, EndpointModel):
        return stream_endpoint_chat(model, messages, settings, cancel)
    from billion.core.generation import stream_chat

    return stream_chat(model, messages, settings, cancel)


def generate_answer(model: Any, messages: Sequence[dict], settings: SamplingSettings,
                    cancel: threading.Event | None = None) -> Any:
    if isinstance(model, EndpointModel):
        return generate_endpoint_chat(model, messages, settings, cancel)
    from billion.core.generation import generate_chat

    return generate_chat(model, messages, settings, cancel)


def generate_pair(generate: Callable[..., Any], requests: Sequence[tuple[Any, Any, Any]]) -> list[Any]:
    """generate(model, messages, settings) for each request: at the same time when one of the models
    is an endpoint (the app only waits on its socket), else one after the other (two local
    generations would share the same cores). A failure is raised once both have ended."""
    if not any(isinstance(model, EndpointModel) for model, _, _ in requests):
        return [generate(*request) for request in requests]
    with ThreadPoolExecutor(max_workers=len(requests), thread_name_prefix="answer") as pool:
        futures = [pool.submit(generate, *request) for request in requests]
    return [future.result() for future in futures]


def chat_streams(request: Any, models: Any, endpoints: Sequence[EndpointModel] = ()) -> list:
    """billion.core.chat.chat_streams, where an `endpoint:<alias>` name streams from its server:
    [(LoadedModel or EndpointModel, updates)] in the order of request.models."""
    from billion.core.chat import local_stream
    from billion.endpoints.config import find_endpoint, is_endpoint_name

    streams = []
    for index, name in enumerate(request.models):
        messages = request.messages(index)
        if is_endpoint_name(name):
            endpoint = find_endpoint(name, endpoints)
            streams.append((endpoint, stream_endpoint_chat(endpoint, messages, request.settings)))
        else:
            streams.append(local_stream(request, models, index))
    return streams
