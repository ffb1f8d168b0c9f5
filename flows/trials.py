"""Trials as Prefect tasks: the map the recipe flow hands a stage (``StageContext.map``) for its trials.

One task run per trial (``trial-<name>``), on a task runner chosen by ``stages.tune``:

- ``parallel=1`` and no ``dask_address``: each trial runs as a task in the calling thread, one after another
  (torch keeps every core);
- ``parallel=k``: a :class:`prefect.task_runners.ProcessPoolTaskRunner` of ``k`` worker processes (spawned, each
  initialised by :func:`recipe.tune.trial.init_worker`); every trial sets ``cores // k`` torch threads in its
  process. Processes, not threads: ``torch.set_num_threads`` is process-wide, and trials in threads would fight
  over the same cores;
- ``dask_address=tcp://HOST:PORT``: a ``prefect_dask.DaskTaskRunner`` connected to that existing cluster.

The runner starts on the first map call (a stage without trials costs nothing) and stays up until the flow ends,
so the workers' start-up (importing torch) is paid once per flow run, not once per batch of trials. Items whose
task fails (a worker process died) come back as their exception, in order, for the stage to record.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable
from typing import Any, Self

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner

from recipe.config import RecipeConfig
from recipe.tune.trial import init_worker


@task(name="trial", task_run_name="trial-{spec.name}", cache_policy=NO_CACHE, persist_result=False)
def trial_task(fn: Callable[[Any], Any], spec: Any) -> Any:
    """Run one trial: ``fn(spec)`` (a module-level function and a picklable spec)."""
    return fn(spec)


class TrialMap:
    """``map(fn, items) -> results`` over Prefect tasks (see the module docstring); a context manager that shuts
    its task runner down on exit."""

    def __init__(self, parallel: int = 1, dask_address: str | None = None, study_lock: Any = None) -> None:
        self.parallel, self.dask_address = parallel, dask_address
        self.runner: TaskRunner | None = None
        # How the tune stage holds its study (recipe.tune.lock.StudyLock); None: the stage's file lock.
        self.study_lock = study_lock

    @property
    def in_thread(self) -> bool:
        return self.parallel <= 1 and not self.dask_address

    def _runner(self) -> TaskRunner:
        if self.runner is None:
            if self.dask_address:
                from prefect_dask import DaskTaskRunner

                runner: TaskRunner = DaskTaskRunner(address=self.dask_address)
            else:
                runner = _PoolRunner(max_workers=self.parallel, initializer=init_worker)
            self.runner = runner.__enter__()
        return self.runner

    def __call__(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        if self.in_thread:
            return [trial_task(fn, x) for x in items]
        runner = self._runner()
        futures = contextvars.copy_context().run(_submit_outside_task_run, runner, fn, items)
        out: list[Any] = []
        for f in futures:
            try:
                out.append(f.result())
            except Exception as e:  # the task crashed (its worker died): the stage records it as a failed trial
                out.append(e)
        return out

    def close(self, interrupted: bool = False) -> None:
        """Shut the task runner down (its worker processes or Dask client), if one was started; idempotent.
        ``interrupted`` (Ctrl-C, SIGTERM): the pool's workers are terminated first instead of waited for (they
        ignore Ctrl-C once started, :func:`recipe.tune.trial.init_worker`; the stage ended their trials' MLflow
        runs KILLED)."""
        if self.runner is not None:
            runner, self.runner = self.runner, None
            if interrupted:
                _terminate_workers(runner)
            runner.__exit__(None, None, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close(interrupted=exc_type is not None and not issubclass(exc_type, Exception))


class _PoolRunner(ProcessPoolTaskRunner):
    """Prefect's process pool runner, whose thread that forwards the workers' events and logs to the API runs in
    the settings of the caller.

    Prefect starts that thread with a plain ``threading.Thread``, which does not carry context variables, so it
    saw no ``PREFECT_API_URL`` when the CLI had set it for the flow with ``temporary_settings`` (the shared local
    server), and its first forwarded event started Prefect's temporary server in the middle of the tune stage
    ("Starting temporary server", found with ``stages.tune.parallel=2``; local runs never use that server)."""

    def __enter__(self) -> Self:
        self._caller_context = contextvars.copy_context()
        return super().__enter__()

    def _forward_subprocess_messages(self) -> None:
        return self._caller_context.run(super()._forward_subprocess_messages)


def _terminate_workers(runner: TaskRunner) -> None:
    """SIGTERM the worker processes of a process pool runner (nothing for a Dask runner: its cluster is not ours)."""
    executor = getattr(runner, "_executor", None)
    for proc in list((getattr(executor, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            proc.terminate()


def _temporary_server_url() -> str | None:
    """The API URL of the temporary Prefect server this process started, when no API URL is configured.

    Submitted with it in the settings they carry, trial workers (pool processes, Dask workers) report to this
    server. Without it every worker process starts a temporary server of its own: 10-15 s each on this 2-core
    machine, far longer under load (the cause of prefect-dask "stalling" here: every Dask worker migrating a
    fresh SQLite database while the trials wait), and their task runs vanish with the worker."""
    from prefect.settings import get_current_settings

    if get_current_settings().api.url:
        return None
    from prefect.server.api.server import SubprocessASGIServer

    running = [s for s in SubprocessASGIServer._instances.values() if s.running and s.port]
    return running[0].api_url if running else None


def _submit_outside_task_run(runner: TaskRunner, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """Submit from the flow run's context without the calling stage task's: a task runner that ships work to
    other processes serialises the current task run context, parameters included, and the stage's parameters
    hold its StageContext (loaded data, this map and its process pool: unpicklable). The trials stay task runs
    of the flow run. Call inside a copied context: it clears the task run there only."""
    TaskRunContext.__var__.set(None)
    url = _temporary_server_url()
    with temporary_settings(updates={PREFECT_API_URL: url}) if url else contextlib.nullcontext():
        return [runner.submit(trial_task, {"fn": fn, "spec": x}) for x in items]


def trial_map_for(cfg: RecipeConfig) -> TrialMap:
    """The trial map ``cfg.stages.tune`` asks for; with a shared Prefect server (``PREFECT_API_URL``), its study
    lock is the server's global concurrency limit (:mod:`flows.study_lock`)."""
    from flows.study_lock import configured, prefect_study_lock
    from recipe.secrets import reveal

    s = cfg.stages.tune
    return TrialMap(
        parallel=s.parallel,
        dask_address=reveal(s.dask_address),
        study_lock=prefect_study_lock if configured() else None,
    )
