import numpy as np
import pytest

from pipeline.errors import ParamsError
from pipeline.io.bitpack import pack, packed_bytes, unpack


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("pixels", [1, 7, 1024, 3 * 1024 + 5])
def test_round_trip_exact(bits, pixels):
    rng = np.random.default_rng(bits * 1000 + pixels)
    idx = rng.integers(0, 2**bits, size=(5, pixels), dtype=np.uint8)
    packed = pack(idx, bits)
    assert packed.shape == (5, packed_bytes(pixels, bits))
    np.testing.assert_array_equal(unpack(packed, bits, pixels), idx)


@pytest.mark.parametrize("bits", range(1, 9))
def test_extremes_round_trip(bits):
    idx = np.array([[0, 2**bits - 1] * 9], dtype=np.uint8)
    np.testing.assert_array_equal(unpack(pack(idx, bits), bits, idx.shape[1]), idx)


def test_pack_is_msb_first():
    assert pack(np.array([[1, 0, 1, 1, 0, 0, 0, 1]], np.uint8), 1).tolist() == [[0b10110001]]
    assert pack(np.array([[3, 0, 2, 1]], np.uint8), 2).tolist() == [[0b11001001]]


@pytest.mark.parametrize("bits", [0, 9, -1, 2.5])
def test_bad_bits(bits):
    with pytest.raises(ParamsError, match="outside 1..8"):
        pack(np.zeros((1, 4), np.uint8), bits)


def test_index_too_large_for_bits():
    with pytest.raises(ValueError, match="does not fit in 2 bits"):
        pack(np.array([[4]], np.uint8), 2)
