"""The per-stage peak-memory reading of `benchmarks/sample_speed.py`."""

import mmap
import sys

import pytest

from .benchmark_module import load_benchmark

sample_speed = load_benchmark("sample_speed")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux only)")
def test_peak_memory_sees_a_stage_and_forgets_it_after_a_reset():
    assert sample_speed.reset_peak_rss(), "writing /proc/self/clear_refs was refused"
    before = sample_speed.peak_rss_mb()
    # 300 MB of fresh anonymous pages, touched one by one: through mmap, not malloc, so
    # memory the allocator kept from earlier tests cannot absorb it.
    size = 300 * 2**20
    block = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    block.close()
    during = sample_speed.peak_rss_mb()
    assert during - before > 250
    sample_speed.reset_peak_rss()
    # A new stage does not inherit the freed block's high-water mark.
    assert sample_speed.peak_rss_mb() < during - 250
