"""The four compared models by hub id, through an offline Hugging Face cache: the code a Space runs.

Each repo in the cache has the real architecture class, tokenizer class and chat template of its
model with tiny random weights (tests/hub_repos.py), so these tests cover resolving the hub id,
finding the pinned snapshot, templating, generating, one LoRA step and one arena battle, not what
the models say.
"""

from __future__ import annotations

import datetime
from dataclasses import replace

import pytest

from billion.arena.battle import Turn, answer_turn, contestant_loader, new_battle, reveal
from billion.arena.contestants import Contestant
from billion.arena.rounds import cast_vote, record_answers, record_ask
from billion.core.download import HubUnreachable
from billion.core.generation import chat_input_ids, generate_chat, render_chat
from billion.core.loading import LoadOptions, load_fresh
from billion.core.registry import COMPARED, resolve
from billion.core.sampling import SamplingSettings
from billion.store.store import Store
from billion.train.config import TrainConfig
from billion.train.data import Example
from billion.train.session import TrainingSession

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = {"tinyllama": "LlamaForCausalLM", "llama3.2-1b": "LlamaForCausalLM",
           "stablelm": "StableLmForCausalLM", "pythia-1b": "GPTNeoXForCausalLM"}
# What each model's own template makes of one user turn (Pythia, a base model: billion's transcript).
PROMPTS = {
    "tinyllama": "<|user|>\nHello there</s>\n<|assistant|>\n",
    "llama3.2-1b": ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
                    "December 2023\nToday Date: {today}\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>"
                    "\n\nHello there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
    "stablelm": "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n",
    # a base model: the chat scaffold's header and example turns come first (billion.core.scaffold)
    "pythia-1b": "\nAssistant: A spider has eight legs.\nUser: Hello there\nAssistant:",
}
GREEDY = SamplingSettings(temperature=0.0, max_new_tokens=4)


def render_dated(loaded, messages) -> tuple[str, str]:
    """The rendered prompt and the day it was rendered on (Llama-3.2 stamps today's date; a run
    crossing midnight renders again rather than compare against yesterday)."""
    while True:
        day = datetime.date.today().strftime("%d %b %Y")
        rendered = render_chat(loaded, messages)
        if datetime.date.today().strftime("%d %b %Y") == day:
            return rendered, day


@pytest.mark.parametrize("alias", COMPARED)
def test_hub_id_loads_from_the_cache_at_the_pinned_commit(offline_hub, models, alias):
    spec = resolve(alias)
    loaded = models.load(spec.hub_id)  # by hub id, as a person or a Space would ask
    assert loaded.spec is spec and type(loaded.model).__name__ == CLASSES[alias]
    commit = (offline_hub / f"models--{spec.hub_id.replace('/', '--')}" / "refs" / "main").read_text()
    assert loaded.revision == (spec.source.revision or commit)


@pytest.mark.parametrize("alias", COMPARED)
def test_chat_uses_the_models_own_template(offline_hub, models, alias):
    loaded = models.load(alias)
    messages = [{"role": "user", "content": "Hello there"}]
    rendered, today = render_dated(loaded, messages)
    expected = PROMPTS[alias].replace("{today}", today)
    assert rendered.endswith(expected) if alias == "pythia-1b" else rendered == expected
    ids = chat_input_ids(loaded, messages)[0].tolist()
    bos = loaded.tokenizer.bos_token_id
    if alias in ("tinyllama", "llama3.2-1b"):  # Llama tokenizers add BOS; the prompt has exactly one
        assert ids[0] == bos and ids.count(bos) == 1
    result = generate_chat(loaded, messages, GREEDY)
    assert len(result.token_ids) >= 1 and result.finish_reason in ("eos", "length", "stop")


def test_a_system_turn_goes_where_each_template_puts_it(offline_hub, models):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert render_chat(models.load("tinyllama"), messages) == \
        "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n"
    llama, today = render_dated(models.load("llama3.2-1b"), messages)
    assert f"Today Date: {today}\n\nBe brief.<|eot_id|>" in llama
    assert render_chat(models.load("stablelm"), messages).startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    pythia = render_chat(models.load("pythia-1b"), messages)
    assert pythia.startswith("Be brief.\n\nUser: ") and pythia.endswith("legs.\nUser: Hi\nAssistant:")


@pytest.mark.parametrize("alias", COMPARED)
def test_one_lora_step(offline_hub, alias, tmp_path):
    config = TrainConfig(model=alias, rank=4, alpha=8, dropout=0.0, max_steps=1, batch_size=2,
                         eval_fraction=0.0, precision="fp32", device="cpu", warmup_fraction=0.0)
    rows = [Example(row=i, messages=({"role": "user", "content": "Say hi."},
                                     {"role": "assistant", "content": "Hi there!"})) for i in range(4)]
    session = TrainingSession(config, rows, tmp_path)
    assert session.loaded.spec.hub_id == resolve(alias).hub_id
    outcome = session.train()
    assert outcome.finished and outcome.step == 1
    trained = [n for n, p in session.model.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in n for n in trained)


@pytest.mark.parametrize("alias", COMPARED)
def test_one_arena_battle(offline_hub, models, alias, tmp_path):
    store = Store(tmp_path / "votes.sqlite3")
    pair = (Contestant(alias, temperature=0.2), Contestant(alias, temperature=1.0))
    battle = answer_turn(new_battle(*pair, GREEDY, session_id="test"), "Name a colour.",
                         contestant_loader(models))
    assert battle.status == "ready" and all(t.complete for t in battle.turns)
    stats = battle.turns[-1].stats_a
    assert stats is not None and stats.revision  # the commit the answer came from is recorded
    record_ask(store, replace(battle, turns=battle.turns[:-1] + (Turn(battle.turns[-1].prompt),),
                              status="answering"))
    record_answers(store, battle)
    voted = cast_vote(store, battle, "left")
    assert {reveal(voted).left.display_name, reveal(voted).right.display_name} == {resolve(alias).display_name}


def test_a_pythia_checkpoint_loads_from_its_branch(offline_hub):
    loaded = load_fresh("pythia-1b@step3000", LoadOptions())
    commit = (offline_hub / "models--EleutherAI--pythia-1b" / "refs" / "step3000").read_text()
    assert loaded.revision == commit != resolve("pythia-1b").source.revision
    assert loaded.spec.display_name == "Pythia-1B @ step3000"
    # That branch ships PyTorch .bin weights only, as the real checkpoint branches do.
    assert (offline_hub / "models--EleutherAI--pythia-1b" / "snapshots" / commit / "pytorch_model.bin").exists()


def test_a_revision_missing_from_the_cache_says_which_are_there(offline_hub, models):
    with pytest.raises(HubUnreachable, match=r"revision step5000 .*cached: main, step3000.*HF_HUB_OFFLINE"):
        models.load("pythia-1b@step5000")
