"""Arena tab: two anonymous models answer the same prompt; the person votes; then names are revealed.

Blind for real: the battle (who is who) lives only in a gr.State, which Gradio keeps on the server
and never sends to the browser; every payload before the vote carries the two answers, a random
battle token and status text, nothing else. By default both answers are released together, since
the pace of a stream can give a model away.

Endpoints for scripts: `arena_battle` (prompt and settings -> two anonymous answers and a battle
token; a follow-up while the battle is open, a new battle after a vote) and `arena_vote` (choice
and token -> the reveal). One gradio_client.Client is one session, so battle -> vote just works.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace

import gradio as gr

from billion.arena.battle import (Battle, BattleEnded, abandon_pending, ask, contestant_loader,
                                  public_label, regenerate, reveal, stream_pending,
                                  validate_prompt)
from billion.arena.contestants import registered_contestants
from billion.arena.rounds import (BattleRequest, cast_vote, end_battle, record_answers, record_ask,
                                  start_battle, store_missing)
from billion.context import AppContext
from billion.core.availability import available_aliases
from billion.core.precision import available_precisions
from billion.core.errors import BillionError
from billion.core.sampling import sampling_from
from billion.ui.arena_session import session_arena
from billion.ui.arena_view import (View, anonymous_session, battle_view, random_prompt,
                                   reveal_markdown, reveal_record, status_text)
from billion.ui.arena_ratings import current_ratings, export_voted_battles, ratings_panel, ratings_view
from billion.ui.common import bind, friendly_errors, named_number, on_device
from billion.ui.downloads import arena_downloads, weight_sizes
from billion.ui.endpoints import all_endpoints, build_endpoint_adder

POOL_CHOICES = [("Every available chat model", "all"),
                ("Chat and base models (base models continue text: easy to spot)", "with-base"),
                ("One model at several precisions (fp32, int8, int4): can you tell?", "precision"),
                ("One model at two temperatures (0.2 and 1.0)", "temperature"),
                ("One model in two precisions (fp32 and bf16)", "dtype"),
                ("The local default model against endpoint models", "mixed"),
                ("Endpoint models only", "endpoints")]
VOTE_CHOICES = [("A is better", "left"), ("B is better", "right"), ("Tie", "tie"),
                ("Both are bad", "bothbad")]
DEFAULT_BATTLE = BattleRequest()
PROMPT_PLACEHOLDER = "Ask both models something…"
WAIT_PLACEHOLDER = "Both models are answering: wait for them (or Stop) to send a follow-up"

def new_battle_for(ctx: AppContext, request: BattleRequest, session_id: str,
                   endpoints=None) -> Battle:
    """A battle from the pool of models that load here, registered adapters and endpoint models
    (this session's, endpoints, and the configured ones)."""
    return start_battle(request, available_aliases(ctx.hub), registered_contestants(ctx.store),
                        current_ratings(ctx.store), session_id, limits=ctx.limits,
                        endpoints=all_endpoints(ctx, endpoints))


def _answer_seconds(battle: Battle) -> int:
    return int(30 + 0.2 * battle.settings.max_new_tokens)


def answer_both(ctx: AppContext, battle: Battle) -> Iterator[Battle]:
    """The GPU part of a round: both answers to the pending prompt (a picklable Battle in and out)."""
    yield from stream_pending(battle, contestant_loader(ctx.models))


AnswerFn = Callable[[Battle], Iterator[Battle]]


def _answered(ctx: AppContext, answer: AnswerFn, battle: Battle) -> Iterator[tuple[Battle, View]]:
    """Store the pending prompt, fetch missing weights, answer it, store the answers; yields
    (battle, view) to show."""
    record_ask(ctx.store, battle)
    yield battle, battle_view(battle)
    asked = battle
    try:
        for line in arena_downloads(battle, ctx.downloads):  # outside the GPU part: no GPU needed
            yield battle, battle_view(battle, line)
        for battle in answer(battle):
            if battle.status == "ready":
                record_answers(ctx.store, battle)  # stored before the page can vote on it
            yield battle, battle_view(battle)
    except Exception as exc:  # BattleEnded, or whatever the GPU boundary made of it
        end_battle(ctx.store, asked)  # never voted on; the next prompt draws a new pair
        raise exc if isinstance(exc, BattleEnded) else BattleEnded() from exc


def ended(ctx: AppContext, battle: Battle | None) -> bool:
    """Whether this session's battle was ended by a failed answer (it is gone from the store)."""
    return battle is not None and battle.status != "voted" and bool(battle.turns) \
        and store_missing(ctx.store, battle.id)


@friendly_errors
def battle_round(ctx: AppContext, answer: AnswerFn, prompt: str, pool: str, temperature: float,
                 top_p: float, max_new_tokens: float, seed: float | None, live: bool,
                 precision: str, battle: Battle | None, endpoints=None,
                 request: gr.Request = None):  # type: ignore[assignment]
    """Ask both models: a follow-up in the open battle, or the first prompt of a new one.

    Yields (chat A, chat B, battle token, status, reveal, prompt box, battle state).
    """
    limit = ctx.limits.arena_prompt_chars
    text = validate_prompt(prompt, limit)
    if battle is None or battle.status == "voted" or ended(ctx, battle):
        settings = sampling_from(dict(temperature=temperature, top_p=top_p,
                                      max_new_tokens=max_new_tokens, seed=seed), DEFAULT_BATTLE.settings)
        wanted = BattleRequest(pool, settings, bool(live), precision or "auto")  # type: ignore[arg-type]
        battle = new_battle_for(ctx, wanted, anonymous_session(request), endpoints)
    battle = ask(abandon_pending(battle), text, limit)
    for battle, view in _answered(ctx, answer, battle):
        yield (*view, "", battle)


@friendly_errors
def regenerate_round(ctx: AppContext, answer: AnswerFn, battle: Battle | None):
    """Ask the last prompt again. Yields (chat A, chat B, battle token, status, reveal, battle state)."""
    if battle is None or not battle.turns:
        raise BillionError("Nothing to regenerate yet: ask a prompt first.")
    if ended(ctx, battle):
        raise BillionError("That battle ended unrecorded: ask a prompt for a new one.")
    if battle.status == "answering":  # the last run died: ask its prompt again
        battle = ask(abandon_pending(battle), battle.turns[-1].prompt, ctx.limits.arena_prompt_chars)
    else:
        battle = regenerate(battle)
    for battle, view in _answered(ctx, answer, battle):
        yield (*view, battle)


@friendly_errors
def vote_round(ctx: AppContext, choice: str, token: str, battle: Battle | None):
    """Store the one vote of the open battle and reveal it. Returns (reveal, reveal record,
    status, battle state)."""
    if battle is None:
        raise BillionError("There is no battle to vote on: ask a prompt first.")
    if ended(ctx, battle):
        raise BillionError("That battle ended unrecorded (one of the answers failed), so it takes no "
                           "vote: ask a prompt to start a new battle.")
    if token and token.strip() != battle.id:
        raise BillionError(f"Battle {token.strip()!r} is not the one open in this session: vote on "
                           "the battle shown, or start a new round.")
    voted = cast_vote(ctx.store, battle, choice)  # type: ignore[arg-type]
    return reveal_markdown(reveal(voted), weight_sizes(voted)), reveal_record(voted), status_text(voted), voted


def new_round():
    """Clear the page for a new battle (the next prompt draws a new pair)."""
    return [], [], "", "Ask a prompt to start.", "", None


def controls(battle: Battle | None):
    """Vote and regenerate buttons on only when both answers are in; labels named only after the
    vote. Returns updates for the four vote buttons, regenerate, new round and both chats."""
    ready = battle is not None and battle.status == "ready"
    can_retry = battle is not None and battle.status in ("ready", "answering") and bool(battle.turns)
    labels = [public_label("left"), public_label("right")]
    if battle is not None and battle.status == "voted":
        shown = reveal(battle)
        # the contestant's whole name (precision, temperature): the reveal table has the rest
        labels = [f"{s.label} · {s.name}" for s in (shown.left, shown.right)]
    votes = [gr.update(interactive=ready) for _ in VOTE_CHOICES]
    return (*votes, gr.update(interactive=can_retry), gr.update(interactive=True),
            gr.update(interactive=True), gr.update(interactive=True, placeholder=PROMPT_PLACEHOLDER),
            gr.update(label=labels[0]), gr.update(label=labels[1]))


def stopped(battle: Battle | None):
    """After Stop: the controls for the battle as it was left, and why nothing more comes."""
    note = ("Stopped. **Regenerate** asks the same prompt again, **New round** starts over."
            if battle is not None and battle.status == "answering" else status_text(battle) if battle
            else "Ask a prompt to start.")
    return (*controls(battle), note)


def lock_controls():
    """While both models answer, nobody votes, regenerates or drops the battle, and no follow-up
    is sent: it would be dropped (one question at a time), so the box says to wait."""
    return (*(gr.update(interactive=False) for _ in range(len(VOTE_CHOICES) + 3)),
            gr.update(interactive=False, placeholder=WAIT_PLACEHOLDER))


def temperature_control(pool: str):
    """"One model at two temperatures" sets both sides' temperatures itself."""
    if pool == "temperature":
        return gr.update(interactive=False, info="set by the pool: 0.2 on one side, 1.0 on the other")
    return gr.update(interactive=True, info=None)


def _vote_button_handler(ctx: AppContext, choice: str):
    def handler(token: str, battle: Battle | None):
        return vote_round(ctx, choice, token, battle)
    handler.__name__ = f"vote_{choice}"
    return handler


@friendly_errors
def arena_export(ctx: AppContext) -> list[str]:
    """Every voted battle as JSONL and CSV, when this app's owner made votes public."""
    if not ctx.settings.votes_public:
        raise BillionError("Exporting votes is off on this app: its owner keeps prompts and answers "
                           "private (set BILLION_PUBLIC_VOTES=1 to share them).")
    return export_voted_battles(ctx.store, ctx.settings.exports_dir)


def build_arena_tab(ctx: AppContext) -> None:
    battle = gr.State(None)
    session_endpoints = gr.State([])
    page = _battle_page(ctx)
    form = _battle_settings(ctx, session_endpoints)
    # API plumbing: never shown; the token is a random id that says nothing about the models.
    token = gr.Textbox(visible=False, label="Battle token")
    vote_choice = gr.Radio(VOTE_CHOICES, visible=False, label="Vote")
    vote_api = gr.Button(visible=False)
    reveal_json = gr.JSON(visible=False, label="Reveal")
    ratings = ratings_panel(ctx)
    _wire(ctx, battle, session_endpoints, page, form,
          SimpleNamespace(token=token, vote_choice=vote_choice, vote_api=vote_api, reveal_json=reveal_json),
          ratings)


def _battle_page(ctx: AppContext) -> SimpleNamespace:
    """Both answers side by side, the votes, the prompt and the round's buttons."""
    gr.Markdown("Two anonymous models answer your prompt. Vote for the better answer; the names "
                "are revealed after your vote. Answers that name their own model are flagged and "
                "left out of the ratings.")
    with gr.Row(elem_classes="arena-answers"):
        chat_left = gr.Chatbot(label=public_label("left"), height=360)
        chat_right = gr.Chatbot(label=public_label("right"), height=360)
    status = gr.Markdown("Ask a prompt to start.", label="Status")
    with gr.Row():
        vote_buttons = [gr.Button(text, interactive=False) for text, _ in VOTE_CHOICES]
    revealed = gr.Markdown(label="Revealed")
    with gr.Row(elem_classes="arena-prompt"):
        prompt = gr.Textbox(placeholder=PROMPT_PLACEHOLDER, label="Prompt",
                            show_label=False, scale=6, max_lines=8,
                            max_length=ctx.limits.arena_prompt_chars)
        send = gr.Button("Send", variant="primary", scale=1)
    with gr.Row():
        draw = gr.Button("🎲 Random prompt")
        regen = gr.Button("🔄 Regenerate", interactive=False)
        next_round = gr.Button("🆕 New round")
        stop = gr.Button("⏹ Stop")
    return SimpleNamespace(chat_left=chat_left, chat_right=chat_right, status=status,
                           vote_buttons=vote_buttons, revealed=revealed, prompt=prompt, send=send,
                           draw=draw, regen=regen, next_round=next_round, stop=stop)


def _battle_settings(ctx: AppContext, session_endpoints: gr.State) -> SimpleNamespace:
    """Pool, streaming and sampling of the next battle."""
    with gr.Accordion("Battle settings (apply from the next new battle)", open=False):
        pool = gr.Radio(POOL_CHOICES, value=DEFAULT_BATTLE.pool, label="Contestants")
        live = gr.Checkbox(DEFAULT_BATTLE.live_streaming,
                           label="Stream answers live (off: both appear together, since "
                                 "the pace of a stream can give a model away)")
        with gr.Row():
            temperature = gr.Slider(ctx.limits.arena_min_temperature, 2,
                                    value=DEFAULT_BATTLE.settings.temperature, step=0.05,
                                    label="Temperature (both sides; never greedy, see docs/arena.md)")
            top_p = gr.Slider(0.05, 1, value=DEFAULT_BATTLE.settings.top_p, step=0.05, label="Top-p")
            max_new_tokens = gr.Slider(1, ctx.limits.max_new_tokens, step=1,
                                       value=DEFAULT_BATTLE.settings.max_new_tokens, label="Max new tokens")
            # Kept for the API's shape: every battle draws its own secret seed, so only -1 is taken.
            seed = gr.Number(value=-1, precision=0, visible=False, label="Seed (-1: the Arena's secret one)")
        precision = gr.Radio(list(available_precisions()), value="auto", label="Precision (both sides)",
                             info="auto: this machine's fast precision (on CPU the measured choice "
                                  "shown on the Leaderboard); the reveal says what ran")
        build_endpoint_adder(ctx, session_endpoints)
    for component, name in ((temperature, "temperature"), (top_p, "top_p"),
                            (max_new_tokens, "max_new_tokens"), (seed, "seed")):
        named_number(component, name)
    return SimpleNamespace(pool=pool, live=live, temperature=temperature, top_p=top_p,
                           max_new_tokens=max_new_tokens, seed=seed, precision=precision)


def _wire(ctx: AppContext, battle: gr.State, session_endpoints: gr.State, page: SimpleNamespace,
          form: SimpleNamespace, api: SimpleNamespace, ratings: SimpleNamespace) -> None:
    chat_left, chat_right, status, revealed, prompt = (page.chat_left, page.chat_right, page.status,
                                                       page.revealed, page.prompt)
    vote_buttons, send, draw, regen, next_round, stop = (page.vote_buttons, page.send, page.draw,
                                                         page.regen, page.next_round, page.stop)
    pool, live, temperature, top_p = form.pool, form.live, form.temperature, form.top_p
    max_new_tokens, seed, precision = form.max_new_tokens, form.seed, form.precision
    token, vote_choice, vote_api, reveal_json = api.token, api.vote_choice, api.vote_api, api.reveal_json
    summary, table, rating_plot, win_plot = ratings.summary, ratings.table, ratings.rating_plot, ratings.win_plot
    count_plot, refresh, export, files = ratings.count_plot, ratings.refresh, ratings.export, ratings.files
    ratings_out = [summary, table, rating_plot, win_plot, count_plot]
    locked = [*vote_buttons, regen, next_round, send, prompt]
    control_out, round_out = [*locked, chat_left, chat_right], [chat_left, chat_right, token, status, revealed]
    session = session_arena(ctx, battle, [*round_out, battle], control_out, controls, bind(ended, ctx))
    ask_in = [prompt, pool, temperature, top_p, max_new_tokens, seed, live, precision, battle, session_endpoints,
              session.token]
    vote_out = [revealed, reveal_json, status, battle]

    answer = on_device(answer_both, ctx, _answer_seconds)
    refresh_ratings = bind(ratings_view, ctx.store)
    rounds = []
    for trigger, name in ((send.click, "arena_battle"), (prompt.submit, False)):
        asked = trigger(lock_controls, None, locked, api_name=False, queue=False) \
            .then(session.keep(bind(battle_round, ctx, answer)), ask_in, [*round_out, prompt, battle], api_name=name)
        asked.then(session.controls, [battle, session.token], control_out, api_name=False)
        rounds.append(asked)
    regenerated = regen.click(lock_controls, None, locked, api_name=False, queue=False) \
        .then(session.keep(bind(regenerate_round, ctx, answer)), [battle, session.token], [*round_out, battle],
              api_name="arena_regenerate")
    regenerated.then(session.controls, [battle, session.token], control_out, api_name=False)
    # Stop ends the answering (and a download nobody else waits for); the battle can be asked again.
    stop.click(stopped, battle, [*control_out, status], cancels=[*rounds, regenerated], api_name=False)
    votes = [button.click(_vote_button_handler(ctx, choice), [token, battle], vote_out, api_name=False)
             for button, (_, choice) in zip(vote_buttons, VOTE_CHOICES)]
    votes.append(vote_api.click(bind(vote_round, ctx), [vote_choice, token, battle], vote_out,
                                api_name="arena_vote"))
    for voted in votes:
        voted.then(session.controls, [battle, session.token], control_out, api_name=False) \
            .then(refresh_ratings, None, ratings_out, api_name=False)
    next_round.click(new_round, None, [*round_out, battle], api_name="arena_new_round") \
        .then(session.controls, [battle, session.token], control_out, api_name=False)
    pool.change(temperature_control, pool, temperature, api_name=False, queue=False)
    draw.click(random_prompt, None, prompt, api_name=False)
    refresh.click(refresh_ratings, None, ratings_out, api_name="arena_ratings")
    export.click(bind(arena_export, ctx), None, files, api_name="arena_export")
