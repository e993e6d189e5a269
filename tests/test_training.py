"""LoRA training on tiny random models: loss, masking in the loss, adapters, stop, slices, CLI."""

from __future__ import annotations

import argparse
import json
import time
import zipfile
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from billion.core.errors import BillionError
from billion.store.store import Store
from billion.train.config import TrainConfig, resolve_precision
from billion.train.data import load_dataset
from billion.train.lora import target_modules
from billion.train.manager import RunManager
from billion.train.runs import create_run, read_events, read_run, train_slice
from billion.train.session import TrainingSession, comparison_settings, split_rows
from billion.train.tokens import pad_batch, tokenize_dataset
from billion.train.trainer import AnswerOnlyTrainer

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(tiny_dir, **changes) -> TrainConfig:
    # A random tiny model's LM head is too weak to move its logits; an adapter on it learns fast.
    values = dict(model=str(tiny_dir), rank=8, alpha=16, dropout=0.0, target_modules="q_proj,v_proj,lm_head",
                  learning_rate=2e-2, max_steps=12, batch_size=4, eval_fraction=0.25, precision="fp32",
                  device="cpu", warmup_fraction=0.0, seed=0)
    return TrainConfig(**{**values, **changes})


@pytest.fixture(scope="module")
def trained(tiny_dir, data_file, tmp_path_factory):
    """One short run, shared by the tests that inspect its outcome."""
    out = tmp_path_factory.mktemp("run")
    session = TrainingSession(tiny_config(tiny_dir), load_dataset(data_file).examples, out)
    before = session.evaluate()
    outcome = session.train()
    return session, before, outcome


def test_config_validation():
    with pytest.raises(BillionError, match="rank must be at least 1"):
        TrainConfig(rank=0).validate()
    with pytest.raises(BillionError, match="unknown precision"):
        TrainConfig(precision="int3").validate()  # type: ignore[arg-type]
    assert TrainConfig.from_dict({**TrainConfig().to_dict(), "unknown": 1}) == TrainConfig()


def test_fp16_needs_cuda():
    with pytest.raises(BillionError, match="fp16 training needs a CUDA GPU"):
        resolve_precision("fp16", torch.device("cpu"))
    assert resolve_precision("auto", torch.device("cpu")) in ("bf16", "fp32")


def test_target_presets(llama, neox):
    assert target_modules(llama, "attention") == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert target_modules(neox, "attention") == ["dense", "query_key_value"]
    assert target_modules(llama, "all-linear") == "all-linear"
    assert target_modules(llama, "q_proj, up_proj") == ["q_proj", "up_proj"]
    with pytest.raises(BillionError, match="nope are not linear layers"):
        target_modules(llama, "nope")


def test_split_rows_is_seeded_and_disjoint():
    train, held = split_rows(list(range(20)), 0.25, seed=3)
    assert len(held) == 5 and sorted(train + held) == list(range(20))
    assert split_rows(list(range(20)), 0.25, seed=3) == (train, held)
    assert split_rows([1], 0.5, seed=0) == ([1], [])


def test_answer_only_loss_equals_the_full_loss(tokenizer, llama, data_file):
    """Skipping the LM head on prompt positions must not change the loss."""
    examples = tokenize_dataset(tokenizer, load_dataset(data_file).examples[:3], 256).examples
    batch = pad_batch([{"input_ids": e.input_ids, "labels": e.labels} for e in examples], tokenizer.pad_token_id)
    reference = llama(**batch).loss
    trainer = AnswerOnlyTrainer.__new__(AnswerOnlyTrainer)  # compute_loss uses no trainer state
    ours = trainer.compute_loss(llama, dict(batch))
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_loss_falls(trained):
    session, before, outcome = trained
    losses = [e.loss for e in session.events.since(0) if e.kind == "train"]
    assert outcome.finished and outcome.step == 12 and len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5
    after = session.evaluate()
    assert after < before - 0.5


def test_saved_adapter_reloads_with_the_same_logits(trained, tiny_dir, tmp_path):
    session, _, _ = trained
    from billion.train.session import zip_adapter

    adapter = session.save_adapter(tmp_path / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter.iterdir()}
    with zipfile.ZipFile(zip_adapter(adapter)) as archive:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= set(archive.namelist())
    ids = torch.tensor([[1, 5, 9, 20, 33, 2]])
    with torch.no_grad():
        expected = session.model(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_dir)
        plain = base(input_ids=ids).logits
        reloaded = PeftModel.from_pretrained(base, adapter).eval()(input_ids=ids).logits
    torch.testing.assert_close(reloaded, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(plain, expected, atol=1e-3)


def test_merged_export_matches_the_adapter(trained, tmp_path):
    session, _, _ = trained
    merged_dir = session.export_merged(tmp_path / "merged")
    ids = torch.tensor([[1, 7, 30, 2]])
    with torch.no_grad():
        expected = session.model(input_ids=ids).logits
        merged = AutoModelForCausalLM.from_pretrained(merged_dir)(input_ids=ids).logits
    torch.testing.assert_close(merged, expected, rtol=1e-4, atol=1e-4)
    assert any(type(m).__name__ == "LoraLayer" or hasattr(m, "lora_A") for m in session.model.modules())


def test_before_and_after_answers_use_one_model(trained, tokenizer):
    session, _, _ = trained
    pair = session.answers(["Say the secret."], max_new_tokens=12)[0]
    assert pair.before != pair.after
    # The same model object scores a trained answer far better with its adapter on than off.
    example = session.train_rows[0]
    batch = pad_batch([{"input_ids": example.input_ids, "labels": example.labels}], tokenizer.pad_token_id)
    with torch.no_grad():
        tuned = session.model(**batch).loss
        with session.model.disable_adapter():
            base = session.model(**batch).loss
    assert tuned < base - 1.0


def test_the_comparison_samples_as_the_model_recommends(tiny_dir, tmp_path):
    """Fix 12b (issue 14): before/after answers at the model's own sampling, not a fixed greedy."""
    from billion.core.recommended import recommended_sampling

    smol = comparison_settings("smollm2-135m", 40)
    assert (smol.temperature, smol.top_p, smol.max_new_tokens, smol.seed) == (
        recommended_sampling("smollm2-135m").settings.temperature, 0.9, 40, 0)
    assert smol.temperature == 0.2
    assert comparison_settings(str(tiny_dir)).greedy  # no recommendation: greedy, loops cut
    folder = tmp_path / "own-config"
    for path in tiny_dir.iterdir():
        (folder / path.name).parent.mkdir(exist_ok=True)
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "generation_config.json").write_text(json.dumps({"do_sample": True, "temperature": 1.3,
                                                               "top_p": 0.8}))
    assert (comparison_settings(str(folder)).temperature, comparison_settings(str(folder)).top_p) == (1.3, 0.8)


def test_the_answers_use_the_comparison_sampling_and_the_loop_guard(trained):
    from billion.core.loop_guard import generate_guarded

    session, _, _ = trained
    pair = session.answers(["Say the secret."], max_new_tokens=12)[0]
    settings = comparison_settings(session.config.model, 12)
    messages = [{"role": "user", "content": "Say the secret."}]
    assert pair.after == generate_guarded(session.loaded, messages, settings).shown.strip()
    with session.model.disable_adapter():
        assert pair.before == generate_guarded(session.loaded, messages, settings).shown.strip()


def test_probe_measures_and_keeps_the_adapter_fresh(tiny_dir, data_file, tmp_path):
    session = TrainingSession(tiny_config(tiny_dir, max_steps=40), load_dataset(data_file).examples, tmp_path)
    fresh = {k: v.clone() for k, v in session.model.state_dict().items() if "lora_" in k}
    probe = session.probe(steps=2, time_budget_s=1e-3)
    assert probe.tokens_per_s > 0 and probe.step_s > 0 and probe.total_steps == 40
    assert probe.eta_s > 0 and probe.peak_memory_bytes > 0
    assert any("over the" in w and "budget" in w for w in probe.warnings)
    for key, value in session.model.state_dict().items():
        if key in fresh:
            torch.testing.assert_close(value, fresh[key])


def test_stop_keeps_a_loadable_adapter(tiny_dir, data_file, tmp_path):
    store = Store(tmp_path / "runs.sqlite3")
    manager = RunManager(tmp_path, store=store)
    run_id = manager.start(tiny_config(tiny_dir, max_steps=500), load_dataset(data_file), ["Count."])
    deadline = time.monotonic() + 120
    while not [e for e in manager.events(run_id) if e.kind == "train"] and time.monotonic() < deadline:
        time.sleep(0.1)
    manager.stop(run_id)
    status = manager.wait(run_id, timeout=120)
    assert status.state == "stopped" and 0 < status.result.steps < 500
    assert status.result.answers[0].prompt == "Count."
    assert (Path(status.result.adapter_dir) / "adapter_model.safetensors").is_file()
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    PeftModel.from_pretrained(base, status.result.adapter_dir)
    runs = store.training_runs_frame().set_index("id")
    assert runs.loc[run_id, "status"] == "stopped" and runs.loc[run_id, "base_model"] == str(tiny_dir)
    assert runs.loc[run_id, "results"]["step"] == status.result.steps
    assert runs.loc[run_id, "data_hash"] == load_dataset(data_file).report.data_hash
    # A fresh manager (a reloaded page in a new process) re-attaches from the folder alone.
    again = RunManager(tmp_path)
    assert again.status(run_id).state == "stopped"
    assert len(again.events(run_id)) == status.events
    with pytest.raises(BillionError, match="No training run"):
        again.status("missing")
    store.close()


def test_slices_resume_from_the_checkpoint(tiny_dir, data_file, tmp_path):
    run_dir = create_run(tiny_config(tiny_dir, max_steps=4, eval_fraction=0.0), load_dataset(data_file),
                         root=tmp_path)
    # A budget that is already spent stops after the first step, deterministically.
    assert train_slice(run_dir, max_seconds=1e-6, probe_steps=2) is None
    assert read_run(run_dir)["results"]["probe"]["tokens_per_s"] > 0
    assert read_run(run_dir)["status"] == "paused"
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["checkpoint-1"]
    result = train_slice(run_dir)
    assert result is not None and result.steps == 4
    events = read_events(run_dir)
    assert [e.kind for e in events][0] == "probe"
    assert [e.step for e in events if e.kind == "train"] == [1, 2, 3, 4]  # the probe's steps are not the run's
    assert read_run(run_dir)["status"] == "done" and not (run_dir / "checkpoints").exists()


@pytest.mark.slow  # a child per run: test_manager.py::test_runs_at_once_per_person_and_in_all refuses the second run
def test_one_run_at_a_time(tiny_dir, data_file, tmp_path):
    manager = RunManager(tmp_path)
    first = manager.start(tiny_config(tiny_dir, max_steps=200), load_dataset(data_file))
    try:
        with pytest.raises(BillionError, match="still training"):
            manager.start(tiny_config(tiny_dir), load_dataset(data_file))
    finally:
        manager.stop(first)
        manager.wait(first, timeout=120)


@pytest.mark.slow  # 11 s; the CLI's dispatch is in test_cli.py, training itself in the tests above
def test_cli_finetune(tiny_dir, data_file, tmp_path, capsys, ctx):
    from billion.commands import finetune

    parser = argparse.ArgumentParser()
    finetune.register(parser.add_subparsers())
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(["Count."]))
    args = parser.parse_args(["finetune", "--model", str(tiny_dir), "--data", str(data_file), "--max-steps", "2",
                              "--precision", "fp32", "--prompts", str(prompts), "--out", str(tmp_path),
                              "--probe-steps", "1"])
    assert args.func(args, ctx) == 0
    out = capsys.readouterr().out
    assert "alpaca format, 12/12 usable rows" in out
    assert "probe:" in out and "step    2/2" in out and "eval loss" in out
    assert "### Count.\n--- before:" in out and "adapter.zip" in out


def test_qlora_gradients_match_the_dequantized_model(tiny_dir, data_file, tokenizer, tmp_path):
    """4-bit base on CPU: LoRA gradients equal those of the same model with the weights dequantized."""
    import bitsandbytes as bnb
    from peft import get_peft_model

    session = TrainingSession(tiny_config(tiny_dir, qlora=True, target_modules="attention"),
                              load_dataset(data_file).examples, tmp_path)
    for name, param in session.model.named_parameters():
        if "lora_B" in name:  # B starts at zero; give it values so every LoRA weight gets a gradient
            torch.nn.init.normal_(param, std=0.1)
    example = session.train_rows[0]
    batch = pad_batch([{"input_ids": example.input_ids, "labels": example.labels}], tokenizer.pad_token_id)
    session.model.eval()
    with torch.no_grad():  # an eval forward is what used to switch bitsandbytes to its backward-less kernel
        session.model(**batch)
    reference = AutoModelForCausalLM.from_pretrained(tiny_dir)
    plain = dict(reference.named_modules())
    quantized = 0
    for name, module in session.model.base_model.model.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            weight = bnb.functional.dequantize_4bit(module.weight.data, module.weight.quant_state)
            plain[name.removesuffix(".base_layer")].weight.data = weight.float()
            quantized += 1
    assert quantized >= 14  # every projection of both layers is 4-bit
    reference = get_peft_model(reference, session.model.peft_config["default"])
    lora = {k: v for k, v in session.model.state_dict().items() if "lora_" in k}
    assert not reference.load_state_dict(lora, strict=False).unexpected_keys
    session.model.train()
    reference.train()
    session.model(**batch).loss.backward()
    reference(**batch).loss.backward()
    ours = {n: p.grad for n, p in session.model.named_parameters() if p.requires_grad}
    theirs = {n: p.grad for n, p in reference.named_parameters() if p.requires_grad}
    assert ours.keys() == theirs.keys() and len(ours) == 16
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=2e-3, atol=1e-5, msg=name)


@pytest.mark.slow
def test_smollm2_real_template_masking_and_a_few_steps(tmp_path):
    """The offline SmolLM2: its template adds a default system turn, which must stay masked."""
    from billion.core.paths import ASSETS
    from billion.train.tokens import IGNORE

    data = load_dataset(ASSETS / "sample_lora" / "pirate.jsonl")
    session = TrainingSession(TrainConfig(max_steps=2, eval_fraction=0.05), data.examples[:20], tmp_path)
    row = session.train_rows[0]
    trained = session.tokenizer.decode([t for t, label in zip(row.input_ids, row.labels) if label != IGNORE])
    masked = session.tokenizer.decode([t for t, label in zip(row.input_ids, row.labels) if label == IGNORE])
    assert trained.startswith("Arr, matey!") and trained.endswith("Yo ho ho!<|im_end|>\n")
    assert "<|im_start|>system\nYou are a helpful AI assistant named SmolLM" in masked
    assert masked.endswith("<|im_start|>assistant\n")
    outcome = session.train()
    losses = [e.loss for e in session.events.since(0) if e.kind == "train"]
    assert outcome.finished and len(losses) == 2 and all(0 < loss < 10 for loss in losses)
