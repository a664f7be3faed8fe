"""How close a quantized train set is to the images it was made from: PSNR, SSIM and mean CIEDE2000 ΔE.

One streaming pass over the store and the prepared full-colour train split, block by block, so memory is set by the
block size, not by N. PSNR and SSIM come from `skimage.metrics`, the colour difference from `skimage.color`
(sRGB -> CIE LAB -> CIEDE2000), all on uint8 images in [0, 255].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from tqdm import tqdm


@dataclass(frozen=True)
class Fidelity:
    images: int
    psnr_db: float       # mean over images of the per-image PSNR (inf-free: identical images count as 100 dB)
    ssim: float          # mean per-image SSIM (colour: mean over channels)
    delta_e: float       # mean CIEDE2000 colour difference over every pixel

    def to_dict(self) -> dict:
        return {"images": self.images, "psnr_db": round(self.psnr_db, 4), "ssim": round(self.ssim, 6),
                "delta_e2000": round(self.delta_e, 4)}


IDENTICAL_PSNR_DB = 100.0


def block_fidelity(original: np.ndarray, quantized: np.ndarray) -> tuple[float, float, float]:
    """Sums over the block's images of PSNR and SSIM, and the sum of ΔE over its pixels."""
    if original.shape != quantized.shape or original.dtype != np.uint8 or quantized.dtype != np.uint8:
        raise ValueError(f"fidelity needs two uint8 arrays of one shape, got {original.shape} {original.dtype} and "
                         f"{quantized.shape} {quantized.dtype}")
    psnr = ssim = 0.0
    for a, b in zip(original, quantized):
        psnr += (IDENTICAL_PSNR_DB if np.array_equal(a, b)
                 else min(IDENTICAL_PSNR_DB, peak_signal_noise_ratio(a, b, data_range=255)))
        ssim += structural_similarity(a, b, channel_axis=2, data_range=255)
    delta = deltaE_ciede2000(rgb2lab(original), rgb2lab(quantized))
    return psnr, ssim, float(delta.sum(dtype=np.float64))


def store_fidelity(originals, decode, count: int, block: int = 1000, desc: str = "fidelity") -> Fidelity:
    """`originals(start, stop)` and `decode(start, stop)` give uint8 (n,H,W,3) rows of the same images."""
    if count < 1:
        raise ValueError("fidelity of an empty store")
    psnr = ssim = delta = 0.0
    pixels = 0
    with tqdm(total=count, desc=desc, unit="img", leave=False) as bar:
        for start in range(0, count, block):
            stop = min(count, start + block)
            a, b = originals(start, stop), decode(start, stop)
            p, s, d = block_fidelity(a, b)
            psnr, ssim, delta = psnr + p, ssim + s, delta + d
            pixels += a.shape[0] * a.shape[1] * a.shape[2]
            bar.update(stop - start)
    return Fidelity(count, psnr / count, ssim / count, delta / pixels)
