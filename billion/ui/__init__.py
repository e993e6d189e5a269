"""The Gradio UI: one module per tab, each with `build_*_tab(ctx)` over the app context.

The only package of billion that imports gradio or spaces.
"""

from billion.core.exports import public_api

__all__, __getattr__, __dir__ = public_api(__name__, {
    "billion.ui.chat": ("build_chat_tab",),
    "billion.ui.arena": ("build_arena_tab",),
    "billion.ui.leaderboard": ("build_leaderboard_tab",),
    "billion.ui.race": ("build_race_tab",),
    "billion.ui.trainer": ("build_trainer_tab",),
})
