"""Memory set by block sizes, not by N (issue 14): a stage run as its own process on N and on 2N real images keeps
the same peak resident memory, measured by the kernel (wait4's rusage), far below what holding the images costs."""

import os
import subprocess
import sys

import yaml

from tests.conftest import CIFAR10, REPO

MIB = 2**20


def peak_rss(args: list[str]) -> int:
    """Peak resident bytes of one `dcq` process (ru_maxrss is in KiB on Linux)."""
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read().decode()[-2000:]
    return usage.ru_maxrss * 1024


def test_prepare_peak_memory_does_not_grow_with_n(tmp_path, cifar10):
    """128 px (real CIFAR-10 upsampled): 2,000 train images are 98 MB of pixels, 4,000 are 197 MB. Prepare decodes
    and writes one 16 MiB shard at a time, so its peak must not rise by anything like the 98 MB a whole-set copy
    would add (measured here: 789, 780 MiB; run to run the peak moves by up to ~25 MiB)."""
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
