"""Benchmarks of endpoint models, over the API only:

- HumanEval through chat completions: the problem in a code block with EvalPlus's instruction for
  chat models, the answer's first code block checked (a whole function, or a body) in the sandbox.
  Not comparable to the local raw-continuation setting, and labelled so.
- Multiple choice needs prompt log-probabilities (`echo` + `logprobs` on /v1/completions, as vLLM
  returns them); a server without them gets "needs log-probs" instead of a score.
- Speed: time to first chunk and chunks' rate as this app sees them, "over the network, from <host>".
"""

from __future__ import annotations

import re
import statistics
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from billion.core.errors import BillionError
from billion.core.sampling import SamplingSettings
from billion.endpoints.client import client_for, generate_endpoint_chat
from billion.endpoints.config import EndpointModel

NEEDS_LOGPROBS = "needs log-probs"
# EvalPlus's instruction for chat models (evalplus/provider/utility.py, make_raw_chat_prompt).
HUMANEVAL_INSTRUCTION = ("Please provide a self-contained Python script that solves the following "
                         "problem in a markdown code block:\n```\n{prompt}\n```\n")
CHAT_PROMPT_SETTING = "chat completions: EvalPlus instruction + code block, first code block checked"
_CODE_BLOCK = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)

Step = tuple[int, int, str, "list[dict[str, Any]] | None"]


def serves_prompt_logprobs(endpoint: EndpointModel) -> bool:
    """Whether /v1/completions returns log-probabilities of the prompt's own tokens (echo)."""
    prompt = "The capital of France is Paris"
    try:
        reply = client_for(endpoint).completions.create(
            model=endpoint.model, prompt=prompt, max_tokens=1, temperature=0, echo=True, logprobs=1)
    except Exception:  # 404 (no legacy completions), 400/422 (fields refused): no log-probs
        return False
    logprobs = reply.choices[0].logprobs if reply.choices else None
    offsets = getattr(logprobs, "text_offset", None) or []
    values = getattr(logprobs, "token_logprobs", None) or []
    return sum(1 for o in offsets if o < len(prompt)) > 1 and len(values) == len(offsets)


def code_from_answer(answer: str, entry_point: str) -> str:
    """The completion to check after the problem's prompt: a whole program when the answer defines
    the function again (it replaces the prompt's stub), else the answer as the function's body."""
    match = _CODE_BLOCK.search(answer)
    code = (match.group(1) if match else answer).rstrip()
    if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        return "\n" + code.strip("\n") + "\n"
    lines = code.strip("\n").splitlines()
    if lines and not lines[0].startswith((" ", "\t")):  # a body written flush left
        lines = ["    " + line for line in lines]
    return "\n" + "\n".join(lines) + "\n"


def humaneval_generate_fn(endpoint: EndpointModel, max_new_tokens: int,
                          cancel: threading.Event | None = None):
    from billion.bench.humaneval import load_problems

    entry_points = {p.prompt.rstrip(): p.entry_point for p in load_problems()}

    def generate(prompt: str, stop: Sequence[str]) -> str:
        messages = [{"role": "user", "content": HUMANEVAL_INSTRUCTION.format(prompt=prompt)}]
        settings = SamplingSettings(temperature=0.0, max_new_tokens=max_new_tokens)
        answer = generate_endpoint_chat(endpoint, messages, settings, cancel).text
        return code_from_answer(answer, entry_points.get(prompt, ""))

    return generate


def endpoint_settings(request: Any, endpoint: EndpointModel, task: str) -> dict[str, Any]:
    """What every stored score of an endpoint carries (the leaderboard keys rows on dtype)."""
    return {"task": task, "limit": request.limit, "seed": request.seed, "dtype": "served",
            "dtype_requested": "", "quantization": "none", "device": "network",
            "endpoint_host": endpoint.host, "endpoint_model": endpoint.model}


def _humaneval_steps(endpoint: EndpointModel, request: Any,
                     cancel: threading.Event | None) -> Iterator[Step]:
    from billion.bench.humaneval import iter_humaneval
    from billion.bench.rows import humaneval_rows
    from billion.bench.request import HUMANEVAL

    total = min(request.limit or 164, 164)
    yield 0, total, f"0/{total} problems", None
    generate = humaneval_generate_fn(endpoint, request.humaneval_max_new_tokens, cancel)
    for p in iter_humaneval(generate, request.limit, 1, cancel, stop=(),
                            prompt_setting=CHAT_PROMPT_SETTING):
        rows = None
        if p.result is not None and not p.result.cancelled:
            rows = humaneval_rows(p.result, endpoint_settings(request, endpoint, HUMANEVAL))
            for row in rows:
                row["settings"]["decoding"] = "greedy, chat"
                row["extra"]["note"] = "; ".join(n for n in (
                    row["extra"].get("note"), "chat prompt: not comparable to raw-prompt runs") if n)
        yield p.done, p.total, f"{p.done}/{p.total} problems", rows


def _filler_message(tokens: int, chars_per_token: float) -> str:
    from billion.bench.speed import FILLER

    text = FILLER * (int(tokens * chars_per_token) // len(FILLER) + 1)
    return "Summarize this text in one long paragraph.\n\n" + text[: int(tokens * chars_per_token)]


def _speed_steps(endpoint: EndpointModel, request: Any,
                 cancel: threading.Event | None) -> Iterator[Step]:
    from billion.bench.speed import FILLER

    settings = SamplingSettings(temperature=0.0, max_new_tokens=request.new_tokens)
    probe = generate_endpoint_chat(endpoint, [{"role": "user", "content": FILLER}],
                                   SamplingSettings(temperature=0.0, max_new_tokens=1))
    chars_per_token = len(FILLER) / max(probe.prompt_tokens, 1)
    total = len(request.prompt_lengths) * (request.warmup + request.repeats)
    done, rows = 0, []
    for length in request.prompt_lengths:
        ask = [{"role": "user", "content": _filler_message(length, chars_per_token)}]
        runs = []
        for run in range(request.warmup + request.repeats):
            if cancel is not None and cancel.is_set():
                return
            result = generate_endpoint_chat(endpoint, ask, settings, cancel)
            if run >= request.warmup:
                runs.append(result)
            done += 1
            yield done, total, f"{done}/{total} timed requests", None
        rows += _speed_rows(endpoint, request, length, runs)
    yield done, total, f"{done}/{total} timed requests", rows


def _speed_rows(endpoint: EndpointModel, request: Any, length: int, runs: list) -> list[dict]:
    from billion.bench.request import SPEED

    where = f"over the network, from {endpoint.host}"
    common = {**endpoint_settings(request, endpoint, SPEED), "limit": None, "limited": False,
              "new_tokens": request.new_tokens, "warmup": request.warmup,
              "repeats": request.repeats, "prompt_lengths": list(request.prompt_lengths)}
    served_prompt = statistics.median(r.prompt_tokens for r in runs)
    rows = []
    for metric, values in ((f"ttft_s@{length}", [r.ttft_s for r in runs]),
                           (f"decode_tok_s@{length}", [r.decode_tokens_per_s for r in runs])):
        rows.append({"metric": metric, "score": statistics.median(values), "stderr": None,
                     "n": len(values), "settings": common,
                     "extra": {"low": min(values), "high": max(values),
                               "note": f"median of {len(values)} requests, {where}; prompt "
                                       f"{served_prompt:g} tokens as the server counted them"}})
    return rows


def _needs_logprobs_steps(endpoint: EndpointModel, task: str) -> Iterator[Step]:
    raise BillionError(f"{NEEDS_LOGPROBS}: {endpoint.host} returns no prompt log-probabilities "
                       f"(echo + logprobs on /v1/completions), which {task} scores choices with; "
                       "serve the model with vLLM to score it, or run it locally.")
    yield  # pragma: no cover - makes this a generator like the other step functions


def endpoint_task_steps(endpoint: EndpointModel, task: str, request: Any,
                        cancel: threading.Event | None) -> Iterator[Step]:
    """(done, total, message, rows) per item, as billion.bench.steps.task_steps gives them."""
    from billion.bench.request import HUMANEVAL, SPEED

    if task == HUMANEVAL:
        return _humaneval_steps(endpoint, request, cancel)
    if task == SPEED:
        return _speed_steps(endpoint, request, cancel)
    if not serves_prompt_logprobs(endpoint):
        return _needs_logprobs_steps(endpoint, task)
    from billion.bench.endpoint_mc import endpoint_mc_steps

    return endpoint_mc_steps(endpoint, task, request, cancel)
