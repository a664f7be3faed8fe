"""The summary line every long step ends with (counts, seconds, rate), and the timer that measures it."""

from __future__ import annotations

import sys
import time


def summary(stage: str, count: int, what: str, seconds: float, **extra) -> str:
    rate = ""
    if seconds > 0 and count:
        per_second = count / seconds
        rate = f", {per_second:,.0f} {what}/s" if per_second >= 10 else f", {per_second:.2g} {what}/s"
    tail = "".join(f", {k}={v}" for k, v in extra.items())
    line = f"[{stage}] {count:,} {what} in {seconds:.1f} s{rate}{tail}"
    print(line, file=sys.stderr, flush=True)
    return line


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
