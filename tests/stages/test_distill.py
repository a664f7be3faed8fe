"""distill stage on real images: every method writes a synthetic set within its storage budget."""

import numpy as np
import pytest
import torch

from pipeline.distill import methods
from pipeline.distill.dm import DMParams
from pipeline.distill.mtt import MTTParams
from pipeline.errors import ParamsError, StoreError
from pipeline.io.synthetic_store import SyntheticStore
from pipeline.stages import distill
from tests.conftest import BASE, seal_attrs

TINY = distill.DistillParams(
    mtt=MTTParams(iterations=2, syn_steps=2, expert_epochs=1, max_start_epoch=2, lr_img=10.0),
    dm=DMParams(iterations=2, batch_real=16),
    autopalette=distill.AutoPaletteParams(colours=4, hidden=16, candidates_per_class=6, alignment_pixels=64),
    lss=distill.LSSParams(rank=4),
)


@pytest.mark.parametrize("method", distill.METHODS)
def test_every_method_fits_its_budget(method, small_run, expert_store, tmp_path):
    experts = expert_store
    out = tmp_path / f"{method}.zarr"
    result = distill.run(TINY, BASE, method, 1, small_run.prepared, experts, out)
    store = SyntheticStore(out)
    assert store.method == method and store.attrs["ipc"] == 1
    assert store.stored_bytes <= store.budget == 10 * (32 * 32 * 3 + 1)
    labels = store.labels()
    if method in ("random", "mtt", "dm"):
        assert store.images_u8().shape == (10, 32, 32, 3)
        assert sorted(labels.tolist()) == list(range(10))
    if method == "autopalette":
        images = store.images_u8()
        per_class = methods.palette_images_per_class(1, 4, (32, 32))
        assert per_class == 3073 // (3 * 256 + 12 + 1) and images.shape[0] == 10 * per_class
        for im in images:
            for c in range(3):
                assert len(torch.unique(im[..., c])) <= 4
        assert 1 <= store.attrs["levels_untrained"] <= 4 and 1 <= store.attrs["levels_after_warmup"] <= 4
    if method == "mtt_lss":
        assert store.low_rank_images().shape[0] == labels.shape[0] > 10  # more samples than IPC in the budget
        np.testing.assert_allclose(labels.sum(1).numpy(), 1.0, atol=1e-2)
        assert 0.0 <= store.attrs["labels_on_class"] <= 1.0
    assert result["images"] == store.attrs["num_images"] == labels.shape[0]


def test_low_rank_labels_learn_at_their_own_lr(small_run, expert_store, tmp_path):
    """lss.lr_labels reaches the soft labels: at 0 they stay at their class initialisation while the
    basis moves at lr_img (they used to share lr_img)."""
    from dataclasses import replace

    frozen = replace(TINY, lss=replace(TINY.lss, lr_labels=0.0))
    distill.run(frozen, BASE, "mtt_lss", 1, small_run.prepared, expert_store, tmp_path / "lss.zarr")
    store = SyntheticStore(tmp_path / "lss.zarr")
    labels = store.labels().numpy()
    top = np.exp(3.0) / (np.exp(3.0) + 9)  # softmax of a one-hot logit of 3 over 10 classes
    np.testing.assert_allclose(labels.max(1), top, atol=1e-3)
    assert store.attrs["labels_on_class"] == 1.0


def test_errors_name_the_culprit(small_run, tmp_path, expert_store):
    experts = expert_store
    with pytest.raises(ParamsError, match="'gm' is not one of"):
        distill.run(TINY, BASE, "gm", 1, small_run.prepared, experts, tmp_path / "x.zarr")
    with pytest.raises(ParamsError, match="fewer than the 20 asked for"):
        distill.run(TINY, BASE, "random", 20, small_run.prepared, experts, tmp_path / "x.zarr")
    bad = distill.DistillParams(arch="convnetd4")
    with pytest.raises(StoreError, match="different network"):
        distill.run(bad, BASE, "random", 1, small_run.prepared, experts, tmp_path / "x.zarr")
    assert not (tmp_path / "x.zarr").exists()


# --- evaluate_synthetic ----------------------------------------------------------------------------------------

def _eval_params():
    from pipeline.distill.evaluate import EvalRecipe
    from pipeline.stages import evaluate_synthetic

    return evaluate_synthetic.EvaluateSyntheticParams(recipe=EvalRecipe(epochs=3, batch_size=32))


@pytest.mark.parametrize("method", ["random", "mtt_lss"])
def test_evaluate_synthetic_writes_a_record_with_the_run_schema(method, small_run, expert_store, tmp_path):
    """Hard labels (random real images) and soft labels + float16 low-rank images (MTT-LSS) both train, and
    the record has the train stage's keys plus ipc and the store's own bytes."""
    import json

    from pipeline.report.records import validate
    from pipeline.stages import evaluate_synthetic

    synthetic = tmp_path / f"{method}.zarr"
    distill.run(TINY, BASE, method, 1, small_run.prepared, expert_store, synthetic)
    rec = evaluate_synthetic.run(_eval_params(), BASE, 0, synthetic, expert_store, small_run.prepared,
                                 tmp_path / "r.json")
    validate(rec, "record")
    assert json.loads((tmp_path / "r.json").read_text()) == {**rec, "written_by": "dcq"}
    store = SyntheticStore(synthetic)
    assert rec["ipc"] == 1 and rec["method"] == method and rec["bits"] is None
    assert rec["train_bytes"] == store.stored_bytes <= rec["budget_bytes"] == store.budget
    assert rec["compression_ratio"] == round(store.stored_bytes / (160 * 32 * 32 * 3), 6)
    assert rec["test_images"] == 80 and 0 <= rec["test_accuracy"] <= 100
    again = evaluate_synthetic.run(_eval_params(), BASE, 0, synthetic, expert_store, small_run.prepared,
                                   tmp_path / "r2.json")
    other = evaluate_synthetic.run(_eval_params(), BASE, 1, synthetic, expert_store, small_run.prepared,
                                   tmp_path / "r3.json")
    assert again["test_accuracy"] == rec["test_accuracy"] and again["params_hash"] == rec["params_hash"]
    assert other["params_hash"] != rec["params_hash"]


def test_evaluate_synthetic_refuses_other_experts(small_run, expert_store, tmp_path):

    from pipeline.stages import evaluate_synthetic

    synthetic = tmp_path / "random.zarr"
    distill.run(TINY, BASE, "random", 1, small_run.prepared, expert_store, synthetic)
    seal_attrs(synthetic, normalization={"mean": [0, 0, 0], "std": [1, 1, 1]})
    with pytest.raises(StoreError, match="other experts"):
        evaluate_synthetic.run(_eval_params(), BASE, 0, synthetic, expert_store, small_run.prepared,
                               tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


def test_palette_losses_train_the_network_not_the_pixels(small_run, expert_store):
    """AutoPalette eqs. 13-14: with no student steps the matching loss is a constant 1, so only the palette
    losses act: the network learns, the base pixels stay where they started."""
    from pipeline.distill import autopalette as ap
    from pipeline.distill import mtt
    from pipeline.distill.dsa import DSAParams
    from pipeline.distill.experts import ExpertStore
    from pipeline.io.train_sets import load_split
    from pipeline.models.registry import create_model

    store = ExpertStore(expert_store)
    images, labels, _ = load_split(small_run.prepared, "train")
    torch.manual_seed(0)
    net = ap.PaletteNet(3, 4, hidden=8)
    synthetic = methods.PaletteSynthetic(store.preprocess(images[:10]), labels[:10], net)
    before_pixels = synthetic.base.detach().clone()
    before_net = [p.detach().clone() for p in net.parameters()]
    optimizers = [torch.optim.SGD([synthetic.base], lr=1000.0), torch.optim.Adam(net.parameters(), lr=0.01)]
    lr, losses = mtt.distill(store, create_model("convnetd3", 10, 32), synthetic,
                             MTTParams(iterations=3, syn_steps=0, expert_epochs=1, max_start_epoch=1), DSAParams(), 0,
                             extra_loss=lambda: synthetic.palette_loss(ap.max_colour_loss), optimizers=optimizers)
    assert losses == pytest.approx([1.0] * 3)
    assert torch.equal(synthetic.base.detach(), before_pixels)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before_net, net.parameters()))


def test_the_distiller_registry_is_what_the_stage_and_params_accept():
    """Every registered distiller is a method the params accept; a name twice or an unknown name is an error."""
    assert list(distill.METHODS) == methods.distiller_names() == ["random", "mtt", "dm", "autopalette", "mtt_lss"]
    with pytest.raises(ValueError, match="registered twice"):
        methods.register_distiller("mtt")(lambda ctx: None)
    with pytest.raises(ParamsError, match="'gm' is not one of"):
        methods.get_distiller("gm")
    with pytest.raises(ParamsError, match=r"methods=\['gm'\] are not distillers"):
        distill.DistillParams(methods=["gm"])


def test_distilling_from_a_dcq_store_is_recorded_as_its_source(small_run, tmp_path):
    """Issue 15: experts and MTT read a DCQ store in place of full colour. The synthetic store and the evaluation
    record carry `source_bits`; a set distilled from full colour carries neither (its bytes stay what they were),
    and a forged source_bits is refused on open."""
    import json

    import zarr

    from pipeline.distill.experts import ExpertRecipe, ExpertStore
    from pipeline.io.dcq_store import DCQStore
    from pipeline.stages import evaluate_synthetic, experts

    experts_q2 = tmp_path / "experts-q2.zarr"
    experts.run(experts.ExpertsParams(num_experts=1, recipe=ExpertRecipe(epochs=3, batch_size=32, lr=0.01)), BASE,
                small_run.dcq(2), small_run.prepared, experts_q2)
    decoded = DCQStore(small_run.dcq(2)).decode()
    norm = ExpertStore(experts_q2).attrs["normalization"]  # the experts saw the reconstruction, not the originals
    assert norm["mean"] == pytest.approx((decoded.reshape(-1, 3) / 255.0).mean(0).tolist(), abs=1e-5)
    synthetic = tmp_path / "mtt-from-q2.zarr"
    distill.run(TINY, BASE, "mtt", 1, small_run.dcq(2), experts_q2, synthetic)
    assert zarr.open_group(str(synthetic), mode="r").attrs["source_bits"] == 2
    rec = evaluate_synthetic.run(_eval_params(), BASE, 0, synthetic, experts_q2, small_run.prepared,
                                 tmp_path / "r.json")
    assert rec["source_bits"] == 2 and json.loads((tmp_path / "r.json").read_text())["source_bits"] == 2
    assert rec["test_images"] == 80  # the original test set, as for every other IPC row

    from_full = tmp_path / "random-full.zarr"
    distill.run(TINY, BASE, "random", 1, small_run.prepared, experts_q2, from_full)
    assert "source_bits" not in zarr.open_group(str(from_full), mode="r").attrs
    full_rec = evaluate_synthetic.run(_eval_params(), BASE, 0, from_full, experts_q2, small_run.prepared,
                                      tmp_path / "r2.json")
    assert "source_bits" not in full_rec

    seal_attrs(synthetic, source_bits="../q9")  # a crafted store whose manifest vouches for the attr
    with pytest.raises(StoreError, match=r"source_bits='../q9' is not a bit depth in 1..8"):
        evaluate_synthetic.run(_eval_params(), BASE, 0, synthetic, experts_q2, small_run.prepared,
                               tmp_path / "r3.json")
