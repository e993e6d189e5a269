"""Blind battles between two contestants, leak checks, and the ratings computed from the votes.

A round: BattleRequest -> start_battle -> ask -> record_ask -> stream_pending -> record_answers ->
cast_vote -> reveal (billion.arena.rounds stores each step; billion.arena.battle holds them).
"""

from billion.core.exports import public_api

__all__, __getattr__, __dir__ = public_api(__name__, {
    "billion.arena.battle": ("Battle", "Reveal", "Turn", "answer_pending", "answer_turn", "ask",
                             "contestant_loader", "conversation", "new_battle", "public_label",
                             "regenerate", "reveal", "stream_pending", "vote"),
    "billion.arena.rounds": ("BattleRequest", "cast_vote", "record_answers", "record_ask", "start_battle"),
    "billion.arena.contestants": ("Contestant", "contestant_pool", "pick_pair",
                                  "register_adapter_contestant", "registered_contestants"),
    "billion.arena.ratings": ("ModelRating", "RatingTable", "compute_ratings"),
    "billion.arena.leaks": ("detect_identity_leak",),
    "billion.arena.hub_sync": ("HubSync", "start_hub_sync"),
})
