"""The benchmark harness's bookkeeping (no timing here: benchmarks live in benchmarks/)."""

from __future__ import annotations

import itertools

import pytest

from benchmarks._harness import compare
from benchmarks._report import Row, table


def test_compare_alternates_and_takes_medians() -> None:
    calls: list[str] = []
    a_values = itertools.count(10)  # 10, 11, 12, ... (warm-up takes 10)
    b_values = itertools.count(100)

    def a() -> dict[str, float]:
        calls.append("a")
        return {"t": float(next(a_values))}

    def b() -> dict[str, float]:
        calls.append("b")
        return {"t": float(next(b_values))}

    result = compare(a, b, rounds=4, warmup=1)["t"]
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert (result.a.median, result.a.min, result.a.max) == (12.5, 11.0, 14.0)
    assert (result.b.median, result.b.min, result.b.max) == (102.5, 101.0, 104.0)
    assert result.median_ratio == pytest.approx(12.5 / 102.5)
    pairwise = sorted(x / y for x, y in zip(range(11, 15), range(101, 105), strict=True))
    assert result.pairwise_ratio == pytest.approx((pairwise[1] + pairwise[2]) / 2)


def test_compare_needs_a_round() -> None:
    with pytest.raises(ValueError, match="rounds"):
        compare(lambda: {"t": 1.0}, lambda: {"t": 1.0}, rounds=0)


def test_table_marks_missed_goals() -> None:
    comparison = compare(lambda: {"t": 2.0}, lambda: {"t": 1.0}, rounds=1, warmup=0)["t"]
    row = Row.compared("bench", comparison, unit="ms", scale=1000, goal="<= 1.05", met=False)
    text = table([row])
    assert "| bench | t | 2000.0 [2000.0-2000.0] ms | 1000.0 [1000.0-1000.0] ms |" in text
    assert "2.000 (pairwise 2.000) | <= 1.05 | **no** |" in text


def test_the_million_parts_section_is_spliced_into_the_page() -> None:
    from benchmarks import engine_million

    figures = {
        "create_task_s": 12.0,
        "latency_ms": 3.0,
        "latency_100_ms": 2.5,
        "latency_ratio": 1.2,
        "task_status_ms": 0.05,
        "cycles": 10_000,
        "peak_rss_mib": 250.0,
        "last_cycle_with_merge_s": 9.0,
        "fast_forwarded": 989_999,
        "date": "today",
    }
    page = "# Performance\n\nintro\n"
    once = engine_million.splice(page, figures)
    assert once.startswith(page.rstrip("\n")) and engine_million.HEADING in once
    assert "| 12.0 s | < 15 s | yes |" in once
    assert "| < 200 MB | no |" in once  # 250 MiB misses the memory goal
    again = engine_million.splice(once + "\n## Later section\n\ntext\n", {**figures, "cycles": 5})
    assert again.count(engine_million.HEADING) == 1 and "## Later section" in again
    assert "5 cycles" in again and "10,000 cycles" not in again
