"""Progress reporting for training: a hook protocol and two renderers.

``fit`` calls a ``ProgressHook``'s methods if they exist, so the suite runner's live view can
pass any object with a subset of them. Without a hook ``fit`` shows a rich progress bar when
stderr is a terminal and stays silent otherwise (logs are in ``metrics.jsonl``).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, runtime_checkable

__all__ = ["PlainProgress", "ProgressHook", "RichProgress", "call_hook", "default_progress"]


@runtime_checkable
class ProgressHook(Protocol):
    """All methods are optional; ``fit`` calls the ones an object has (rank 0 only).

    ``on_epoch_start(epoch, total)``: ``epoch`` is 1-based. ``on_step(step, total_steps, loss)``:
    ``step`` is 1-based within the epoch; ``loss`` the step's loss. ``on_epoch_end(epoch,
    record)``: ``record`` is the epoch's ``metrics.jsonl`` line. ``on_eval(name, metrics)``:
    after an evaluation ("untrained", "epoch N", "final").
    """


def call_hook(hook: Any, method: str, *args: Any) -> None:
    fn = getattr(hook, method, None) if hook is not None else None
    if fn is not None:
        fn(*args)


class RichProgress:
    """A rich progress bar per epoch showing loss and images/s."""

    def __init__(self, console: Any = None, *, batch_size: int = 1) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = console or Console(stderr=True)
        self.batch_size = batch_size
        self._progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]} img/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._task: Any = None
        self._started = 0.0
        self._epoch = ""

    def on_epoch_start(self, epoch: int, total: int) -> None:
        if self._task is None:
            self._progress.start()
        self._epoch = f"{epoch}/{total}"
        self._started = time.perf_counter()
        self._task = self._progress.add_task("train", total=None, epoch=self._epoch, loss="-", rate="-")

    def on_step(self, step: int, total_steps: int, loss: float) -> None:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        self._progress.update(
            self._task, completed=step, total=total_steps, loss=f"{loss:.4f}", rate=f"{step * self.batch_size / elapsed:.1f}"
        )

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        self._progress.update(self._task, loss=f"{record['loss']:.4f}", rate=f"{record['images_per_s']:.1f}")
        evaluated = record.get("eval")
        if evaluated:
            shown = ", ".join(f"{k} {v:.2f}" for k, v in evaluated.items() if isinstance(v, float))
            self._progress.console.print(f"  epoch {epoch} eval: {shown}")

    def on_eval(self, name: str, metrics: dict[str, Any]) -> None:
        shown = ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if isinstance(v, float))
        self._progress.console.print(f"  {name}: {shown}")

    def close(self) -> None:
        if self._task is not None:
            self._progress.stop()


class PlainProgress:
    """One line per epoch on a stream (for logs and non-terminal output)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        extra = "".join(f" {k} {v:.2f}" for k, v in (record.get("eval") or {}).items() if isinstance(v, float))
        print(
            f"epoch {epoch}: loss {record['loss']:.4f} (ce {record['ce']:.4f}) lr {record['lr']:.3g} "
            f"{record['images_per_s']:.1f} img/s {record['time_s']:.1f}s{extra}",
            file=self.stream,
            flush=True,
        )

    def on_eval(self, name: str, metrics: dict[str, Any]) -> None:
        shown = ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if isinstance(v, float))
        print(f"{name}: {shown}", file=self.stream, flush=True)


def default_progress(batch_size: int) -> Any:
    """A rich bar on a terminal, nothing otherwise."""
    return RichProgress(batch_size=batch_size) if sys.stderr.isatty() else None
