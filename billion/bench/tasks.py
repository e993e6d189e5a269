"""Multiple-choice tasks as data: where the items come from, how they are prompted, which metric counts.

Prompts follow lm-evaluation-harness: a description, few-shot examples joined by a blank line, then
the query; each choice is scored as the continuation " " + choice (letters for MMLU-style tasks).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Literal

from billion.core.errors import BillionError
from billion.core.paths import ASSETS

ChoiceFormat = Literal["letters", "text"]
Metric = Literal["acc", "acc_norm"]
Sampler = Literal["first_n", "random"]

LETTERS = "ABCDEFGHIJ"
FEWSHOT_DELIMITER = "\n\n"
TARGET_DELIMITER = " "
#: the harness's default few-shot seed
DEFAULT_SEED = 1234
MMLU_DESCRIPTION = "The following are multiple choice questions (with answers) about {subject}.\n\n"
OFFLINE_DIR = ASSETS / "offline_mc"
OFFLINE_SUITE = "billion-mc"
HUB_HINT = (f"hub unreachable: use the offline suite '{OFFLINE_SUITE}' or connect to the internet "
            "(if the dataset is already cached, set HF_HUB_OFFLINE=1 to read it from the cache)")
CATEGORY_SUBJECTS = {
    "science": "science",
    "arithmetic": "arithmetic",
    "geography_history": "geography and history",
    "common_sense": "common sense",
    "code_reading": "code reading",
}


@dataclass(frozen=True)
class McItem:
    """One question: its text, its choices and the index of the right one."""

    id: str
    question: str
    choices: tuple[str, ...]
    answer: int
    #: MMLU subject or suite category; "first_n" few-shot examples come from the same group
    group: str = ""
    #: the group as words, for the task description ("high school biology")
    subject: str = ""


@dataclass(frozen=True)
class McData:
    """The evaluated split and the separate split few-shot examples are drawn from."""

    items: tuple[McItem, ...]
    fewshot: tuple[McItem, ...]


@dataclass(frozen=True)
class McTask:
    """A multiple-choice benchmark, described as data."""

    name: str
    display_name: str
    #: where the items come from, for the leaderboard ("cais/mmlu, test split")
    source: str
    n_shot: int
    #: the metric reported as the task's score
    metric: Metric
    #: "letters": choices listed in the prompt, scored as " A".." D"; "text": scored as " {choice}"
    choice_format: ChoiceFormat
    #: nominal chance level (the result reports the exact one over the items scored)
    chance: float
    loader: Callable[[], McData]
    #: how the query is written for "text" tasks; letters tasks list the choices after the question
    query_template: str = "{question}"
    #: put before the few-shot examples; {subject} is the item's subject
    description: str = ""
    #: "first_n": the first n examples of the item's group (MMLU); "random": seeded sample of the pool
    sampler: Sampler = "first_n"
    aliases: tuple[str, ...] = ()
    #: only the offline suite works without the hub
    offline: bool = False


@dataclass(frozen=True)
class McPrompt:
    """What the scorer sees for one item."""

    context: str
    #: scored strings, target delimiter included (" A", " Paris")
    continuations: tuple[str, ...]
    #: the harness's doc_to_choice: acc_norm divides by their lengths in characters
    choice_texts: tuple[str, ...]
    answer: int


# -- prompts -------------------------------------------------------------------------------------

def choice_texts(task: McTask, item: McItem) -> tuple[str, ...]:
    if task.choice_format == "letters":
        return tuple(LETTERS[: len(item.choices)])
    return item.choices


def format_query(task: McTask, item: McItem) -> str:
    """The harness's doc_to_text."""
    if task.choice_format == "letters":
        lines = [item.question.strip()]
        lines += [f"{letter}. {choice}" for letter, choice in zip(LETTERS, item.choices)]
        return "\n".join(lines) + "\nAnswer:"
    return task.query_template.format(question=item.question)


def format_example(task: McTask, item: McItem) -> str:
    """A solved example: query, target delimiter, the right choice."""
    return format_query(task, item) + TARGET_DELIMITER + choice_texts(task, item)[item.answer]


def fewshot_examples(task: McTask, data: McData, item: McItem, seed: int = DEFAULT_SEED) -> tuple[McItem, ...]:
    if task.n_shot == 0:
        return ()
    pool = [ex for ex in data.fewshot if ex.id != item.id]
    if task.sampler == "first_n":
        same_group = [ex for ex in pool if ex.group == item.group]
        return tuple((same_group if len(same_group) >= task.n_shot else pool)[: task.n_shot])
    # Seeded per item, so a --limit run shows each item the examples the full run shows it.
    rng = random.Random(f"{seed}/{item.id}")
    return tuple(rng.sample(pool, min(task.n_shot, len(pool))))


def build_prompt(task: McTask, data: McData, item: McItem, seed: int = DEFAULT_SEED) -> McPrompt:
    shots = fewshot_examples(task, data, item, seed)
    description = task.description.format(subject=item.subject) if task.description else ""
    examples = "".join(format_example(task, ex) + FEWSHOT_DELIMITER for ex in shots)
    texts = choice_texts(task, item)
    return McPrompt(context=description + examples + format_query(task, item),
                    continuations=tuple(TARGET_DELIMITER + text for text in texts),
                    choice_texts=texts, answer=item.answer)


# -- the offline suite ---------------------------------------------------------------------------

def read_suite_file(path: Path) -> tuple[McItem, ...]:
    """Read and check one JSONL split of the offline suite."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        choices = tuple(row["choices"])
        if row["category"] not in CATEGORY_SUBJECTS or not 0 <= row["answer"] < len(choices):
            raise BillionError(f"{path}:{number}: unknown category or answer index; restore the file from git")
        items.append(McItem(id=row["id"], question=row["question"], choices=choices, answer=row["answer"],
                            group=row["category"], subject=CATEGORY_SUBJECTS[row["category"]]))
    return tuple(items)


def offline_suite_text() -> str:
    """The offline suite's scored questions with their right answers, as one text (what
    billion.core.fidelity compares precisions on: no model here has trained on it)."""
    return "\n".join(f"Question: {item.question}\nAnswer: {item.choices[item.answer]}"
                     for item in read_suite_file(OFFLINE_DIR / "test.jsonl"))


@lru_cache(maxsize=1)
def load_offline_suite() -> McData:
    return McData(items=read_suite_file(OFFLINE_DIR / "test.jsonl"),
                  fewshot=read_suite_file(OFFLINE_DIR / "dev.jsonl"))


# -- hub datasets --------------------------------------------------------------------------------

def load_hub_dataset(path: str, name: str | None) -> Any:
    """datasets.load_dataset, or a BillionError naming the offline suite when the hub is out of reach."""
    import datasets

    from billion.core.availability import hub_answers, hub_offline

    # Checked first: unreachable, load_dataset retries for about half a minute before failing.
    if not hub_offline() and not hub_answers(timeout_s=3.0):
        raise BillionError(f"{HUB_HINT} (needed: {path})")
    try:
        return datasets.load_dataset(path, name)
    except OSError as exc:  # ConnectionError and the not-found errors are OSErrors
        raise BillionError(f"{HUB_HINT} (needed: {path}: {exc})") from exc


def _mmlu_item(row: dict, item_id: str) -> McItem:
    return McItem(id=item_id, question=row["question"], choices=tuple(row["choices"]), answer=int(row["answer"]),
                  group=row["subject"], subject=row["subject"].replace("_", " "))


@lru_cache(maxsize=1)
def load_mmlu() -> McData:
    ds = load_hub_dataset("cais/mmlu", "all")
    return McData(items=tuple(_mmlu_item(r, f"mmlu-test-{i}") for i, r in enumerate(ds["test"])),
                  fewshot=tuple(_mmlu_item(r, f"mmlu-dev-{i}") for i, r in enumerate(ds["dev"])))


def _arc_item(row: dict) -> McItem:
    return McItem(id=row["id"], question=row["question"], choices=tuple(row["choices"]["text"]),
                  answer=row["choices"]["label"].index(row["answerKey"]))


@lru_cache(maxsize=1)
def load_arc_challenge() -> McData:
    ds = load_hub_dataset("allenai/ai2_arc", "ARC-Challenge")
    return McData(items=tuple(_arc_item(r) for r in ds["test"]), fewshot=tuple(_arc_item(r) for r in ds["train"]))


def hellaswag_preprocess(text: str) -> str:
    """The harness's cleanup: WikiHow bracket artefacts removed, double spaces collapsed."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _hellaswag_item(row: dict, split: str) -> McItem:
    context = row["ctx_a"] + " " + row["ctx_b"].capitalize()
    return McItem(id=f"hellaswag-{split}-{row['ind']}",
                  question=hellaswag_preprocess(row["activity_label"] + ": " + context),
                  choices=tuple(hellaswag_preprocess(e) for e in row["endings"]), answer=int(row["label"]))


@lru_cache(maxsize=1)
def load_hellaswag() -> McData:
    ds = load_hub_dataset("Rowan/hellaswag", None)
    return McData(items=tuple(_hellaswag_item(r, "val") for r in ds["validation"]),
                  fewshot=tuple(_hellaswag_item(r, "train") for r in ds["train"]))


# -- the task list -------------------------------------------------------------------------------

TASKS: tuple[McTask, ...] = (
    McTask(name=OFFLINE_SUITE, display_name="billion offline MC (written for this project)",
           source="assets/offline_mc: questions written for billion, 5-shot from its dev split",
           n_shot=5, metric="acc", choice_format="letters", chance=0.25, loader=load_offline_suite,
           description=MMLU_DESCRIPTION, sampler="first_n", aliases=("offline-mc",), offline=True),
    McTask(name="billion-mc-cloze", display_name="billion offline MC, cloze format (written for this project)",
           source="assets/offline_mc, each choice scored as text (ARC-style), 5-shot from its dev split",
           n_shot=5, metric="acc_norm", choice_format="text", chance=0.25, loader=load_offline_suite,
           query_template="Question: {question}\nAnswer:", sampler="first_n", aliases=("offline-mc-cloze",),
           offline=True),
    McTask(name="mmlu", display_name="MMLU", source="cais/mmlu, test split, 5-shot from dev",
           n_shot=5, metric="acc", choice_format="letters", chance=0.25, loader=load_mmlu,
           description=MMLU_DESCRIPTION, sampler="first_n"),
    McTask(name="arc-challenge", display_name="ARC-Challenge",
           source="allenai/ai2_arc ARC-Challenge, test split, 25-shot from train",
           n_shot=25, metric="acc_norm", choice_format="text", chance=0.25, loader=load_arc_challenge,
           query_template="Question: {question}\nAnswer:", sampler="random", aliases=("arc_challenge", "arc")),
    McTask(name="hellaswag", display_name="HellaSwag", source="Rowan/hellaswag, validation split, 10-shot from train",
           n_shot=10, metric="acc_norm", choice_format="text", chance=0.25, loader=load_hellaswag,
           sampler="random"),
)


def get_task(name: str) -> McTask:
    key = name.strip().lower()
    for task in TASKS:
        if key == task.name or key in task.aliases:
            return task
    raise BillionError(f"unknown multiple-choice task {name!r}; choose one of: "
                       + ", ".join(t.name for t in TASKS))
