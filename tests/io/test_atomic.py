import pytest

from pipeline.io.atomic import atomic_output


def test_success_replaces_and_failure_keeps_the_previous_output(tmp_path):
    out = tmp_path / "store"
    with atomic_output(out) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("first")
    assert (out / "a").read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_output(out) as tmp:
            tmp.mkdir()
            (tmp / "a").write_text("half")
            raise RuntimeError("interrupted")
    assert (out / "a").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no temporary left behind
    with atomic_output(out) as tmp:
        tmp.write_text("a file now")
    assert out.read_text() == "a file now"
