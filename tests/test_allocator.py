import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# Allocates, touches and frees a 64 MiB block, and prints how many MiB the process still holds of it.
_HELD_AFTER_FREE = textwrap.dedent("""
    import os, sys
    import numpy as np
    from pipeline.allocator import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    def resident_mib():
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    before = resident_mib()
    block = np.ones(1 << 24, np.float32)
    del block
    print(resident_mib() - before)
""")


def _held_mib(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", _HELD_AFTER_FREE, mode], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def test_a_freed_large_block_stays_in_the_process_for_the_next_batch():
    """By default glibc gives a 64 MiB block back to the kernel on free, so the next batch faults in fresh zeroed
    pages; with the policy the `dcq` entry point sets, the freed block stays in the heap for reuse."""
    assert _held_mib("default") < 16
    assert _held_mib("keep") > 48


def test_the_policy_is_set_once_and_reports_itself():
    """In a child process: the pytest process keeps glibc's own policy, so memory tests measure what they did."""
    code = "from pipeline.allocator import keep_freed_memory as k; print(k(), k())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]
