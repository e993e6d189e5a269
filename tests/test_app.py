"""The app through gradio_client against a real launched server."""

import re

import pytest
from gradio_client import Client

import app

# SmolLM2 in this process: one thread (conftest.py's one_thread), as the engine modules run it
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def chat_args(prompt, compare=False, max_new_tokens=32):
    return (prompt, [], [], compare, "smollm2-135m", "smollm2-135m", "", 0, 0.95, 0, 1.0,
            max_new_tokens, -1, "auto")


def last_answer(history) -> str:
    content = history[-1]["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def test_importing_app_does_not_launch():
    # Nothing built at import (so nothing to launch); building a whole page here cost seconds and
    # wrote to the environment's data folder. serve_app (conftest.py's app_url) builds and launches
    # one for the tests below.
    import gradio as gr

    assert not [name for name, value in vars(app).items() if isinstance(value, gr.Blocks)]
    assert "ctx" not in vars(app) and "demo" not in vars(app)


def test_chat_answers_through_the_api(client):
    chat_a, chat_b, stats_a, stats_b, prompt = client.predict(
        *chat_args("What is the capital of France?"), api_name="/chat")
    assert "Paris" in last_answer(chat_a)
    assert "tokens/s" in stats_a and chat_b == [] and prompt == ""
    assert re.search(r"stop: (eos|length)", stats_a), stats_a  # as the browser shows it


def test_compare_streams_two_answers(client):
    chat_a, chat_b, stats_a, stats_b, _ = client.predict(
        *chat_args("Name a colour.", compare=True, max_new_tokens=12), api_name="/chat")
    assert last_answer(chat_a) and last_answer(chat_b)
    assert "tokens/s" in stats_a and "tokens/s" in stats_b


def test_empty_prompt_is_refused_and_app_stays_up(client):
    with pytest.raises(Exception, match="empty"):
        client.predict(*chat_args("   "), api_name="/chat")
    chat_a, *_ = client.predict(*chat_args("What is the capital of France?"), api_name="/chat")
    assert "Paris" in last_answer(chat_a)
