import torch

from pipeline.train.engine import Normalization, augment, cosine_lr, to_input


def test_augment_crops_and_flips_batched_and_seeded():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    a = augment(x, 2, True, torch.Generator().manual_seed(0))
    b = augment(x, 2, True, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    same = augment(x, 0, False, torch.Generator().manual_seed(0))
    assert torch.equal(same, x)


def test_every_crop_is_a_window_of_the_padded_image():
    x = torch.rand(16, 3, 8, 8)
    out = augment(x, 4, False, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(16):
        windows = padded[i].unfold(1, 8, 1).unfold(2, 8, 1)  # (3, 9, 9, 8, 8)
        assert any(torch.equal(windows[:, r, c], out[i]) for r in range(9) for c in range(9))


def test_normalization_and_cosine():
    imgs = torch.randint(0, 256, (10, 4, 4, 3), dtype=torch.uint8)
    norm = Normalization.from_images(imgs.numpy())
    x = to_input(imgs, norm)
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert cosine_lr(0, 100, 0.1, 0.0) == 0.1 and abs(cosine_lr(100, 100, 0.1, 1e-4) - 1e-4) < 1e-12
