"""Task definitions: prompt formats as the harness writes them, the offline suite's integrity, hub errors."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections import Counter
from dataclasses import replace

import pytest

from billion.bench import tasks
from billion.bench.tasks import McData, McItem, build_prompt, fewshot_examples, get_task
from billion.core.errors import BillionError

CATEGORIES = ("science", "arithmetic", "geography_history", "common_sense", "code_reading")


def rows(split: str) -> list[dict]:
    lines = (tasks.OFFLINE_DIR / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# -- the offline suite ---------------------------------------------------------------------------

def test_suite_files_are_well_formed():
    test, dev = rows("test"), rows("dev")
    assert len(test) >= 200
    for row in test + dev:
        assert set(row) == {"id", "category", "question", "choices", "answer"}
        assert len(row["choices"]) == 4 and len(set(row["choices"])) == 4
        assert all(isinstance(c, str) and c.strip() == c and c for c in row["choices"])
        assert isinstance(row["answer"], int) and 0 <= row["answer"] < 4
        assert row["question"].strip() and "\n\n" not in row["question"]
    ids = [r["id"] for r in test + dev]
    assert len(ids) == len(set(ids))
    counts, dev_counts = Counter(r["category"] for r in test), Counter(r["category"] for r in dev)
    assert set(counts) == set(CATEGORIES) == set(dev_counts)
    assert min(counts.values()) >= 40 and min(dev_counts.values()) >= 5
    assert not {r["question"] for r in test} & {r["question"] for r in dev}
    assert len({r["question"] for r in test}) == len(test)


def test_answer_positions_are_balanced():
    positions = Counter(r["answer"] for r in rows("test"))
    assert all(abs(n - len(rows("test")) / 4) <= 10 for n in positions.values())


def test_code_reading_answers_are_what_the_code_prints():
    checked = 0
    for row in rows("test") + rows("dev"):
        if row["category"] != "code_reading":
            continue
        code = row["question"].split("\n", 1)[1]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(code, {})
        assert row["choices"][row["answer"]] == out.getvalue().strip(), row["id"]
        assert out.getvalue().strip() not in [c for i, c in enumerate(row["choices"]) if i != row["answer"]]
        checked += 1
    assert checked >= 45


def test_plain_arithmetic_answers_are_right():
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "x": lambda a, b: a * b}
    checked = 0
    for row in rows("test") + rows("dev"):
        match = re.fullmatch(r"What is (\d+) ([+\-x]) (\d+)\?", row["question"])
        if match:
            a, op, b = match.groups()
            assert row["choices"][row["answer"]] == str(ops[op](int(a), int(b))), row["id"]
            checked += 1
    assert checked >= 15


def test_loader_reads_both_splits():
    data = tasks.load_offline_suite()
    assert len(data.items) == len(rows("test")) and len(data.fewshot) == len(rows("dev"))
    assert {i.subject for i in data.items} == set(tasks.CATEGORY_SUBJECTS.values())


# -- prompts -------------------------------------------------------------------------------------

DEV = (McItem("d1", "What is 2 + 2?", ("3", "4", "5", "6"), 1, "arithmetic", "arithmetic"),
       McItem("d2", "Which is a colour?", ("red", "seven", "run", "under"), 0, "common_sense", "common sense"),
       McItem("d3", "What is 1 + 1?", ("2", "1", "0", "11"), 0, "arithmetic", "arithmetic"))
ITEM = McItem("t1", "What is 3 + 3?", ("5", "9", "6", "33"), 2, "arithmetic", "arithmetic")


def test_letters_prompt_is_the_harness_mmlu_format():
    task = replace(get_task("mmlu"), n_shot=2)
    prompt = build_prompt(task, McData(items=(ITEM,), fewshot=DEV), ITEM)
    assert prompt.context == (
        "The following are multiple choice questions (with answers) about arithmetic.\n\n"
        "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer: B\n\n"
        "What is 1 + 1?\nA. 2\nB. 1\nC. 0\nD. 11\nAnswer: A\n\n"
        "What is 3 + 3?\nA. 5\nB. 9\nC. 6\nD. 33\nAnswer:")
    assert prompt.continuations == (" A", " B", " C", " D")
    assert prompt.choice_texts == ("A", "B", "C", "D") and prompt.answer == 2


def test_cloze_prompt_is_the_harness_arc_format():
    task = replace(get_task("billion-mc-cloze"), n_shot=2)
    prompt = build_prompt(task, McData(items=(ITEM,), fewshot=DEV), ITEM)
    assert prompt.context == ("Question: What is 2 + 2?\nAnswer: 4\n\n"
                              "Question: What is 1 + 1?\nAnswer: 2\n\n"
                              "Question: What is 3 + 3?\nAnswer:")
    assert prompt.continuations == (" 5", " 9", " 6", " 33")
    assert prompt.choice_texts == ITEM.choices


def test_offline_suite_uses_five_dev_examples_of_the_same_category():
    task, data = get_task("billion-mc"), tasks.load_offline_suite()
    for item in (data.items[0], data.items[-1]):
        shots = fewshot_examples(task, data, item)
        assert len(shots) == 5 and all(s.group == item.group for s in shots)
        assert {s.id for s in shots} <= {d.id for d in data.fewshot}
        context = build_prompt(task, data, item).context
        assert context.startswith(f"The following are multiple choice questions (with answers) about {item.subject}.")
        assert context.count("\nAnswer: ") == 5 and context.endswith("\nAnswer:")


def test_random_fewshot_is_seeded_per_item_and_never_the_item_itself():
    task = get_task("arc-challenge")
    pool = tuple(McItem(f"p{i}", f"q{i}", ("a", "b", "c", "d"), 0) for i in range(40))
    data = McData(items=pool[:1], fewshot=pool)
    shots = fewshot_examples(task, data, pool[0])
    assert len(shots) == 25 and pool[0] not in shots and len(set(shots)) == 25
    assert fewshot_examples(task, data, pool[0]) == shots
    assert fewshot_examples(task, data, pool[0], seed=99) != shots


def test_hellaswag_preprocessing_matches_the_harness():
    row = {"ind": 4, "activity_label": "Making a cake", "ctx_a": "A woman mixes flour [title] in a bowl.",
           "ctx_b": "she", "endings": ["adds  eggs [step] slowly.", "flies away."], "label": "0"}
    item = tasks._hellaswag_item(row, "val")
    assert item.question == "Making a cake: A woman mixes flour. in a bowl. She"
    assert item.choices == ("adds eggs slowly.", "flies away.") and item.answer == 0


# -- the task list and the hub -------------------------------------------------------------------

def test_tasks_are_found_by_name_and_alias():
    assert get_task("offline-mc").name == "billion-mc"
    assert get_task("ARC-Challenge").n_shot == 25 and get_task("hellaswag").n_shot == 10
    assert get_task("mmlu").metric == "acc" and get_task("hellaswag").metric == "acc_norm"
    assert "MMLU" not in get_task("billion-mc").display_name
    with pytest.raises(BillionError, match="billion-mc"):
        get_task("mmlu-pro")


@pytest.mark.parametrize("name", ["mmlu", "arc-challenge", "hellaswag"])
def test_hub_task_offline_raises_a_billion_error(name):
    # conftest sets HF_HUB_OFFLINE=1, and no hub dataset is cached on a test machine.
    with pytest.raises(BillionError, match="use the offline suite 'billion-mc'"):
        get_task(name).loader()


def test_unreachable_hub_fails_fast(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(BillionError, match="hub unreachable"):
        tasks.load_hub_dataset("cais/mmlu", "all")
