"""Arena contestants: variants, the pool, adapters kept in the store, and pair choice."""

from __future__ import annotations

import collections
import random

import pandas as pd
import pytest

from billion.arena import contestants
from billion.arena.contestants import (VARIANT_DTYPES, VARIANT_TEMPERATURES, Contestant, contestant_pool,
                                 pair_weights, pick_pair, register_adapter_contestant,
                                 registered_contestants, with_precision)
from billion.core.errors import BillionError
from billion.arena.ratings import ModelRating, RatingTable
from billion.core.registry import DEFAULT_MODEL
from billion.core.sampling import SamplingSettings
from billion.store.store import Store


def test_contestant_names_tell_variants_apart():
    names = {Contestant("smollm2-135m").name, Contestant("smollm2-135m", dtype="bf16").name,
             Contestant("smollm2-135m", settings=SamplingSettings(temperature=0.2)).name,
             Contestant("smollm2-135m", adapter="/runs/lora-7/").name,
             Contestant("smollm2-135m", temperature=1.0).name,
             Contestant("smollm2-135m", adapter="/runs/lora-7/", label="chef").name}
    assert len(names) == 6 and "smollm2-135m+lora:lora-7" in names
    assert {"smollm2-135m [T=1]", "smollm2-135m+lora:chef"} <= names
    record = Contestant("smollm2-135m", dtype="bf16").to_record()
    assert record["alias"] == "smollm2-135m" and record["dtype"] == "bf16" and record["settings"] is None


@pytest.mark.parametrize("contestant", [
    Contestant("smollm2-135m", dtype="bf16", temperature=0.2),
    Contestant("x", settings=SamplingSettings(temperature=0.3, stop=("\nUser:",), seed=4)),
    Contestant("smollm2-135m", adapter="/runs/a", label="chef"),
])
def test_record_round_trip(contestant):
    assert Contestant.from_record(contestant.to_record()) == contestant


def test_pools():
    offline = ["smollm2-135m", "gemma3-270m"]
    assert [c.name for c in contestant_pool("with-base", offline)] == offline
    temps = contestant_pool("temperature", offline)
    assert [c.temperature for c in temps] == list(VARIANT_TEMPERATURES)
    assert {c.alias for c in temps} == {DEFAULT_MODEL}
    assert [c.dtype for c in contestant_pool("dtype", ["gemma3-270m"])] == list(VARIANT_DTYPES)
    # One model alone still battles: its two temperatures join.
    alone = contestant_pool("all", ["gemma3-270m"])
    assert len({c.name for c in alone}) == 3
    with pytest.raises(BillionError, match="No model can load"):
        contestant_pool("all", [])
    with pytest.raises(BillionError, match="Unknown contestant pool"):
        contestant_pool("everything", offline)


def test_default_pool_is_chat_models_only_and_precisions_pool():
    """Fix 12: a base model (Gemma-3-270M echoes prompts, writes transcripts) gives battles away."""
    offline = ["smollm2-135m", "gemma3-270m"]
    default = contestant_pool("all", offline)
    assert {c.alias for c in default} == {"smollm2-135m"} and len(default) == 3  # + its temperatures
    precisions = contestant_pool("precision", offline)
    assert [(c.dtype, c.quantization) for c in precisions] == [("fp32", "none"), ("auto", "int8"),
                                                                 ("auto", "int4")]
    assert [c.name for c in precisions] == ["smollm2-135m [fp32]", "smollm2-135m [int8]",
                                            "smollm2-135m [int4]"]
    # with_precision (the battle's precision radio) leaves the pool's own precisions alone
    assert with_precision(precisions, "int8") == precisions
    # only base models here: they battle rather than nothing
    assert [c.alias for c in contestant_pool("all", ["gemma3-270m"])][0] == "gemma3-270m"


def adapter_folder(path):
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}")
    return path


def test_registered_adapters_join_the_pool_and_survive_reopen(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    folder = adapter_folder(tmp_path / "runs" / "lora-1")
    added = register_adapter_contestant(folder, "smollm2-135m", " chef ", store=store)
    assert added.label == "chef" and added.adapter == str(folder.resolve())
    register_adapter_contestant(folder, "smollm2-135m", "chef", store=store)  # same name: replaced
    gone = register_adapter_contestant(adapter_folder(tmp_path / "runs" / "lora-2"), "smollm2-135m",
                                       store=store)
    store.close()
    reopened = Store(tmp_path / "s.sqlite3")
    extra = registered_contestants(reopened)
    assert extra == (added, gone) and gone.name == "smollm2-135m+lora:lora-2"
    (tmp_path / "runs" / "lora-2" / "adapter_config.json").unlink()
    (tmp_path / "runs" / "lora-2").rmdir()
    pool = contestant_pool("all", ["smollm2-135m"], extra)
    assert added in pool and gone not in pool
    reopened.close()


def test_register_refuses_non_adapters_and_unknown_bases(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    with pytest.raises(BillionError, match="not a PEFT adapter folder"):
        register_adapter_contestant(tmp_path, "smollm2-135m", store=store)
    with pytest.raises(BillionError, match="Unknown model"):
        register_adapter_contestant(adapter_folder(tmp_path / "a"), "no-such-model", store=store)
    assert store.arena_contestants() == []
    store.close()


def test_arena_labels_are_unique(tmp_path):
    """Issue 13 finding 5: a second registration under a label in use no longer takes it over."""
    store = Store(tmp_path / "s.sqlite3")
    mine = adapter_folder(tmp_path / "runs" / "mine")
    register_adapter_contestant(mine, "smollm2-135m", "pirate", store=store, owner="browser:a")
    with pytest.raises(BillionError, match="already has a contestant labelled 'Pirate'"):
        register_adapter_contestant(adapter_folder(tmp_path / "runs" / "theirs"), "smollm2-135m", "Pirate",
                                    store=store, owner="browser:b")
    with pytest.raises(BillionError, match="already in the Arena as 'pirate'"):
        register_adapter_contestant(mine, "smollm2-135m", "parrot", store=store)
    with pytest.raises(BillionError, match="registry model"):
        register_adapter_contestant(adapter_folder(tmp_path / "runs" / "x"), "smollm2-135m", "gemma3-270m",
                                    store=store)
    (record,) = store.arena_contestants()
    assert record["label"] == "pirate" and record["owner"] == "browser:a"
    store.close()


@pytest.mark.parametrize("label, message", [
    ("x" * 100_000, "100000 characters; a label may have at most 40"),  # issue 13, finding 6
    ("a" * 41, "at most 40"),
    ("<img src=x onerror=alert(1)>", "letters, digits, spaces"),
    ("ok\u202eevil", "letters, digits, spaces"),
    ("two\nlines", "letters, digits, spaces"),
])
def test_labels_are_short_plain_text_checked_before_anything_is_stored(tmp_path, label, message):
    store = Store(tmp_path / "s.sqlite3")
    with pytest.raises(BillionError, match=message):
        register_adapter_contestant(adapter_folder(tmp_path / "a"), "smollm2-135m", label, store=store)
    assert store.arena_contestants() == []
    ok = register_adapter_contestant(adapter_folder(tmp_path / "b"), "smollm2-135m", "Pirate v2 (r=8)",
                                     store=store)
    assert ok.label == "Pirate v2 (r=8)" and [c.label for c in registered_contestants(store)] == [ok.label]
    store.close()


def test_a_label_stored_before_the_rules_stays_out_of_battles(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    folder = adapter_folder(tmp_path / "old")
    store.add_arena_contestant(Contestant("smollm2-135m", adapter=str(folder), label="y" * 100_000).to_record())
    assert registered_contestants(store) == ()
    store.close()


# ---- pair choice ------------------------------------------------------------------------------------

POOL = [Contestant("p"), Contestant("q"), Contestant("r")]


def draw(n: int, **kw) -> collections.Counter:
    rng = random.Random(1)
    return collections.Counter(frozenset(c.name for c in pick_pair(POOL, rng=rng, **kw)) for _ in range(n))


def test_pick_pair_prefers_under_sampled_pairs():
    counts = {("p", "q"): 60, ("q", "r"): 2}
    drawn = draw(3000, counts=counts)
    busy, few, none = drawn[frozenset("pq")], drawn[frozenset("qr")], drawn[frozenset("pr")]
    # weights 1/61, 1/3, 1: expect ~1%, ~25%, ~74%
    assert busy < 0.04 * 3000 and few < none and 0.18 * 3000 < few < 0.32 * 3000


def test_pick_pair_prefers_overlapping_intervals():
    def rated(model, low, high):
        return ModelRating(model, (low + high) / 2, low, high, 1, 10, 0.5, 1000.0)

    zeros = pd.DataFrame(0, index=list("pqr"), columns=list("pqr"))
    table = RatingTable((rated("p", 1100, 1200), rated("q", 1080, 1150), rated("r", 850, 950)),
                        zeros, zeros, 30, 0, 100)
    weights = {frozenset((a.name, b.name)): w for (a, b), w in pair_weights(POOL, table).items()}
    assert weights[frozenset("pq")] == 1.0
    assert weights[frozenset("pr")] == weights[frozenset("qr")] == contestants.SETTLED_PAIR_WEIGHT
    drawn = draw(2000, ratings=table)
    assert drawn[frozenset("pq")] > 0.6 * 2000


def test_pick_pair_order_is_random_and_needs_two():
    rng = random.Random(3)
    firsts = collections.Counter(pick_pair(POOL[:2], rng=rng)[0].name for _ in range(400))
    assert 150 < firsts["p"] < 250
    with pytest.raises(BillionError, match="two different contestants"):
        pick_pair([Contestant("p"), Contestant("p")])


def test_with_precision_sets_auto_contestants_only():
    from billion.arena.contestants import with_precision

    pool = (Contestant("smollm2-135m", temperature=0.2), Contestant("smollm2-135m", dtype="bf16"))
    assert with_precision(pool, "auto") == pool
    int8 = with_precision(pool, "int8")
    assert int8[0].quantization == "int8" and int8[0].name == "smollm2-135m [int8, T=0.2]"
    assert int8[1] == pool[1]  # an explicit precision stays
    assert with_precision(pool, "fp32")[0].dtype == "fp32"


def test_auto_contestant_loads_at_the_measured_cpu_choice(monkeypatch):
    from billion.core import precision

    monkeypatch.setattr(precision, "auto_cpu_choice", lambda: precision.AutoChoice("int4", "test"))
    options = Contestant("smollm2-135m").load_options()
    assert options.quantization == "int4"
    assert Contestant("smollm2-135m", dtype="fp32").load_options().quantization == "none"
