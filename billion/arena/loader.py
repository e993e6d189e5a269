"""How a battle gets its two contestants' models: leased from the app's model cache while they answer.

A battle's load function may be a plain `Contestant -> model` function (tests, scripts); the
`ContestantLoader` of `contestant_loader` also leases each cached model until both answers end, so
a load by another session cannot evict a model mid-answer.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from billion.arena.contestants import Contestant

if TYPE_CHECKING:
    from billion.core.model_cache import ModelCache

LoadFn = Callable[[Contestant], Any]


class ContestantLoader:
    """A LoadFn over a ModelCache; an endpoint contestant "loads" as its EndpointModel (its server
    holds the weights)."""

    def __init__(self, models: ModelCache):
        self.models = models

    def __call__(self, contestant: Contestant) -> Any:
        """The model, not held (a later load may evict it): `hold` it for as long as it answers."""
        if contestant.endpoint is not None:
            return contestant.endpoint
        return self.models.load(contestant.alias, contestant.load_options())

    def hold(self, contestant: Contestant, stack: ExitStack) -> Any:
        """The model, leased until `stack` closes."""
        if contestant.endpoint is not None:
            return contestant.endpoint
        loaded, lease = self.models.acquire(contestant.alias, contestant.load_options())
        stack.callback(lease.release)
        return loaded


def contestant_loader(models: ModelCache) -> ContestantLoader:
    return ContestantLoader(models)


def hold_models(contestants: tuple[Contestant, ...], load: LoadFn, stack: ExitStack) -> list[Any]:
    """Each contestant's model, leased until `stack` closes where `load` can lease (a ContestantLoader)."""
    if isinstance(load, ContestantLoader):
        return [load.hold(c, stack) for c in contestants]
    return [load(c) for c in contestants]
