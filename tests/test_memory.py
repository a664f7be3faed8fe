"""Memory set by block sizes, not by N (issue 14): a stage run as its own process on N and on 2N real images keeps
the same peak resident memory, measured by the kernel (wait4's rusage), far below what holding the images costs."""

import os
import subprocess
import sys

import yaml

from tests.conftest import CIFAR10, REPO

MIB = 2**20


# Linux carries a forked child's resident-set high-water mark over from its parent (the pages it shares at fork),
# and pytest itself grows to gigabytes over the suite: the stage is started by a small fresh launcher process instead,
# whose own footprint is what a child inherits, and which reports the child's peak from wait4.
LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
_, status, usage = os.wait4(proc.pid, 0)
sys.stderr.write(proc.stderr.read().decode()[-2000:])
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def peak_rss(args: list[str]) -> int:
    """Peak resident bytes of one `dcq` process (ru_maxrss is in KiB on Linux)."""
    # One malloc arena: glibc gives the decoding threads arenas of their own, whose fragmentation moves the peak by
    # up to ~50 MiB from run to run and drifts up with N (measured: +25..+46 MiB from 2,000 to 8,000 images with the
    # default arenas, +3..+11 MiB with one). A fixed mmap threshold: glibc's moving one lets freed shard-sized
    # buffers return as heap that is not given back (benchmarks/bench_scale.py). What is measured here is what the
    # stage holds, not the allocator's slack.
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONPATH=str(REPO), MALLOC_ARENA_MAX="1", MALLOC_MMAP_THRESHOLD_="131072")
    done = subprocess.run([sys.executable, "-c", LAUNCHER, sys.executable, "-m", "pipeline.cli", *args], env=env,
                          capture_output=True, text=True, check=True)
    exit_code, max_rss_kib = map(int, done.stdout.split())
    assert exit_code == 0, done.stderr
    return max_rss_kib * 1024


def test_peak_rss_does_not_inherit_the_parent_footprint():
    """The measurement itself: a tiny command must read tens of MiB even while this process holds 1 GiB."""
    ballast = bytearray(2**30)
    ballast[:: 4096] = b"x" * len(ballast[:: 4096])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", LAUNCHER, sys.executable, "-c", "pass"], env=env,
                          capture_output=True, text=True, check=True)
    exit_code, max_rss_kib = map(int, done.stdout.split())
    assert exit_code == 0 and max_rss_kib * 1024 < 200 * MIB, max_rss_kib
    del ballast


def test_prepare_peak_memory_does_not_grow_with_n(tmp_path, cifar10):
    """128 px (real CIFAR-10 upsampled): 2,000 train images are 98 MB of pixels, 4,000 are 197 MB. Prepare decodes
    and writes one 16 MiB shard at a time, so its peak must not rise by anything like the 98 MB a whole-set copy
    would add (measured here with one malloc arena: 673-679 and 681 MiB)."""
    peaks = {}
    for per_class in (200, 400):
        params = tmp_path / f"params-{per_class}.yaml"
        params.write_text(yaml.safe_dump({
            "base": {"seed": 0, "device": "cpu"},
            "prepare": {"root": str(CIFAR10), "train_per_class": per_class, "test_per_class": 2, "image_size": 128,
                        "resize": "resize"}}))
        peaks[per_class] = peak_rss(["prepare", "--params", str(params), "--out", str(tmp_path / f"{per_class}.zarr")])
    images_mb = 10 * 200 * 128 * 128 * 3 / 1e6
    assert peaks[400] - peaks[200] < 48 * MIB, (peaks, f"one more set of {images_mb:.0f} MB of images")
    assert peaks[400] < 2048 * MIB, peaks
