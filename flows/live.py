"""The live view of ``flows run recipe``: where the run is while it runs, each stage's verdict as soon as it ends.

On a terminal (stderr is a TTY) a rich progress line shows the stage (k of n), the runs done and left in it (the
runs the stage plans: overfit's rungs, regularize's candidates, tune's trials and retrainings, squeeze's members
and its longer and distilled runs), the stage's and the whole recipe's elapsed time, each labelled, and the
estimated time left: what ``budget.minutes`` leaves of the recipe's budget, or, without a budget, the stage's
runs left at its pace so far. Each stage's verdict line is printed above it as
the stage ends. Anywhere else (CI, a pipe, a file) the same news comes as plain lines, without control characters:
``[k/n] stage NAME: started (R runs)`` and the verdict line. Written to stderr, so the summary and the JSON on
stdout stay as they were.

It listens to :data:`recipe.pipeline.LISTENERS`, which the flow's stages reach in this process; trials run in
pool processes or on Dask are counted when their stage ends.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class LiveView:
    """Listens to the pipeline's events and shows them on ``stream`` (default stderr): a rich progress line on a
    terminal, plain lines elsewhere (``plain``: force either)."""

    def __init__(self, stream: IO[str] | None = None, plain: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.plain = (not isatty) if plain is None else plain
        self.start = time.perf_counter()
        self.budget_s: float | None = None
        self.stage: str | None = None
        self.index = self.total = 0
        self.runs: int | None = None
        self.done = 0
        self.stage_start = self.start
        self._progress: Any = None
        self._task: Any = None

    # --- the pipeline's events ---

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        handler = getattr(self, f"_on_{event}", None)
        if handler is not None:
            handler(**info)
        self._refresh()

    def _on_run_start(self, stages: list[str], budget_s: float | None) -> None:
        self.total, self.budget_s = len(stages), budget_s
        if budget_s:
            self._line(f"budget: {budget_s / 60:g} min for {len(stages)} stages")

    def _on_stage_reused(self, stage: str, index: int, total: int, line: str) -> None:
        self._line(f"[{index}/{total}] {line}")

    def _on_stage_start(self, stage: str, index: int, total: int, runs: int | None, run_id: str | None = None) -> None:
        self.stage, self.index, self.total, self.runs, self.done = stage, index, total, runs, 0
        self.stage_start = time.perf_counter()
        # "up to": a budgeted stage stops at its deadline (tune's trials, squeeze's members), and a
        # capacity ladder stops growing when a rung stops helping
        planned = f"up to {runs} training runs" if runs and runs > 1 else "1 training run" if runs else ""
        if run_id:  # the stage's MLflow run, to open while it runs (Prefect's own line of it is not echoed)
            self._line(
                f"[{index}/{total}] stage {stage}: started (MLflow run {run_id})" + (f", {planned}" if planned else "")
            )
        elif self.plain:
            self._line(f"[{index}/{total}] stage {stage}: started" + (f" ({planned})" if planned else ""))

    def _on_run_done(self) -> None:
        if self.stage is None:  # between stages: a budget warm-up of the next stage, before it starts
            return
        self.done += 1
        if self.plain and self.runs and self.done < self.runs:  # the last is followed by the stage's verdict
            self._line(f"[{self.index}/{self.total}] stage {self.stage}: {self.runs_text()}, {self.times_text()}")

    def _on_stage_end(self, stage: str, index: int, total: int, verdict: str, seconds: float, line: str) -> None:
        self.stage, self.runs, self.done = None, None, 0
        self._line(f"[{index}/{total}] {line} in {_clock(seconds)}")

    def _on_run_end(self, verdict: str) -> None:
        self._line(f"recipe: {verdict.upper()} after {_clock(time.perf_counter() - self.start)}")

    # --- what is shown ---

    def runs_text(self) -> str:
        if not self.runs:
            return f"{self.done} {'run' if self.done == 1 else 'runs'} done"
        return f"{min(self.done, self.runs)} of {self.runs} {'run' if self.runs == 1 else 'runs'} done, {max(self.runs - self.done, 0)} left"

    def eta(self) -> float | None:
        """Seconds left: the budget's remainder when there is one, else the stage's runs left at its pace."""
        elapsed = time.perf_counter() - self.start
        if self.budget_s:
            return max(self.budget_s - elapsed, 0.0)
        if self.runs and self.done:
            pace = (time.perf_counter() - self.stage_start) / self.done
            return pace * max(self.runs - self.done, 0)
        return None

    def times_text(self) -> str:
        """The clocks, each named: the current stage's elapsed time (while a stage runs), the whole recipe's, and
        the time left, of the budget (the whole recipe's remainder) or of the stage (its runs left at its pace):
        ``stage 1:02 elapsed, recipe 3:12 elapsed, about 1:10 left in the stage``."""
        now = time.perf_counter()
        eta = self.eta()
        stage = f"stage {_clock(now - self.stage_start)} elapsed, " if self.stage else ""
        if eta is None:
            left = ""
        elif self.budget_s:
            left = f", about {_clock(eta)} of the budget left"
        else:
            left = f", about {_clock(eta)} left in the stage"
        return f"{stage}recipe {_clock(now - self.start)} elapsed{left}"

    def _line(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self.stream, flush=True)

    def _refresh(self) -> None:
        if self._progress is None or self._task is None:
            return
        self._progress.update(self._task, description=self.describe())

    def forms(self) -> list[str]:
        """The progress line's text, longest first: every clock named, then shorter labels, then fewer parts,
        down to the stage alone (``[3/6] overfit``)."""
        now = time.perf_counter()
        eta = self.eta()
        if self.stage:
            where, short = (
                f"stage {self.index} of {self.total}: {self.stage}",
                f"[{self.index}/{self.total}] {self.stage}",
            )
        else:
            where = short = "between stages"
        runs = f"{min(self.done, self.runs)}/{self.runs} runs" if self.runs else f"{self.done} runs"
        clocks = (
            f"stage {_clock(now - self.stage_start)}, " if self.stage else ""
        ) + f"recipe {_clock(now - self.start)}"
        left = f"~{_clock(eta)} left" if eta is not None else f"recipe {_clock(now - self.start)}"
        return [
            f"{where} | {self.runs_text()} | {self.times_text()}",
            f"{short} | {runs} | {clocks}" + (f", ~{_clock(eta)} left" if eta is not None else ""),
            f"{short} | {runs} | {left}",
            f"{short} | {runs}",
            short,
        ]

    def describe(self, width: int | None = None) -> str:
        """The longest of :meth:`forms` that fits ``width`` columns (None: the longest), cut at a word boundary
        only when even the shortest does not fit: a terminal narrower than the text gets a shorter line, never
        one cut mid-word or wrapped under itself."""
        forms = self.forms()
        if width is None:
            return forms[0]
        for text in forms:
            if len(text) <= width:
                return text
        cut = forms[-1][: max(width, 1)]
        return cut.rsplit(" ", 1)[0] if " " in cut and len(forms[-1]) > width else cut

    # --- on and off ---

    @contextmanager
    def shown(self) -> Iterator[LiveView]:
        """Listen to the pipeline (and, on a terminal, show the progress line) inside the block. On a terminal the
        line fits its width (:meth:`describe`, read again at every refresh), and the log handlers that write to the
        same stream (Prefect's console handler, plain stream handlers) print through the live display, above the
        line, instead of over it."""
        from recipe import pipeline
        from recipe.train.callbacks import progress as fit_bar

        owner = fit_bar.TERMINAL_OWNER
        restore: list[Any] = []
        if not self.plain:
            fit_bar.TERMINAL_OWNER = "flows live view"  # the per-fit bars would overwrite this display
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn

            self._progress = Progress(
                SpinnerColumn(), _LineColumn(self), console=Console(file=self.stream), transient=True
            )
            self._task = self._progress.add_task("starting", total=None)
            self._progress.start()
            restore = _log_through(self._progress.console, self.stream)
        pipeline.LISTENERS.append(self)
        try:
            yield self
        finally:
            if self in pipeline.LISTENERS:
                pipeline.LISTENERS.remove(self)
            for undo in reversed(restore):
                undo()
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
            fit_bar.TERMINAL_OWNER = owner


def _LineColumn(view: LiveView):
    """A rich progress column that renders ``view``'s line to fit the console's width at each refresh (the
    spinner column and the padding take 2 columns)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class LineColumn(ProgressColumn):
        def render(self, task) -> Text:
            console = view._progress.console if view._progress is not None else None
            width = console.width - 2 if console is not None else None
            return Text(view.describe(width), no_wrap=True, overflow="crop")

    return LineColumn()


def _same_stream(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return a.fileno() == b.fileno()
    except (AttributeError, OSError, ValueError):
        return False


class _Forward(io.TextIOBase):
    """Writes to ``target`` (a :class:`rich.file_proxy.FileProxy`) as a terminal: a rich console keeps its colours
    and prints through the live display."""

    def __init__(self, target: Any) -> None:
        super().__init__()
        self._target = target

    def write(self, text: str) -> int:
        self._target.write(text)
        return len(text)

    def flush(self) -> None:
        self._target.flush()

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._target.fileno()


def _log_through(console: Any, stream: IO[str]) -> list[Any]:
    """Point every logging stream handler that writes to ``stream`` (Prefect's ``PrefectConsoleHandler`` keeps a
    rich console of its own on it) at a :class:`rich.file_proxy.FileProxy` of ``console``, so that its lines go
    above the live display instead of over it. Returns the functions that undo it."""
    import logging

    from rich.console import Console
    from rich.file_proxy import FileProxy

    proxy = FileProxy(console, stream)
    undo: list[Any] = []
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    seen: set[int] = set()
    for logger in loggers:
        for h in logger.handlers:
            if id(h) in seen or isinstance(h, logging.FileHandler) or not isinstance(h, logging.StreamHandler):
                continue
            seen.add(id(h))
            if not _same_stream(h.stream, stream):
                continue
            old_stream = h.setStream(proxy)
            undo.append(lambda h=h, old=old_stream: h.setStream(old))
            own = getattr(h, "console", None)
            if isinstance(own, Console):  # Prefect's handler prints through its own console, not h.stream
                old_file = own.file
                own.file = _Forward(proxy)  # not the proxy itself: a console unwraps a FileProxy it is given
                undo.append(lambda own=own, old=old_file: setattr(own, "file", old))
    return undo


__all__ = ["LiveView"]
