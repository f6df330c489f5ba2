"""Hands events to the ``notify`` hook on background threads, so a slow notifier never blocks a job."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from aq_core.config import QueueConfig

if TYPE_CHECKING:
    from aq_core.journal import Journal
    from aq_core.store import State, Store


class Notifier:
    """Sends each event to every ``notify`` implementation; ``drain`` waits for the pending ones."""

    def __init__(self, config: QueueConfig, log: Callable[[str], None]) -> None:
        self.config = config
        self.log = log
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="aq-notify")
        self._pending: set[Future] = set()
        self._lock = threading.Lock()

    def listening(self) -> bool:
        """False when no ``notify`` implementation would act on an event: the built-in notifier's
        alone, with no ``notify:`` command configured. Then an event is neither built nor sent."""
        if self.config.notify:
            return True
        from aq_core import notify_command, plugins

        return any(impl.plugin is not notify_command for impl in plugins.plugin_manager().hook.notify.get_hookimpls())

    def send(self, event: str, record: Mapping[str, object]) -> None:
        if not self.listening():
            return
        payload = {**record, "event": event}
        future = self._pool.submit(self._call, event, payload)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def submit(self, work: Callable[[], None]) -> None:
        """Run ``work`` on the notifier's threads; ``drain`` waits for it like a notification."""
        future = self._pool.submit(work)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def _call(self, event: str, record: dict) -> None:
        from aq_core import plugins

        try:
            plugins.plugin_manager().hook.notify(event=event, record=record, config=self.config, log=self.log)
        except Exception as exc:  # a broken notifier plugin is reported (once), never fatal
            if not isinstance(exc, plugins.PluginError):
                self.log(f"notify: {event}: {type(exc).__name__}: {exc}")

    def drain(self, timeout: float | None = None) -> bool:
        """Wait for pending notifications (up to ``timeout``, default the notifier timeout)."""
        deadline = time.monotonic() + (self.config.notify_timeout + 1 if timeout is None else timeout)
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def send_job_finished(
    store: Store, notifier: Notifier, job_id: str, state: State, pr: str | None | bool = True
) -> None:
    """Send ``job_finished`` with the job's insights record (never its prompt).

    ``pr``: the job's ``pr:`` key when the caller knows it (the runner does: None for none), else True
    (read from its file)."""
    if notifier.listening():
        from aq_core.insights import job_record

        notifier.send("job_finished", job_record(job_id, state, store.read_meta(job_id)))
    if state.value == "done" and pr:  # a job with `pr: draft|ready` that ended ok opens its pull request
        from aq_core.pr import after_done

        after_done(store, notifier, job_id)


@contextlib.contextmanager
def command_notifier(store: Store, journal: Journal) -> Iterator[Callable[[str, State], None]]:
    """For one-shot commands (``aq cancel``, ``aq recover``): a ``job_finished`` sender, drained on exit."""
    notifier = Notifier(store.files.config(), lambda line: journal.say(None, line))
    try:
        yield lambda job_id, state: send_job_finished(store, notifier, job_id, state)
        notifier.drain()
    finally:
        notifier.close()
