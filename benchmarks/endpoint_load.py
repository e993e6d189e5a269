"""The arena load of benchmarks/arena_load.py against endpoint contestants: `transformers serve`
runs the offline SmolLM2 on this machine; the app's models.yaml declares it twice (served-a and
served-b, the "endpoints" pool), so every battle is two chat completions over loopback and the app
itself loads no model. Run through `arena_load.py --endpoints`."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from endpoint_servers import TransformersServe, smollm_folder  # noqa: E402

#: the app's RSS growth that still counts as flat: half of one fp32 SmolLM2-135M (0.50 GiB)
FLAT_GROWTH_BYTES = int(0.25 * 2**30)


@dataclass(frozen=True)
class EndpointLoad:
    result: Any  # arena_load.LoadResult
    server_rss_bytes: int
    server_peak_bytes: int

    @property
    def ok(self) -> bool:
        return self.result.ok and self.result.growth_bytes <= FLAT_GROWTH_BYTES


def _memory(pid: int) -> tuple[int, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def endpoint_load_run(tmp: Path, args: Any, start_app: Callable, load_phases: Callable) -> EndpointLoad:
    (tmp / "serve").mkdir(parents=True, exist_ok=True)
    server = TransformersServe(smollm_folder(), tmp / "serve" / "serve.log").start()
    try:
        data = tmp / "endpoints"
        data.mkdir(parents=True, exist_ok=True)
        entries = "".join(f"  - alias: {alias}\n    base_url: {server.base_url}\n"
                          f"    model: {server.model}\n" for alias in ("served-a", "served-b"))
        (data / "models.yaml").write_text("models:\n" + entries)
        app = start_app(data, args.budget_gb, args.concurrency,
                        env={"BILLION_MODELS_FILE": str(data / "models.yaml")})
        try:
            result = load_phases(app, args.clients, args.rounds, args.tokens, args.budget_gb,
                                 pool="endpoints")
        finally:
            app.stop()
        rss, peak = _memory(server.process.pid)
        return EndpointLoad(result, rss, peak)
    finally:
        server.stop()


def _row(result: Any, clients: int) -> tuple[float, float]:
    """(battles/s, battle p90 s) of the phase with that many clients."""
    from arena_load import percentile

    phase = next(p for p in result.phases if p.clients == clients)
    battles = [c.seconds for c in phase.ledger.calls if c.kind == "battle" and not c.error]
    return len(battles) / phase.seconds, percentile(battles, 90)


def endpoint_report(served: EndpointLoad, local: Any) -> list[str]:
    gib = 2**30
    result = served.result
    clients = max(p.clients for p in result.phases)
    (rate, p90), (local_rate, local_p90) = _row(result, clients), _row(local, clients)
    flat = "flat" if result.growth_bytes <= FLAT_GROWTH_BYTES else "NOT flat"
    return [
        f"endpoints, {clients} clients: {rate:.2f} battles/s ({rate / local_rate:.2f}x local), "
        f"battle p90 {p90:.2f} s ({p90 / local_p90:.2f}x local)",
        f"app memory: idle RSS {result.idle.rss_bytes / gib:.2f} GiB, peak "
        f"{result.peak_bytes / gib:.2f} GiB, growth {result.growth_bytes / gib:.2f} GiB: {flat} "
        f"(limit {FLAT_GROWTH_BYTES / gib:.2f} GiB; the local run grew {local.growth_bytes / gib:.2f} GiB)",
        f"transformers serve: RSS {served.server_rss_bytes / gib:.2f} GiB, peak "
        f"{served.server_peak_bytes / gib:.2f} GiB (the weights live there)",
        f"store: {result.stored} votes stored, {result.exported} exported, "
        f"{len(result.missing)} answered votes missing; failed calls: {len(result.failures)}",
    ]
