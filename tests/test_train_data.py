"""Training data: formats, row-level problems, bad files, masking and previews."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from billion.core.errors import BillionError
from billion.core.paths import ASSETS
from billion.core.registry import FALLBACK_TEMPLATE
from billion.train.data import Example, load_dataset
from billion.train.tokens import (IGNORE, chat_template, length_histogram, pad_batch, preview,
                                  preview_dataset, tokenize_dataset, tokenize_example)

QA = [("What is 2 + 2?", "4, of course."), ("Name a colour.", "Blue."), ("Say hi.", "Hi there!")]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ---- formats --------------------------------------------------------------------------------------

def test_alpaca_jsonl_with_input_and_system(tmp_path):
    rows = [{"instruction": q, "input": "" if i else "context", "output": a, "system": "Be brief."}
            for i, (q, a) in enumerate(QA)]
    data = load_dataset(write_jsonl(tmp_path / "a.jsonl", rows))
    assert (data.report.format, data.report.rows, data.report.usable) == ("alpaca", 3, 3)
    first = data.examples[0].messages
    assert [m["role"] for m in first] == ["system", "user", "assistant"]
    assert first[1]["content"] == "What is 2 + 2?\n\ncontext"
    assert data.examples[1].messages[1]["content"] == "Name a colour."


def test_messages_json_list_and_wrapped(tmp_path):
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in QA]
    (tmp_path / "m.json").write_text(json.dumps(rows))
    (tmp_path / "w.json").write_text(json.dumps({"data": rows}))
    for name in ("m.json", "w.json"):
        data = load_dataset(tmp_path / name)
        assert (data.report.format, data.report.usable) == ("messages", 3)
        assert data.examples[2].messages[-1] == {"role": "assistant", "content": "Hi there!"}


def test_sharegpt_parquet(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]} for q, a in QA]
    pd.DataFrame(rows).to_parquet(tmp_path / "s.parquet")
    data = load_dataset(tmp_path / "s.parquet")
    assert (data.report.format, data.report.usable) == ("sharegpt", 3)
    assert data.examples[0].messages == ({"role": "user", "content": QA[0][0]},
                                         {"role": "assistant", "content": QA[0][1]})


def test_prompt_completion_csv_keeps_formulas_as_text(tmp_path):
    path = tmp_path / "p.csv"
    pd.DataFrame({"prompt": ["Sum it", "Minus", "ok"],
                  "completion": ["=SUM(A1:A3)", "-1 is negative", "@user hi"]}).to_csv(path, index=False)
    data = load_dataset(path)
    assert (data.report.format, data.report.usable) == ("prompt_completion", 3)
    assert data.examples[0].messages[1]["content"] == "=SUM(A1:A3)"
    assert any("3 CSV cell(s)" in w and "plain text" in w for w in data.report.warnings)


def test_txt_blocks_and_lines(tmp_path):
    (tmp_path / "b.txt").write_text("first block\nstill first\n\n\nsecond block\n")
    (tmp_path / "l.txt").write_text("line one\nline two\nline three\n")
    blocks = load_dataset(tmp_path / "b.txt")
    assert blocks.report.format == "text"
    assert [e.messages[0]["content"] for e in blocks.examples] == ["first block\nstill first", "second block"]
    assert [e.row for e in blocks.examples] == [1, 5]
    assert all(e.raw_text for e in blocks.examples)
    assert load_dataset(tmp_path / "l.txt").report.usable == 3


def test_sample_dataset_is_valid():
    data = load_dataset(ASSETS / "sample_lora" / "pirate.jsonl")
    assert data.report.format == "alpaca"
    assert data.report.usable == data.report.rows >= 100
    assert not data.report.problems
    held_out = json.loads((ASSETS / "sample_lora" / "held_out.json").read_text())
    trained = {e.messages[-2]["content"] for e in data.examples}
    assert held_out and not set(held_out) & trained


# ---- bad input --------------------------------------------------------------------------------------

def test_row_level_problems(tmp_path):
    rows = [{"instruction": "ok", "output": "fine"},
            {"instruction": "no answer"},
            {"instruction": "blank", "output": "   "},
            {"instruction": ["not", "text"], "output": "x"},
            {"foo": 1}]
    path = write_jsonl(tmp_path / "r.jsonl", rows)
    with path.open("a") as f:
        f.write('{"instruction": "broken", "output": \n')
    report = load_dataset(path).report
    messages = [str(p) for p in report.problems]
    assert report.usable == 1 and report.rows == 6
    assert "row 2: field `output` is missing" in messages
    assert "row 3: field `output` is empty" in messages
    assert "row 4: field `instruction` is not text (got list)" in messages
    assert any(m.startswith("row 5: has no known fields (found `foo`)") for m in messages)
    assert any(m.startswith("row 6: is not valid JSON") for m in messages)


def test_chat_turn_problems(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
            {"messages": [{"role": "user", "content": "only a question"}]},
            {"messages": [{"role": "robot", "content": "x"}]},
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]},
            {"messages": []}]
    report = load_dataset(write_jsonl(tmp_path / "c.jsonl", rows)).report
    messages = [str(p) for p in report.problems]
    assert report.usable == 1
    assert "row 2: `messages` has no assistant turn to learn from" in messages
    assert any(m.startswith("row 3: `messages` turn 1 has unknown role 'robot'") for m in messages)
    assert "row 4: `messages` turn 2 (assistant) has an empty `content`" in messages
    assert "row 5: field `messages` must be a non-empty list of turns" in messages


def test_mixed_formats_use_the_majority(tmp_path):
    rows = [{"instruction": q, "output": a} for q, a in QA] + [{"prompt": "p", "completion": "c"}]
    report = load_dataset(write_jsonl(tmp_path / "mix.jsonl", rows)).report
    assert report.format == "alpaca" and report.usable == 3
    assert str(report.problems[0]).startswith("row 4: is in prompt_completion format but the file is alpaca")
    assert any("mixed formats (3 alpaca, 1 prompt_completion)" in w for w in report.warnings)


@pytest.mark.parametrize("name, content, expected", [
    ("empty.jsonl", b"  \n\n", "is empty"),
    ("binary.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
    ("latin1.jsonl", '{"text": "café"}\n{"text": "naïve"}\n'.encode("latin-1"), "not valid UTF-8 (line 1"),
    ("bad.json", b'[{"text": "a"},\n {"text": ]', "not valid JSON (Expecting value at line 2"),
    ("table.parquet", b"not,a,parquet\n", "is not a Parquet file"),
    ("nothing.jsonl", b'{"instruction": "q", "output": ""}\n', "no usable row: row 1: field `output` is empty"),
    ("unknown.jsonl", b'{"question": "q", "answer": "a"}\n', "No row is in a known format"),
    ("data.xlsx", b"whatever", "unsupported file type"),
])
def test_bad_files_raise_clear_errors(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BillionError, match=expected.replace("(", r"\(").replace("`", "`")):
        load_dataset(path)


def test_size_limit(tmp_path):
    path = write_jsonl(tmp_path / "big.jsonl", [{"text": "x" * 100}] * 20)
    with pytest.raises(BillionError, match="over the 0 MB limit"):
        load_dataset(path, max_bytes=1000)
    assert load_dataset(path).report.usable == 20


# ---- tokens and masking -------------------------------------------------------------------------------

def example(*turns, raw=False):
    roles = ["user", "assistant"] * len(turns)
    return Example(row=1, messages=tuple({"role": r, "content": c} for r, c in zip(roles, turns)), raw_text=raw)


def split_by_label(tokenizer, item):
    trained = [t for t, label in zip(item.input_ids, item.labels) if label != IGNORE]
    masked = [t for t, label in zip(item.input_ids, item.labels) if label == IGNORE]
    assert all(label in (IGNORE, t) for t, label in zip(item.input_ids, item.labels))
    return tokenizer.decode(trained), tokenizer.decode(masked)


def test_labels_mask_exactly_the_prompt(tokenizer):
    item = tokenize_example(tokenizer, chat_template(tokenizer), example("hello there", "Hello! How can I help?"), 256)
    trained, masked = split_by_label(tokenizer, item)
    assert trained == "Hello! How can I help?<|im_end|>\n"
    assert masked == "<|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\n"


def test_multi_turn_trains_every_answer(tokenizer):
    item = tokenize_example(tokenizer, chat_template(tokenizer), example("a b", "one", "c d", "two"), 256)
    trained, masked = split_by_label(tokenizer, item)
    assert trained == "one<|im_end|>\ntwo<|im_end|>\n"
    assert "c d" in masked and "one" not in masked


def test_fallback_template_ends_answers_with_eos(tokenizer):
    item = tokenize_example(tokenizer, FALLBACK_TEMPLATE, example("hi", "hello"), 256)
    trained, masked = split_by_label(tokenizer, item)
    assert trained == " hello\n<|im_end|>"
    assert masked == "User: hi\nAssistant:"


def test_raw_text_trains_every_token(tokenizer):
    item = tokenize_example(tokenizer, chat_template(tokenizer), example("the cat sleeps", raw=True), 256)
    assert item.labels == item.input_ids
    assert tokenizer.decode(item.input_ids) == "the cat sleeps<|im_end|>"


def test_padding_is_never_trained(tokenizer):
    data = tokenize_dataset(tokenizer, [example("hello there", "Hi!"), example("a", "b " * 30)], cutoff=256)
    batch = pad_batch([{"input_ids": e.input_ids, "labels": e.labels} for e in data.examples],
                      pad_id=tokenizer.pad_token_id)
    short = len(data.examples[0].input_ids)
    assert batch["input_ids"].shape[1] == len(data.examples[1].input_ids) > short
    assert batch["attention_mask"][0, short:].eq(0).all() and batch["attention_mask"][0, :short].eq(1).all()
    assert batch["labels"][0, short:].eq(IGNORE).all()
    assert batch["labels"][0, :short].tolist() == list(data.examples[0].labels)


def test_cutoff_truncates_with_warning_and_skips_answerless_rows(tokenizer):
    long_answer = example("q", "word " * 200)
    long_prompt = Example(row=7, messages=({"role": "user", "content": "x " * 200},
                                           {"role": "assistant", "content": "late"}))
    data = tokenize_dataset(tokenizer, [long_answer, long_prompt], cutoff=32)
    assert len(data.examples) == 1 and len(data.examples[0].input_ids) == 32
    assert data.examples[0].truncated and data.examples[0].full_length > 32
    assert "1 row(s) are longer than the cutoff of 32 tokens" in data.warnings[0]
    assert str(data.problems[0]).startswith("row 7: its answer starts after the cutoff of 32")


def test_preview_spans_follow_the_labels(tokenizer):
    shown = preview(tokenizer, [example("hello there", "Hello! How can I help?")], cutoff=256)[0]
    assert [s.trained for s in shown.spans] == [False, True]
    assert shown.spans[1].text == "Hello! How can I help?<|im_end|>\n"
    assert shown.tokens == sum(1 for _ in tokenizer("".join(s.text for s in shown.spans),
                                                    add_special_tokens=False)["input_ids"])
    cut = preview(tokenizer, [example("hello there", "word " * 50)], cutoff=10)[0]
    assert cut.tokens == 10 and cut.cut_text.endswith("word <|im_end|>\n")


def test_length_histogram():
    hist = length_histogram([10, 20, 300, 50], cutoff=256, bins=10)
    assert sum(hist.counts) == 4 and hist.over_cutoff == 1
    assert hist.edges[0] == 0 and hist.edges[-1] > 300
    width = hist.edges[1] - hist.edges[0]
    assert hist.counts[10 // width] >= 1 and hist.counts[300 // width] == 1
    assert all(hist.edges[i] <= n < hist.edges[i + 1] for n in (10, 20, 50, 300)
               for i in [n // width])


def test_preview_dataset_for_the_ui(tokenizer):
    rows = [example("hi", "short"), example("q", "word " * 100), example("x " * 100, "late")]
    shown = preview_dataset(tokenizer, rows, cutoff=40, count=2)
    assert len(shown.examples) == 2 and shown.examples[1].cut_text
    assert sum(shown.histogram.counts) == 2 and shown.histogram.over_cutoff == 1
    assert len(shown.problems) == 1 and "cutoff" in shown.warnings[0]


def test_csv_unterminated_quote_names_the_row_and_keeps_the_others(tmp_path):
    """Fix 8: an unclosed quote was reported as "field `completion` is empty"."""
    path = tmp_path / "pc.csv"
    path.write_text('prompt,completion\nhi,hello\n"oops,there\nbye,see you\nok,fine\n')
    report = load_dataset(path).report
    assert report.usable == 1
    [problem] = report.problems
    assert problem.row == 3 and "never closed" in problem.message and "lines 3 to 5" in problem.message


def test_one_binary_jsonl_line_is_a_row_problem_not_a_binary_file(tmp_path):
    """Fix 8: one binary line among good rows rejected the whole file as "binary"."""
    good = json.dumps({"instruction": "q", "output": "a"}).encode()
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join([good, b"\x89PNG\x00\x00\x1a", good, b"caf\xe9", good]) + b"\n")
    report = load_dataset(path).report
    assert report.usable == 3
    assert [(p.row, p.message.split(",")[0].split(" (")[0]) for p in report.problems] == [
        (2, "is binary data"), (4, "is not UTF-8 text")]
