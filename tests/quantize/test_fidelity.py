"""PSNR, SSIM and CIEDE2000 of a quantized train set against its originals, on real CIFAR-10 images."""

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pipeline.io.arrays import open_group
from pipeline.io.dcq_store import DCQStore
from pipeline.quantize.fidelity import IDENTICAL_PSNR_DB, block_fidelity, store_fidelity


@pytest.fixture(scope="module")
def originals(small_run):
    return open_group(small_run.prepared, "prepared")["train/images"][:]


def test_identical_images_are_perfect(originals):
    result = store_fidelity(lambda a, b: originals[a:b], lambda a, b: originals[a:b].copy(), len(originals))
    assert result.psnr_db == IDENTICAL_PSNR_DB and result.ssim == pytest.approx(1.0) and result.delta_e == 0.0


def test_more_bits_are_closer_to_the_originals(small_run, originals):
    one, two = (store_fidelity(lambda a, b: originals[a:b], DCQStore(small_run.dcq(q)).decode, len(originals))
                for q in (1, 2))
    assert 0 < one.psnr_db < two.psnr_db < IDENTICAL_PSNR_DB
    assert 0 < one.ssim < two.ssim < 1
    assert one.delta_e > two.delta_e > 0


def test_streaming_equals_one_pass_and_skimage_per_image(small_run, originals):
    """The block size changes nothing but memory; the numbers are scikit-image's own, averaged."""
    decode = DCQStore(small_run.dcq(2)).decode
    small = store_fidelity(lambda a, b: originals[a:b], decode, len(originals), block=7)
    whole = store_fidelity(lambda a, b: originals[a:b], decode, len(originals), block=10_000)
    assert small.psnr_db == pytest.approx(whole.psnr_db, rel=1e-12)
    assert small.delta_e == pytest.approx(whole.delta_e, rel=1e-9)
    quantized = decode(0, len(originals))
    assert whole.psnr_db == pytest.approx(np.mean([peak_signal_noise_ratio(a, b, data_range=255)
                                                   for a, b in zip(originals, quantized)]))
    assert whole.ssim == pytest.approx(np.mean([structural_similarity(a, b, channel_axis=2, data_range=255)
                                                for a, b in zip(originals, quantized)]))
    assert whole.delta_e == pytest.approx(deltaE_ciede2000(rgb2lab(originals), rgb2lab(quantized)).mean())


def test_mismatched_blocks_are_an_error(originals):
    with pytest.raises(ValueError, match="one shape"):
        block_fidelity(originals[:4], originals[:3])
    with pytest.raises(ValueError, match="uint8"):
        block_fidelity(originals[:4], originals[:4].astype(np.float32))
    with pytest.raises(ValueError, match="empty"):
        store_fidelity(lambda a, b: originals[a:b], lambda a, b: originals[a:b], 0)
