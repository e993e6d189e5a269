"""Blindness of failures: before the vote, an error must not name, size or place a model. Any
failure while answering ends the battle unrecorded with one fixed sentence (and a reason that names
nothing, where there is one); the original goes to the server log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from billion.core.errors import BillionError

if TYPE_CHECKING:
    from billion.arena.battle import Battle

log = logging.getLogger("billion.arena.battle")

ANSWER_FAILED = ("One of the answers failed, so this battle ended unrecorded (the server log has the "
                 "details). Ask again for a new battle; if it happens again, try a shorter prompt or "
                 "fewer new tokens.")


GATED_REASON = ("it is a gated model and this app has no Hugging Face token: its owner sets HF_TOKEN "
                "(on a Space, a secret named HF_TOKEN) after accepting the model's licence on the hub")
UNREACHABLE_REASON = "the Hugging Face hub is unreachable and the model is not downloaded yet"


class BattleEnded(BillionError):
    """An answer failed before the vote: the battle is over and must not be stored or voted on.
    reason: words that name no model, server, size or side (an endpoint's "its server is busy")."""

    def __init__(self, reason: str = "") -> None:
        head = "One of the answers failed"
        super().__init__(ANSWER_FAILED.replace(head, f"{head} ({reason})", 1) if reason else ANSWER_FAILED)


@contextmanager
def blind_errors(battle: Battle) -> Iterator[None]:
    """Loading, download and generation errors name or size the model; before the vote the page
    must not see them. Any error becomes BattleEnded (the original goes to the server log); an
    endpoint's failure keeps its blind reason (no model, server or side in it)."""
    from billion.core.download import GatedModel, HubUnreachable
    from billion.endpoints.client import EndpointError

    try:
        yield
    except BattleEnded:
        raise
    except (GatedModel, HubUnreachable) as exc:  # what to do, said of neither model
        log.warning("arena battle %s ended: a download failed (%s)", battle.id, exc)
        raise BattleEnded(GATED_REASON if isinstance(exc, GatedModel) else UNREACHABLE_REASON) from None
    except EndpointError as exc:
        log.warning("arena battle %s ended: an endpoint failed (%s)", battle.id, exc)
        raise BattleEnded(exc.reason) from None
    except Exception as exc:
        log.warning("arena battle %s ended: a contestant failed (%s: %s)", battle.id,
                    type(exc).__name__, exc, exc_info=not isinstance(exc, BillionError))
        raise BattleEnded() from exc
