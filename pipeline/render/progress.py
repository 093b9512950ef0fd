"""Training progress for people: a rich bar per training on a terminal, plain lines in CI logs, or nothing.

The trainer reports at its health checks (each epoch's end; on a GPU at most every 16 steps), the
sync point it already has, so progress never adds a device sync. The CLI picks the mode once with `setup_progress`;
without that call (library use, tests) nothing is printed.
"""
from __future__ import annotations

import sys
from typing import Callable

from pipeline.core.train import EpochStats

MODES = ("auto", "rich", "plain", "quiet")


Reporter = Callable[[EpochStats], None]
_mode = "quiet"


def setup_progress(mode: str = "auto", quiet: bool = False) -> str:
    """`auto`: a rich bar on a terminal, plain lines otherwise (CI logs are not terminals)."""
    global _mode
    if quiet:
        _mode = "quiet"
    elif mode == "auto":
        _mode = "rich" if sys.stdout.isatty() else "plain"
    else:
        _mode = mode
    return _mode


class _Plain:
    def __init__(self, label: str) -> None:
        self.label = label

    def __call__(self, s: EpochStats) -> None:
        print(f"[{self.label}] epoch {s.epoch}/{s.epochs} step {s.step}/{s.steps} loss {s.loss:.4f} "
              f"{s.samples_per_s:,.0f} samples/s", flush=True)

    def close(self) -> None:
        pass


class _Rich:
    def __init__(self, label: str, epochs: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("epochs  {task.fields[detail]}"), TimeElapsedColumn(), transient=False)
        self.task = self.progress.add_task(label, total=epochs, detail="")
        self.progress.start()

    def __call__(self, s: EpochStats) -> None:
        self.progress.update(self.task, completed=s.epoch, detail=f"step {s.step}/{s.steps}  loss {s.loss:.4f}  "
                                                                   f"{s.samples_per_s:,.0f} samples/s")

    def close(self) -> None:
        self.progress.stop()


class Tracker:
    """One training's reporter; use as a context manager so a rich bar is always stopped."""

    def __init__(self, label: str, epochs: int) -> None:
        self.sink = {"rich": lambda: _Rich(label, epochs), "plain": lambda: _Plain(label)}.get(_mode, lambda: None)()

    def __enter__(self) -> Reporter | None:
        return self.sink

    def __exit__(self, *exc) -> None:
        if self.sink is not None:
            self.sink.close()
