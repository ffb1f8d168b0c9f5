"""A rich progress bar over epochs and batches, shown only on a terminal.

Redraws are throttled (rich refreshes at most ``refresh_per_second``) and nothing is
drawn when stdout is not a terminal (CI logs, Prefect workers), so it costs nothing there.
"""

from __future__ import annotations

from recipe.train.callbacks.base import Callback

# Set while another live display owns the terminal (the live view of `flows run recipe`, flows/live.py): two rich
# live displays on one terminal overwrite each other, so the per-fit bar then stays off.
TERMINAL_OWNER: str | None = None


class ProgressBar(Callback):
    """A rich progress bar over epochs and training batches, with the last metrics; drawn only when ``enabled``
    and stdout is a terminal."""

    order = 50

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress = None

    def before_fit(self) -> None:
        from rich.console import Console

        self._progress = None
        if not (self.enabled and Console().is_terminal) or TERMINAL_OWNER is not None:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            transient=True,
            refresh_per_second=5,
        )
        self._progress.start()
        t = self.trainer
        self._epochs = self._progress.add_task("epoch", total=t.n_epochs, completed=t.start_epoch, info="")
        self._batches = self._progress.add_task("train", total=0, info="")

    def before_train(self) -> None:
        if self._progress:
            self._progress.reset(self._batches, total=len(self.trainer.train_data), description="train")

    def after_batch(self) -> None:
        if self._progress and self.trainer.training:
            self._progress.advance(self._batches)

    def after_epoch(self) -> None:
        if self._progress:
            m = self.trainer.metrics
            info = "  ".join(f"{k} {v:.4f}" for k, v in m.items() if "/" in k and "smooth" not in k)
            self._progress.update(self._epochs, advance=1, info=info)

    def after_fit(self) -> None:
        if self._progress:
            self._progress.stop()
            self._progress = None
