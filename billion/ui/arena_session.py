"""The Arena's battle across a reload (issue 14, fix 3): an unvoted battle is kept server-side for
this browser's token (billion.ui.session) and brought back on page load, names still hidden.

The battle (who is who included) is kept on the server only, as gr.State keeps it; the page gets the
same blind view as before the reload. A voted, new or failed battle is forgotten.
"""

from __future__ import annotations

import base64
import pickle
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from billion.arena.battle import Battle
from billion.context import AppContext
from billion.ui.arena_view import battle_view
from billion.ui.session import on_page_load, page_token, saving

ARENA_STORAGE_KEY = "billion-arena-session"


def keep_battle(ctx: AppContext, token: str | None, battle: Battle | None) -> None:
    """Save this browser's open battle; forget one that is voted or gone."""
    if not token or ctx.sessions is None:
        return
    if battle is None or battle.status == "voted" or not battle.turns:
        ctx.sessions.forget(token, "arena")
        return
    # pickle: a Battle is nested frozen dataclasses; the value is written and read by this server only
    ctx.sessions.save(token, "arena", {"battle": base64.b64encode(pickle.dumps(battle)).decode()})


def kept_battle(ctx: AppContext, token: str | None, is_ended: Callable[[Battle], bool]) -> Battle | None:
    """This browser's open battle, unless voted or ended by a failed answer since."""
    kept = ctx.sessions.load(token, "arena") if token and ctx.sessions is not None else None
    if not isinstance(kept, dict) or not isinstance(kept.get("battle"), str):
        return None
    battle = pickle.loads(base64.b64decode(kept["battle"]))  # noqa: S301 (our own row, see above)
    if not isinstance(battle, Battle) or battle.status == "voted" or is_ended(battle):
        ctx.sessions.forget(token, "arena")  # type: ignore[arg-type]
        return None
    return battle


@dataclass(frozen=True)
class ArenaSession:
    """The tab's token State, a wrapper that saves a round's battle as it streams, and `controls`
    that saves the battle it draws (after a vote, a new round, a stop)."""

    token: gr.State
    keep: Callable
    controls: Callable


def session_arena(ctx: AppContext, battle: gr.State, restored: list, control_out: list,
                  controls: Callable, is_ended: Callable[[Battle], bool]) -> ArenaSession:
    """Wire the load (restore the battle into `restored`: round outputs and the battle State, then
    `controls` into control_out) and return the savers."""
    stored, token = page_token(ctx, ARENA_STORAGE_KEY)

    def restore(key: str | None):
        found = kept_battle(ctx, key, is_ended)
        if found is None:
            return (*(gr.update() for _ in restored[:-1]), None)
        return (*battle_view(found), found)

    def saving_controls(shown: Battle | None, key: str | None):
        keep_battle(ctx, key, shown)
        return controls(shown)

    on_page_load(stored, token, restore, restored).then(controls, battle, control_out, api_name=False)
    keep = (lambda handler: saving(handler, lambda key, _, update, __: keep_battle(ctx, key, update[-1])))
    return ArenaSession(token, keep, saving_controls)

