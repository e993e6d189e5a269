import pytest

from billion.core.errors import BillionError
from billion.core.registry import FALLBACK_TEMPLATE, MODELS, drafts_for, pick_default, resolve


def test_aliases_unique_and_resolvable():
    aliases = [m.alias for m in MODELS]
    assert len(aliases) == len(set(aliases))
    for spec in MODELS:
        assert resolve(spec.alias) is spec
        assert resolve(spec.alias.upper()) is spec


def test_required_entries_present():
    hub_ids = {m.hub_id for m in MODELS}
    for hub_id in ["TinyLlama/TinyLlama-1.1B-Chat-v1.0", "meta-llama/Llama-3.2-1B-Instruct",
                   "stabilityai/stablelm-2-1_6b-chat", "EleutherAI/pythia-1b",
                   "HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-360M-Instruct",
                   "HuggingFaceTB/SmolLM2-1.7B-Instruct", "google/gemma-3-270m", "google/gemma-3-270m-it",
                   "meta-llama/Llama-2-7b-chat-hf", "meta-llama/Llama-3.1-8B-Instruct",
                   "EleutherAI/pythia-1.4b", "EleutherAI/pythia-2.8b"]:
        assert hub_id in hub_ids, hub_id
    assert resolve("llama3.2-1b").gated
    assert resolve("pythia-1b").chat_template == "fallback"
    assert resolve("smollm2-135m").source.kind == "package_gguf"
    assert resolve("gemma3-270m").source.kind == "package_gguf"


def test_hub_id_resolves_to_hub_entry_not_package_copy():
    spec = resolve("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert spec.source.kind == "hub" and spec.alias == "smollm2-135m-hub"


def test_drafts_share_tokenizer_and_are_smaller():
    for spec in MODELS:
        for draft in drafts_for(spec):
            assert draft.tokenizer_group == spec.tokenizer_group
            assert draft.params_m < spec.params_m
    assert resolve("tinyllama") in drafts_for(resolve("llama2-7b-chat"))
    assert resolve("llama3.2-1b") in drafts_for(resolve("llama3.1-8b"))
    assert resolve("pythia-160m") in drafts_for(resolve("pythia-1.4b"))
    assert resolve("pythia-410m") in drafts_for(resolve("pythia-2.8b"))
    assert resolve("smollm2-135m") in drafts_for(resolve("smollm2-1.7b"))


def test_reference_scores_are_labelled():
    scored = [m for m in MODELS if m.reference_scores]
    assert len(scored) >= 10
    for spec in scored:
        for score in spec.reference_scores:
            assert score.source and score.url.startswith("http") and score.setting
            assert score.variant in ("base", "instruct") and 0 <= score.value <= 100


def test_resolve_paths_and_errors(tmp_path):
    with pytest.raises(BillionError, match="Unknown model"):
        resolve("no-such-model")
    with pytest.raises(BillionError, match="No model"):
        resolve("  ")
    with pytest.raises(BillionError, match="does not exist"):
        resolve(str(tmp_path / "missing.gguf"))
    local = resolve(str(tmp_path))
    assert local.source.kind == "local"
    assert resolve("someorg/some-model").source.kind == "hub"


def test_fallback_template_renders_user_assistant(tokenizer):
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}],
        chat_template=FALLBACK_TEMPLATE, tokenize=False, add_generation_prompt=True)
    assert text == "Be brief.\n\nUser: Hi\nAssistant: Hello\nUser: Bye\nAssistant:"


def test_default_is_the_offline_smollm2_then_its_hub_twin_then_the_first():
    assert pick_default(["gemma3-270m", "smollm2-135m", "smollm2-135m-hub"]) == "smollm2-135m"
    # A Space installs no offline weights: the same model comes from the hub.
    assert pick_default(["tinyllama", "smollm2-135m-hub"]) == "smollm2-135m-hub"
    assert resolve("smollm2-135m-hub").hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert pick_default(["tinyllama", "pythia-1b"]) == "tinyllama"
    assert pick_default([]) is None


def test_pythia_checkpoints_are_the_154_published_branches():
    from billion.core.registry import PYTHIA_CHECKPOINTS

    assert len(PYTHIA_CHECKPOINTS) == 154 == len(set(PYTHIA_CHECKPOINTS))
    assert PYTHIA_CHECKPOINTS[:11] == ("step0", "step1", "step2", "step4", "step8", "step16", "step32",
                                       "step64", "step128", "step256", "step512")
    assert PYTHIA_CHECKPOINTS[11:] == tuple(f"step{k * 1000}" for k in range(1, 144))
    for alias in ("pythia-160m", "pythia-410m", "pythia-1b", "pythia-1.4b", "pythia-2.8b"):
        assert resolve(alias).revisions == PYTHIA_CHECKPOINTS


def test_alias_at_revision_picks_a_checkpoint():
    spec = resolve("pythia-1b@step3000")
    assert spec.alias == "pythia-1b@step3000" and spec.source.revision == "step3000"
    assert spec.hub_id == "EleutherAI/pythia-1b" and spec.display_name == "Pythia-1B @ step3000"
    assert resolve("PYTHIA-1B@step3000").source.revision == "step3000"
    assert resolve("tinyllama@main").source.revision == "main"
    assert resolve("tinyllama@" + "a" * 40).source.revision == "a" * 40
    assert resolve("someorg/some-model@dev").source.revision == "dev"  # unknown repos: any revision
    with pytest.raises(BillionError, match=r"no revision 'step3001'.*154 checkpoints"):
        resolve("pythia-1b@step3001")
    with pytest.raises(BillionError, match=r"no revision 'dev'.*commit sha"):
        resolve("tinyllama@dev")
    with pytest.raises(BillionError, match="not a hub model"):
        resolve("smollm2-135m@step3000")
    with pytest.raises(BillionError, match="No revision after '@'"):
        resolve("pythia-1b@")


def test_compared_models_pin_a_commit():
    from billion.core.registry import COMMIT_SHA, COMPARED

    pinned = {alias: resolve(alias).source.revision for alias in COMPARED}
    assert all(COMMIT_SHA.fullmatch(rev or "") for rev in pinned.values()), pinned


def test_quant_group_follows_the_shipped_weights():
    # The offline models are dequantized GGUFs whose blocks are 32 wide: int8 and int4 keep that grid.
    for alias in ("smollm2-135m", "gemma3-270m"):
        assert resolve(alias).quant_group == 32
    for alias in ("tinyllama", "llama3.2-1b", "stablelm", "pythia-1b"):
        assert resolve(alias).quant_group is None  # float hub weights: the kernels' defaults (256, 64)
