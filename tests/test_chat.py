"""Chat requests: checked once for the UI and the CLI, and answered by real tiny models."""

from __future__ import annotations

import pytest

from billion.core.chat import CHAT_DEFAULTS, ChatRequest, chat_streams, plain_messages
from billion.core.errors import BillionError
from billion.core.generation import generate_chat, interleave
from billion.core.limits import Limits
from billion.core.sampling import SamplingSettings

pytestmark = pytest.mark.usefixtures("one_thread")


def test_requests_are_checked_against_the_limits():
    assert ChatRequest("  hi ").validated().prompt == "hi"
    assert ChatRequest("hi").settings == CHAT_DEFAULTS
    with pytest.raises(BillionError, match="empty"):
        ChatRequest("  ").validated()
    with pytest.raises(BillionError, match="chat takes at most 4"):
        ChatRequest("hello").validated(Limits(chat_prompt_chars=4))
    with pytest.raises(BillionError, match="Pick a model"):
        ChatRequest("hi", models=("",)).validated()
    with pytest.raises(BillionError, match="Pick a model"):
        ChatRequest("hi", models=("a", "b", "c")).validated()
    with pytest.raises(BillionError, match="max_new_tokens"):
        ChatRequest("hi", settings=SamplingSettings(max_new_tokens=0)).validated()


def test_each_model_sees_its_own_history_and_the_system_message():
    def history(answer: str) -> tuple[dict, ...]:
        return ({"role": "user", "content": "q"}, {"role": "assistant", "content": answer})

    request = ChatRequest("and now?", models=("a", "b"), system="Be brief.",
                          histories=(history("A"), history("B")))
    assert [m["content"] for m in request.messages(0)] == ["Be brief.", "q", "A", "and now?"]
    assert [m["content"] for m in request.messages(1)] == ["Be brief.", "q", "B", "and now?"]
    assert ChatRequest("x").messages() == [{"role": "user", "content": "x"}]


def test_widget_messages_become_plain_ones():
    parts = [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]
    widget = [{"role": "assistant", "content": parts, "metadata": {}}]
    assert plain_messages(widget) == ({"role": "assistant", "content": "Hello"},)


def test_two_models_answer_side_by_side(tiny_dir, models):
    greedy = SamplingSettings(temperature=0, max_new_tokens=6, ignore_eos=True)
    request = ChatRequest("Hello", models=(str(tiny_dir), str(tiny_dir)), settings=greedy).validated()
    streams = chat_streams(request, models)
    assert [loaded for loaded, _ in streams] == [models.load(str(tiny_dir), request.load_options())] * 2  # one copy, shared
    last = None
    for last in interleave(*(stream for _, stream in streams)):
        pass
    alone = generate_chat(models.load(str(tiny_dir)), request.messages(), greedy)
    assert [update.result.token_ids for update in last] == [alone.token_ids] * 2
