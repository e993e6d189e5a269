"""Published reference scores, copied from model cards and papers, each with its source.

These are other people's measurements on their hardware and settings; the UI labels them as
published and never mixes them with what billion measures itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReferenceScore:
    #: benchmark name as the source writes it, e.g. "MMLU"
    benchmark: str
    #: score in percent
    value: float
    #: n-shot and metric, e.g. "5-shot, acc"
    setting: str
    #: "base" or "instruct": which checkpoint the source measured
    variant: str
    #: who published it, e.g. "model card"
    source: str
    url: str


_LLAMA32_CARD = "https://github.com/meta-llama/llama-models/blob/main/models/llama3_2/MODEL_CARD.md"
_LLAMA31_CARD = "https://github.com/meta-llama/llama-models/blob/main/models/llama3_1/MODEL_CARD.md"
_LLAMA2_PAPER = "https://arxiv.org/abs/2307.09288"
_TINYLLAMA_EVAL = "https://github.com/jzhang38/TinyLlama/blob/main/EVAL.md"
_STABLELM_CHAT_CARD = "https://huggingface.co/stabilityai/stablelm-2-1_6b-chat"
_GEMMA3_CARD = "https://ai.google.dev/gemma/docs/core/model_card_3"
_MAMBA_PAPER = "https://arxiv.org/abs/2312.00752"

_CARD = "model card"
_MAMBA = "paper: Mamba: Linear-Time Sequence Modeling with Selective State Spaces (Table 3)"
# The Open LLM Leaderboard v1 ran ARC 25-shot, HellaSwag 10-shot, MMLU/Winogrande/GSM8K 5-shot.
_OPEN_LLM_V1 = "model card (Open LLM Leaderboard v1 results)"
# SmolLM2 cards: "All evaluations are zero-shot unless stated otherwise", run with lighteval.
_SMOL = "0-shot, lighteval"


def _smollm2(size: str) -> str:
    return f"https://huggingface.co/HuggingFaceTB/SmolLM2-{size}-Instruct"


def _pythia_mamba(hellaswag: float, arc_c: float, piqa: float, winogrande: float,
                  lambada: float) -> tuple[ReferenceScore, ...]:
    """One Pythia row of the Mamba paper's Table 3 (0-shot, EleutherAI lm-evaluation-harness)."""
    return (
        ReferenceScore("HellaSwag", hellaswag, "0-shot, acc_norm", "base", _MAMBA, _MAMBA_PAPER),
        ReferenceScore("ARC-Challenge", arc_c, "0-shot, acc_norm", "base", _MAMBA, _MAMBA_PAPER),
        ReferenceScore("PIQA", piqa, "0-shot, acc", "base", _MAMBA, _MAMBA_PAPER),
        ReferenceScore("WinoGrande", winogrande, "0-shot, acc", "base", _MAMBA, _MAMBA_PAPER),
        ReferenceScore("LAMBADA", lambada, "0-shot, acc", "base", _MAMBA, _MAMBA_PAPER),
    )


# Collected 2026-11-27 from the sources named in each entry; each figure was read in its source.
PUBLISHED_SCORES: dict[str, tuple[ReferenceScore, ...]] = {
    # The chat card has no scores; these are its base checkpoint (intermediate-step-1431k-3T),
    # from the TinyLlama repo's GPT4All table (lm-eval-harness, no few-shot flag, acc_norm default).
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": (
        ReferenceScore("HellaSwag", 59.20, "0-shot, acc_norm", "base", "TinyLlama repo EVAL.md",
                       _TINYLLAMA_EVAL),
        ReferenceScore("ARC-Challenge", 30.12, "0-shot, acc_norm", "base", "TinyLlama repo EVAL.md",
                       _TINYLLAMA_EVAL),
        ReferenceScore("PIQA", 73.29, "0-shot, acc_norm", "base", "TinyLlama repo EVAL.md",
                       _TINYLLAMA_EVAL),
        ReferenceScore("WinoGrande", 59.12, "0-shot, acc", "base", "TinyLlama repo EVAL.md",
                       _TINYLLAMA_EVAL),
    ),
    "meta-llama/Llama-3.2-1B-Instruct": (
        ReferenceScore("MMLU", 49.3, "5-shot, macro_avg/acc", "instruct", _CARD, _LLAMA32_CARD),
        ReferenceScore("ARC-Challenge", 59.4, "0-shot, acc", "instruct", _CARD, _LLAMA32_CARD),
        ReferenceScore("HellaSwag", 41.2, "0-shot, acc", "instruct", _CARD, _LLAMA32_CARD),
        ReferenceScore("IFEval", 59.5, "0-shot, avg of prompt/instruction acc, loose/strict",
                       "instruct", _CARD, _LLAMA32_CARD),
        ReferenceScore("GSM8K (CoT)", 44.4, "8-shot, em_maj1@1", "instruct", _CARD, _LLAMA32_CARD),
    ),
    # MMLU is labelled acc_norm on the card; shots follow the Open LLM Leaderboard v1 setup.
    "stabilityai/stablelm-2-1_6b-chat": (
        ReferenceScore("ARC-Challenge", 43.94, "25-shot, acc_norm", "instruct", _OPEN_LLM_V1,
                       _STABLELM_CHAT_CARD),
        ReferenceScore("HellaSwag", 69.22, "10-shot, acc_norm", "instruct", _OPEN_LLM_V1,
                       _STABLELM_CHAT_CARD),
        ReferenceScore("MMLU", 41.59, "5-shot, acc_norm (as the card labels it)", "instruct",
                       _OPEN_LLM_V1, _STABLELM_CHAT_CARD),
        ReferenceScore("WinoGrande", 64.56, "5-shot, acc", "instruct", _OPEN_LLM_V1,
                       _STABLELM_CHAT_CARD),
        ReferenceScore("GSM8K", 38.96, "5-shot, acc", "instruct", _OPEN_LLM_V1,
                       _STABLELM_CHAT_CARD),
    ),
    "EleutherAI/pythia-1b": _pythia_mamba(47.2, 27.1, 70.7, 53.5, 56.1) + (
        ReferenceScore("HumanEval", 1.83, "pass@1, 1 sample (InstructEval)", "base",
                       "TinyLlama repo EVAL.md", _TINYLLAMA_EVAL),
    ),
    "HuggingFaceTB/SmolLM2-135M-Instruct": (
        ReferenceScore("MMLU (cloze)", 29.3, _SMOL, "instruct", _CARD, _smollm2("135M")),
        ReferenceScore("ARC (average of Easy and Challenge)", 37.3, _SMOL, "instruct", _CARD,
                       _smollm2("135M")),
        ReferenceScore("HellaSwag", 40.9, _SMOL, "instruct", _CARD, _smollm2("135M")),
        ReferenceScore("PIQA", 66.3, _SMOL, "instruct", _CARD, _smollm2("135M")),
        ReferenceScore("IFEval", 29.9, "0-shot, average of prompt/instruction acc", "instruct",
                       _CARD, _smollm2("135M")),
        ReferenceScore("GSM8K", 1.4, "5-shot, lighteval", "instruct", _CARD, _smollm2("135M")),
    ),
    "HuggingFaceTB/SmolLM2-360M-Instruct": (
        ReferenceScore("MMLU (cloze)", 32.8, _SMOL, "instruct", _CARD, _smollm2("360M")),
        ReferenceScore("ARC (average of Easy and Challenge)", 43.7, _SMOL, "instruct", _CARD,
                       _smollm2("360M")),
        ReferenceScore("HellaSwag", 52.1, _SMOL, "instruct", _CARD, _smollm2("360M")),
        ReferenceScore("PIQA", 70.8, _SMOL, "instruct", _CARD, _smollm2("360M")),
        ReferenceScore("IFEval", 41.0, "0-shot, average of prompt/instruction acc", "instruct",
                       _CARD, _smollm2("360M")),
        ReferenceScore("GSM8K", 7.43, "5-shot, lighteval", "instruct", _CARD, _smollm2("360M")),
    ),
    # The 1.7B card reports MMLU-Pro (multiple-choice format), not MMLU.
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": (
        ReferenceScore("MMLU-Pro (MCF)", 19.3, _SMOL, "instruct", _CARD, _smollm2("1.7B")),
        ReferenceScore("ARC (average of Easy and Challenge)", 51.7, _SMOL, "instruct", _CARD,
                       _smollm2("1.7B")),
        ReferenceScore("HellaSwag", 66.1, _SMOL, "instruct", _CARD, _smollm2("1.7B")),
        ReferenceScore("PIQA", 74.4, _SMOL, "instruct", _CARD, _smollm2("1.7B")),
        ReferenceScore("IFEval", 56.7, "0-shot, average of prompt/instruction acc", "instruct",
                       _CARD, _smollm2("1.7B")),
        ReferenceScore("GSM8K", 48.2, "5-shot, lighteval", "instruct", _CARD, _smollm2("1.7B")),
    ),
    # The Gemma card gives shots but not the metric.
    "google/gemma-3-270m": (
        ReferenceScore("HellaSwag", 40.9, "10-shot", "base", _CARD, _GEMMA3_CARD),
        ReferenceScore("ARC-Challenge", 29.0, "25-shot", "base", _CARD, _GEMMA3_CARD),
        ReferenceScore("PIQA", 67.7, "0-shot", "base", _CARD, _GEMMA3_CARD),
        ReferenceScore("WinoGrande", 52.0, "5-shot", "base", _CARD, _GEMMA3_CARD),
    ),
    "google/gemma-3-270m-it": (
        ReferenceScore("HellaSwag", 37.7, "0-shot", "instruct", _CARD, _GEMMA3_CARD),
        ReferenceScore("ARC-Challenge", 28.2, "0-shot", "instruct", _CARD, _GEMMA3_CARD),
        ReferenceScore("PIQA", 66.2, "0-shot", "instruct", _CARD, _GEMMA3_CARD),
        ReferenceScore("WinoGrande", 52.3, "0-shot", "instruct", _CARD, _GEMMA3_CARD),
        ReferenceScore("IFEval", 51.2, "0-shot", "instruct", _CARD, _GEMMA3_CARD),
    ),
    # Meta publishes no chat-model MMLU for Llama 2; this is the 7B base model.
    "meta-llama/Llama-2-7b-chat-hf": (
        ReferenceScore("MMLU", 45.3, "5-shot", "base",
                       "paper: Llama 2: Open Foundation and Fine-Tuned Chat Models (Table 3)",
                       _LLAMA2_PAPER),
    ),
    "meta-llama/Llama-3.1-8B-Instruct": (
        ReferenceScore("MMLU", 69.4, "5-shot, macro_avg/acc", "instruct", _CARD, _LLAMA31_CARD),
        ReferenceScore("ARC-Challenge", 83.4, "0-shot, acc", "instruct", _CARD, _LLAMA31_CARD),
        ReferenceScore("HumanEval", 72.6, "0-shot, pass@1", "instruct", _CARD, _LLAMA31_CARD),
        ReferenceScore("GSM8K (CoT)", 84.5, "8-shot, em_maj1@1", "instruct", _CARD, _LLAMA31_CARD),
        # The 3.1 card leaves IFEval's setting blank; the 3.2 card gives it for the same figure.
        ReferenceScore("IFEval", 80.4, "0-shot, avg of prompt/instruction acc, loose/strict",
                       "instruct", "model card (Llama 3.2 card, Llama 3.1 8B column)",
                       _LLAMA32_CARD),
        ReferenceScore("HellaSwag", 78.7, "0-shot, acc", "instruct",
                       "model card (Llama 3.2 card, Llama 3.1 8B column)", _LLAMA32_CARD),
    ),
    "EleutherAI/pythia-1.4b": _pythia_mamba(52.1, 28.5, 71.0, 57.2, 61.7),
    "EleutherAI/pythia-2.8b": _pythia_mamba(59.3, 32.9, 74.0, 59.7, 64.7),
    "EleutherAI/pythia-160m": _pythia_mamba(30.2, 24.1, 61.4, 51.9, 33.0),
    "EleutherAI/pythia-410m": _pythia_mamba(40.6, 24.6, 66.9, 53.8, 51.4),
}
