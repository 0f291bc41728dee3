"""evals.baselines: two-view CNN / ViT image baselines (micro sizes, 64 px, six simulated events)."""
import csv
import json

import numpy as np
import pytest
import torch

from larsight.encoder.data import DataSpec, take
from larsight.events.model import EVENT_CLASSES
from larsight.events.projections import pixel_maps
from larsight.evals.baselines import (BaselineCheckpointError, TwoViewCNN, TwoViewViT, count_parameters,
                             load_baseline, predict_proba, save_baseline, train_baseline,
                             view_images)

SIZE = 64
VOXEL_CM = 1.2
MICRO_CNN = dict(width_mult=0.25, hidden=32)
MICRO_VIT = dict(patch_size=16, width=32, layers=1, heads=2, embed_dim=32, hidden=32)


@pytest.fixture(scope="module")
def evs():
    return take(DataSpec(seed=0, voxel_size_cm=VOXEL_CM), "finetune", 6)


def micro(kind):
    torch.manual_seed(0)
    if kind == "cnn":
        return TwoViewCNN(image_size=SIZE, **MICRO_CNN).eval()
    return TwoViewViT(image_size=SIZE, **MICRO_VIT).eval()


def test_view_images_are_log_energy_maps_and_coarse_voxels_keep_the_shape(evs):
    x = view_images(evs, SIZE)
    assert x.shape == (len(evs), 2, SIZE, SIZE) and x.dtype == torch.float32
    assert torch.equal(x[0], torch.from_numpy(np.log1p(pixel_maps(evs[0], SIZE))))
    x2 = view_images(evs, SIZE, voxel_scale=2)
    assert x2.shape == x.shape
    # coarser voxels move deposits but conserve energy in each view
    for k, ev in enumerate(evs):
        for img in (x[k], x2[k]):
            assert torch.expm1(img.double()).sum(dim=(1, 2)).numpy() == pytest.approx(
                [ev.total_energy_mev] * 2, rel=1e-4)
    assert not torch.equal(x, x2)


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_models_give_three_logits(kind, evs):
    model = micro(kind)
    logits = model(view_images(evs[:3], SIZE))
    assert logits.shape == (3, len(EVENT_CLASSES))
    with pytest.raises(ValueError, match="B, 2, H, W"):
        model(torch.zeros(2, 1, SIZE, SIZE))


def test_default_sizes_are_near_the_paper():
    assert 2.5e6 <= count_parameters(TwoViewCNN()) <= 4.5e6
    assert 2e6 <= count_parameters(TwoViewViT()) <= 5e6


def test_vit_rejects_other_image_sizes():
    with pytest.raises(ValueError, match="built for 64x64"):
        micro("vit")(torch.zeros(1, 2, 32, 32))


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_predict_proba_rows_are_probabilities(kind, evs):
    model = micro(kind)
    for scale in (1, 2):
        p = predict_proba(model, evs, voxel_scale=scale, batch_size=4)
        assert p.shape == (len(evs), 3)
        assert (p >= 0).all() and np.allclose(p.sum(1), 1.0, atol=1e-9)


def test_training_lowers_the_loss_and_the_run_loads_back(evs, tmp_path):
    run = tmp_path / "cnn"
    man = train_baseline("cnn", steps=30, batch_size=len(evs), lr=3e-3, seed=0, image_size=SIZE,
                         run_dir=run, n_events=len(evs), progress=False, model=MICRO_CNN,
                         voxel_size_cm=VOXEL_CM, augment=False, workers=1)
    with open(run / "loss.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.6 * losses[0], losses
    assert sorted(p.name for p in run.iterdir() if p.suffix in (".json", ".safetensors", ".tmp")) == \
        ["model.json", "model.safetensors"]
    saved = json.loads((run / "model.json").read_text())
    assert saved["final_loss"] == pytest.approx(losses[-1], rel=1e-4)
    assert saved["data"]["split"] == "finetune" and saved["data"]["data_seed"] == 1
    assert saved["data"]["class_counts"] == {
        c: sum(ev.event_class == c for ev in evs) for c in EVENT_CLASSES}
    assert "train_baseline(" in saved["command"] and man["model"]["kind"] == "cnn"
    model = load_baseline(run)
    assert not model.training and model.image_size == SIZE
    assert predict_proba(model, evs).shape == (len(evs), 3)


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_save_load_round_trip_is_exact(kind, evs, tmp_path):
    model = micro(kind)
    with torch.no_grad():  # non-default batch-norm statistics must survive too
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_()
    save_baseline(tmp_path, model, {"note": "test"})
    loaded = load_baseline(tmp_path)
    assert type(loaded) is type(model) and loaded.manifest["note"] == "test"
    x = view_images(evs, SIZE)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert np.array_equal(predict_proba(model, evs), predict_proba(loaded, evs))


def test_bad_input_gives_clear_errors(evs, tmp_path):
    model = micro("cnn")
    with pytest.raises(ValueError, match="empty"):
        view_images([], SIZE)
    with pytest.raises(ValueError, match="empty"):
        predict_proba(model, [])
    with pytest.raises(TypeError, match="not an events.Event"):
        view_images([evs[0], "event"], SIZE)
    with pytest.raises(ValueError, match="kind must be one of"):
        train_baseline("resnet", steps=1, run_dir=tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="width_mult applies to kind='cnn'"):
        train_baseline("vit", steps=1, run_dir=tmp_path / "x", width_mult=0.5, progress=False)
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_baseline(tmp_path)
    # a manifest that no longer matches the weights names the offending tensor and shapes
    save_baseline(tmp_path / "run", model)
    man = json.loads((tmp_path / "run" / "model.json").read_text())
    man["model"]["config"]["hidden"] = 64
    (tmp_path / "run" / "model.json").write_text(json.dumps(man))
    with pytest.raises(BaselineCheckpointError, match=r"head\.0\.weight.*shape"):
        load_baseline(tmp_path / "run")
    man["format"] = "larsight-encoder"
    (tmp_path / "run" / "model.json").write_text(json.dumps(man))
    with pytest.raises(BaselineCheckpointError, match="format"):
        load_baseline(tmp_path / "run")
