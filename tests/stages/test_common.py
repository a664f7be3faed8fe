"""The one-line stage summary: counts, seconds and a readable rate."""

from pipeline.stages.common import summary


def test_summary_rate_is_readable_for_slow_and_fast_stages(capsys):
    assert summary("evaluate", 10, "images", 106.2, seed=0) == "[evaluate] 10 images in 106.2 s, 0.094 images/s, seed=0"
    assert summary("prepare", 50_000, "images", 100.0) == "[prepare] 50,000 images in 100.0 s, 500 images/s"
    assert summary("report", 0, "runs", 3.0) == "[report] 0 runs in 3.0 s"
    assert "[prepare] 50,000 images" in capsys.readouterr().err
