"""The one shared mutable thing: a SQLite store of battles, votes, benchmark results and training runs.

It knows nothing of the features that write to it: the arena hands it an on-vote hook (VoteHook).
"""

from billion.core.exports import public_api

__all__, __getattr__, __dir__ = public_api(__name__, {
    "billion.store.store": ("Store", "VoteHook"),
    "billion.store.schema": ("POSITIONS", "SCHEMA_VERSION", "WINNERS"),
})
