"""The bar knows the total once the requestor tells it (its status service); else it pulses."""

from __future__ import annotations

import io

from golem_apps import TaskStatus
from golem_apps.runner import PlainReporter, RichReporter, Stats


def status(done: int, total: int) -> TaskStatus:
    parts = {"total": total, "done": done, "ready": total - done}
    return TaskStatus("t", "active", parts, {}, failures=0, max_retries=3)


def test_plain_lines_count_against_the_total_once_known() -> None:
    stream = io.StringIO()
    stats = Stats(parts=2)
    reporter = PlainReporter(stream)
    reporter.start(stats, "t", "/w")
    reporter.event("verified", "s1")  # no status service (yet): the runner's own count
    stats.status = status(3, 5)
    reporter.status(stats.status)
    reporter.event("verified", "s2")
    first, second = stream.getvalue().splitlines()[1:]
    assert "(2 verified, 0 running, 0 failed)" in first
    assert "(3/5 verified, 0 running, 0 failed)" in second


def test_the_rich_bar_shows_n_of_m_and_an_eta() -> None:
    stream = io.StringIO()
    stats = Stats()
    reporter = RichReporter(stream)
    reporter.start(stats, "t", "/w")
    [bar] = reporter._progress.tasks

    def shown() -> tuple[float | None, float]:
        return bar.total, bar.completed

    assert shown() == (None, 0)  # pulsing: nothing says how many parts there are
    stats.status = status(3, 5)
    reporter.status(stats.status)
    assert shown() == (5, 3)
    assert "3/5 parts verified" in bar.fields["counts"]
    reporter.stop()
    assert shown() == (3, 3)
