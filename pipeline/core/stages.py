"""Seconds per stage of a run: what the pipeline itself costs around the training it exists for."""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

# Work a run exists for; everything else is the pipeline's fixed overhead.
PRODUCTIVE = ("train.", "evaluate.")


class Stages:
    """Accumulates wall seconds by stage name, in the order stages first ran."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + max(seconds, 0.0)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = self.clock()
        try:
            yield
        finally:
            self.add(name, self.clock() - start)

    def productive_s(self) -> float:
        return sum(s for k, s in self.seconds.items() if k.startswith(PRODUCTIVE))

    def total_s(self) -> float:
        return sum(self.seconds.values())

    def overhead_s(self, wall_s: float | None = None) -> float:
        """Wall time minus training and evaluation (wall time: the stages' sum when not given)."""
        return (self.total_s() if wall_s is None else wall_s) - self.productive_s()

    def metrics(self) -> dict[str, float]:
        return {f"time.{k}_s": round(v, 3) for k, v in self.seconds.items()}

    def line(self, wall_s: float | None = None) -> str:
        wall = self.total_s() if wall_s is None else wall_s
        parts = ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items())
        return (f"Seconds: {parts}; wall {wall:.1f}, of which fixed overhead {self.overhead_s(wall):.1f} "
                f"({self.overhead_s(wall) / wall:.0%})" if wall > 0 else f"Seconds: {parts}")


def process_age_s() -> float:
    """Seconds since this process started: the interpreter's and the imports' share of a command."""
    try:
        import psutil

        return max(time.time() - psutil.Process().create_time(), 0.0)
    except Exception:  # noqa: BLE001  psutil missing or no process table: the imports go uncounted
        return 0.0


_COUNTED: list[bool] = []


def command_age_s() -> float:
    """Seconds since this command began: the process's age for a process's first command (its interpreter and
    imports count), 0 for a later one (a test or a notebook calling the CLI again has imported all already)."""
    if _COUNTED:
        return 0.0
    _COUNTED.append(True)
    return process_age_s()


class Handoff:
    """What the command line measured before its flow (imports, the run-key check) and when it called the
    flow, for the flow to pick up once: its own stages then follow on from them."""

    def __init__(self) -> None:
        self.before: Stages | None = None
        self.called_at = 0.0

    def give(self, before: Stages) -> None:
        self.before, self.called_at = before, before.clock()

    def take(self) -> Stages:
        """The command line's stages plus the orchestration start-up up to now; fresh ones without a command line."""
        st, self.before = self.before, None
        if st is None:
            return Stages()
        st.add("orchestration start-up", st.clock() - self.called_at)
        return st


HANDOFF = Handoff()  # one command line per process: `mpops run` gives, its training flow takes
