"""Where the blocks of work run: in this process, or as Dask tasks on a cluster.

``models eval --chips N``, ``models sweep`` and ``python -m fpga sweep`` cut their work
into independent tasks (a block of chip instances; one FPGA build) and hand them to a
:class:`Runner`:

* default: in this process, one task after the other (no Dask involved);
* ``workers=N``: a local Dask cluster of N worker processes (one thread each) started
  for the run and shut down after it;
* ``scheduler="tcp://HOST:PORT"``: an existing Dask cluster (``dask scheduler`` and
  ``dask worker`` processes, see docs/SCALING.md).

Results come back in the order of the tasks whatever finishes first, so a task's result
may depend only on its own arguments: chip blocks do (every chip, calibration and read
noise draw is keyed by the chip's seed, :mod:`models.sampler`), hence the outputs do not
depend on the block size or on the number of workers. A worker lost mid-run has its
tasks rerun on the others by the Dask scheduler (up to
``distributed.scheduler.allowed-failures`` times). Large shared arguments (the network,
the images) go to the workers once. A progress bar (:func:`models.cmdline.progress_bar`:
stderr, a terminal only) follows the tasks as they finish.

Dask is imported only when a cluster is asked for; the models stay numpy-only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import threading
from typing import Callable

__all__ = ["ClusterError", "Runner", "check_address", "add_cluster_options", "runner_from_args",
           "running"]

_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc)://[^\s/]+$")


class ClusterError(Exception):
    """The cluster cannot be used (bad address, unreachable scheduler); one line."""


def check_address(address: str) -> str:
    """``address`` when it looks like a scheduler address (``tcp://HOST:PORT``)."""
    if not isinstance(address, str) or not _ADDRESS.match(address):
        raise ClusterError(f"scheduler address must look like tcp://HOST:PORT, not {address!r}")
    return address


_MALLOC_TUNED = False


def _tune_malloc() -> None:
    """Undo the Dask nanny's ``MALLOC_TRIM_THRESHOLD_=65536`` in this worker process.

    With that variable set, glibc stops adapting its mmap threshold, so every large numpy
    temporary is mapped and unmapped afresh: a block of chips then spent as much time in
    the kernel as in numpy (measured: 5.3 s of system time against 0.07 s for 100 MNIST
    chips). Thresholds at glibc's own adaptive maximum (32 MiB, trim at twice that) give
    the in-process behaviour back. No effect without glibc.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 32 << 20)
        libc.mallopt(m_trim_threshold, 64 << 20)
    except (OSError, AttributeError):           # pragma: no cover - not glibc
        pass


def _call(task, *, _fn, **shared):
    """One task on a worker: ``_fn(task, **shared)`` after :func:`_tune_malloc`."""
    _tune_malloc()
    return _fn(task, **shared)


@contextlib.contextmanager
def _signals_ignored_by_children():
    """Processes started within the block ignore SIGINT and SIGTERM (dispositions set to
    ignore survive ``exec``), as this process does meanwhile.

    A terminal's Ctrl-C, and a service manager's SIGTERM, reach the whole process group:
    local workers that died of them would leave the tools of a running build behind
    (fpga.build runs them in their own process group). Their client stops their tasks
    instead (:meth:`Runner.map`'s ``stop``) and closes the cluster. Outside the main
    thread the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _quiet_shutdown() -> None:
    """On a local worker about to be closed: only critical log records of Dask."""
    import logging
    logging.getLogger("distributed").setLevel(logging.CRITICAL)


class Runner:
    """Runs a list of tasks in this process or on a Dask cluster (module docstring).

    Parameters
    ----------
    workers : int or None
        Start a local cluster of this many worker processes.
    scheduler : str or None
        Address of an existing scheduler; exclusive with ``workers``.
    timeout : float
        Seconds to wait for the scheduler before :class:`ClusterError`.
    quiet : bool
        No progress bar.

    Use as a context manager; :meth:`map` runs tasks.
    """

    def __init__(self, workers: int | None = None, scheduler: str | None = None, *,
                 timeout: float = 10.0, quiet: bool = False):
        if workers is not None and scheduler is not None:
            raise ClusterError("give workers (a local cluster) or a scheduler address, not both")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                    or workers < 1):
            raise ClusterError(f"workers must be an integer >= 1, not {workers!r}")
        if scheduler is not None:
            check_address(scheduler)
        self.workers, self.scheduler, self.timeout, self.quiet = workers, scheduler, timeout, quiet
        self.client = self.cluster = None
        self._depth = 0

    @property
    def where(self) -> str:
        """Where the tasks run, in words."""
        if self.scheduler is not None:
            return f"Dask scheduler {self.scheduler}"
        if self.workers is not None:
            return (f"local Dask cluster of {self.workers} worker "
                    f"process{'es' if self.workers > 1 else ''}")
        return "this process"

    def __enter__(self) -> "Runner":
        # Nested uses share the outermost one's cluster.
        self._depth += 1
        if self._depth > 1 or (self.workers is None and self.scheduler is None):
            return self
        import logging

        from distributed import Client, LocalCluster
        # Worker processes inherit the environment: one BLAS thread each, as here.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        if self.scheduler is not None:
            try:
                self.client = Client(self.scheduler, timeout=self.timeout)
            except (OSError, TimeoutError) as exc:
                self._depth = 0
                raise ClusterError(f"cannot reach the Dask scheduler at {self.scheduler} "
                                   f"within {self.timeout:g} s ({type(exc).__name__})") from None
        else:
            with _signals_ignored_by_children():
                self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                            processes=True, dashboard_address=None,
                                            silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth > 0:
            return False
        import logging
        quiet = logging.getLogger("distributed")
        level = quiet.level
        if self.cluster is not None:
            # A local cluster's shutdown chatter (a worker's heartbeat to the closing
            # scheduler, scattered data lost with the workers) is not for the user: the
            # run has ended. The workers of a real cluster stay as they are.
            with contextlib.suppress(Exception):
                self.client.run(_quiet_shutdown)
            quiet.setLevel(logging.CRITICAL)
        try:
            if self.client is not None:
                self.client.close()
            if self.cluster is not None:
                self.cluster.close()
        finally:
            quiet.setLevel(level)
            self.client = self.cluster = None
        return False

    def map(self, fn: Callable, tasks: list, *, shared: dict | None = None,
            weights: list | None = None, desc: str = "tasks",
            done: Callable | None = None, stop: Callable | None = None) -> list:
        """``[fn(task, **shared) for task in tasks]``, run here or on the cluster.

        ``weights`` (one number per task, default 1) advance the progress bar, e.g. by
        the chips of a block. ``done(task, result)`` is called here as each task
        finishes (in the order they finish). The first task that raises stops the run
        and its exception is raised here.

        When the run ends early (a task's exception, Ctrl-C) the tasks not finished are
        cancelled; a task already running on a worker runs on (Dask cannot interrupt it)
        unless ``stop`` is given: ``stop()`` is then called on every worker, and should
        make the running tasks end (as :func:`fpga.build.stop_builds` does).
        """
        shared = dict(shared or {})
        weights = [1] * len(tasks) if weights is None else list(weights)
        from .cmdline import progress_bar
        bar = progress_bar(sum(weights), desc, self.quiet)
        try:
            if self.client is None:
                out = []
                for task, w in zip(tasks, weights):
                    out.append(fn(task, **shared))
                    if done is not None:
                        done(task, out[-1])
                    bar.update(w)
                return out
            from distributed import as_completed
            scattered = {k: self.client.scatter(v, broadcast=True) for k, v in shared.items()}
            futures = [self.client.submit(_call, task, _fn=fn, **scattered, pure=False)
                       for task in tasks]
            index = {f.key: i for i, f in enumerate(futures)}
            try:
                for future in as_completed(futures):
                    if future.status == "error":
                        future.result()             # raises the task's exception
                    i = index[future.key]
                    if done is not None:
                        done(tasks[i], future.result())
                    bar.update(weights[i])
                return self.client.gather(futures)
            except BaseException:
                self.client.cancel(futures)
                if stop is not None:
                    self.client.run(stop, on_error="ignore")
                raise
        finally:
            bar.close()


# --- the command-line options of every command that runs on a cluster ---------------------

#: Seconds ``--connect-timeout`` waits by default.
DEFAULT_CONNECT_TIMEOUT = 10.0


def _scheduler_address(text: str) -> str:
    """argparse type of ``--scheduler``."""
    from .cmdline import shown
    if not _ADDRESS.match(text):
        raise argparse.ArgumentTypeError(f"scheduler must be an address like tcp://HOST:PORT, "
                                         f"not {shown(text)}")
    return text


def add_cluster_options(parser, *, title: str, workers_help: str):
    """Add ``--workers N``, ``--scheduler tcp://HOST:PORT`` and ``--connect-timeout S``
    (defaults None; :func:`runner_from_args` turns them into a :class:`Runner`)."""
    from .cmdline import integer, number
    g = parser.add_argument_group(title)
    g.add_argument("--workers", type=integer("workers", 1, 256), default=None, metavar="N",
                   help=workers_help)
    g.add_argument("--scheduler", type=_scheduler_address, default=None,
                   metavar="tcp://HOST:PORT",
                   help="run on the Dask cluster of this scheduler (docs/SCALING.md)")
    g.add_argument("--connect-timeout", default=None, metavar="S",
                   type=number("connect-timeout", 0, 3600, lo_open=True, unit="s"),
                   help=f"with --scheduler: seconds to wait for it (default "
                        f"{DEFAULT_CONNECT_TIMEOUT:g})")
    return g


def runner_from_args(args, *, default_workers: int | None = None) -> Runner:
    """The (not yet started) Runner of ``--workers`` / ``--scheduler``; ``default_workers``
    when neither is given (None: this process). Contradicting options are a
    :class:`models.cmdline.UsageError`."""
    from .cmdline import UsageError
    if args.workers is not None and args.scheduler is not None:
        raise UsageError("not allowed with --workers (a local cluster)", "--scheduler")
    if args.connect_timeout is not None and args.scheduler is None:
        raise UsageError("is how long to wait for --scheduler; not allowed without it",
                         "--connect-timeout")
    workers = args.workers if args.workers is not None or args.scheduler else default_workers
    timeout = DEFAULT_CONNECT_TIMEOUT if args.connect_timeout is None else args.connect_timeout
    return Runner(workers, args.scheduler, timeout=timeout, quiet=args.quiet)


@contextlib.contextmanager
def running(runner: Runner):
    """``with running(runner):`` starts ``runner``; a scheduler it cannot reach is a
    :class:`models.cmdline.UsageError` about ``--scheduler`` (one line, exit status 2)."""
    from .cmdline import UsageError
    try:
        runner.__enter__()
    except ClusterError as exc:
        raise UsageError(str(exc), "--scheduler") from None
    try:
        yield runner
    finally:
        runner.__exit__(None, None, None)

