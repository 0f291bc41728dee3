"""Backbone of the point encoder: serialization codes, ragged batches, invariances, presets."""
from __future__ import annotations

import itertools
import time
from types import SimpleNamespace

import pytest
import torch

from larsight.encoder.backbone import PointEncoder, collate_events
from larsight.encoder.config import PRESETS, EncoderConfig
from larsight.encoder.serialization import ORDERS, decode, encode, hilbert_encode, serialize

torch.set_num_threads(1)

# A small config that still exercises everything: several patches per event at the finest
# stage, events smaller than a patch, three pooling steps, a token cap that needs extra pooling.
TEST_CONFIG = dict(
    enc_depths=(1, 1, 1, 1), enc_channels=(16, 24, 32, 32), enc_num_heads=(2, 2, 4, 4),
    enc_patch_size=(16, 16, 16, 16), strides=(2, 2, 2), dec_depths=(1, 1, 1),
    dec_channels=(16, 24, 32), dec_num_heads=(2, 2, 4), dec_patch_size=(16, 16, 16),
    n_event_tokens=6, drop_path=0.0,
)


def make_model(**overrides) -> PointEncoder:
    torch.manual_seed(0)
    return PointEncoder(EncoderConfig(**{**TEST_CONFIG, **overrides})).eval()


def track_event(n: int, seed: int, origin=(300, 200, 100)) -> torch.Tensor:
    """n distinct voxels of a few wiggly tracks, like a small LArTPC event."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.zeros(0, 3, dtype=torch.long)
    while len(grid) < n:
        direction = torch.nn.functional.normalize(torch.randn(3, generator=g), dim=0)
        steps = direction + 0.3 * torch.randn(n, 3, generator=g)
        track = torch.round(torch.cumsum(steps, 0)).long() + torch.randint(-20, 20, (3,), generator=g)
        grid = torch.unique(torch.cat([grid, track]), dim=0)
    grid = grid[:n]  # drop the voxels at largest x: tracks stay continuous
    return grid - grid.min(0).values + torch.tensor(origin)


def make_batch(grids: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    grid = torch.cat(grids)
    energy = ((grid * torch.tensor([7, 13, 31])).sum(1) % 17).float() / 5  # a function of the voxel
    coords = grid.float() * 0.6 + 0.3
    feat = torch.cat([coords / 100, torch.log1p(energy / 0.1)[:, None]], dim=1)
    offset = torch.cumsum(torch.tensor([len(x) for x in grids]), 0)
    return {"coords": coords, "grid": grid, "feat": feat, "offset": offset}


def split(t: torch.Tensor, offset: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.tensor_split(t, offset[:-1].tolist()))


@pytest.fixture(scope="module")
def ragged():
    # 150 points (several patches of 16 at the finest stage), 9 (< one patch), 1 (single point)
    return make_batch([track_event(150, 1), track_event(9, 2), track_event(1, 3)])


# ============================================================================ serialization
@pytest.mark.parametrize("order", ORDERS)
def test_codes_are_a_bijection_on_a_small_grid(order):
    depth = 3
    grid = torch.tensor(list(itertools.product(range(8), repeat=3)))
    codes = encode(grid, None, depth, order)
    assert sorted(codes.tolist()) == list(range(512))
    back, _ = decode(codes, depth, order)
    assert torch.equal(back, grid)
    # deeper codes of arbitrary voxels, with the event index on top, decode exactly
    g = torch.Generator().manual_seed(0)
    grid = torch.randint(0, 2 ** 16, (500, 3), generator=g)
    batch = torch.randint(0, 1000, (500,), generator=g)
    back, b = decode(encode(grid, batch, 16, order), 16, order)
    assert torch.equal(back, grid) and torch.equal(b, batch)


@pytest.mark.parametrize("depth", [3, 16])
def test_hilbert_neighbours_are_spatially_adjacent(depth):
    grid = torch.tensor(list(itertools.product(range(8), repeat=3)))
    walk = grid[torch.argsort(hilbert_encode(grid, depth))]
    steps = (walk[1:] - walk[:-1]).abs().sum(1)
    assert torch.all(steps == 1), "consecutive Hilbert codes must be face neighbours"
    zwalk = grid[torch.argsort(encode(grid, None, depth, "z"))]
    assert (zwalk[1:] - zwalk[:-1]).abs().sum(1).max() > 1  # z-order jumps (sanity of the test)


@pytest.mark.parametrize("order", ORDERS)
def test_codes_do_not_depend_on_the_other_points(order):
    # a point's code is a function of its voxel alone, whatever the extent of the batch
    grid = torch.randint(0, 40, (300, 3), generator=torch.Generator().manual_seed(1))
    far = torch.tensor([[2 ** 16 - 1, 5, 2 ** 12]])
    for depth in (6, 16):
        alone = encode(grid, None, depth, order)
        with_far = encode(torch.cat([grid, far % (2 ** depth)]), None, depth, order)[:-1]
        assert torch.equal(alone, with_far)


def test_batch_index_orders_events_first():
    grid = torch.tensor([[7, 7, 7], [0, 0, 0], [3, 1, 2], [0, 0, 1]])
    batch = torch.tensor([0, 1, 0, 1])
    _, perm, inverse = serialize(grid, batch, ORDERS, depth=4)
    for k in range(len(ORDERS)):
        assert batch[perm[k]].tolist() == [0, 0, 1, 1]
        assert torch.equal(perm[k][inverse[k]], torch.arange(4))
    with pytest.raises(ValueError, match="grid indices"):
        encode(torch.tensor([[16, 0, 0]]), None, depth=4)


# ============================================================================ encoder
def test_shapes_and_masks_of_a_ragged_batch(ragged):
    model = make_model()
    out = model(ragged)
    n, b = ragged["grid"].shape[0], 3
    cfg = model.config
    assert out.point_features.shape == (n, cfg.out_channels)
    t = out.event_tokens.shape[1]
    assert out.event_tokens.shape == (b, t, cfg.token_dim)
    assert out.event_token_mask.shape == (b, t) and out.event_token_mask.dtype == torch.bool
    assert out.event_token_coords.shape == (b, t, 3)
    assert out.pooled.shape == (b, cfg.token_dim)
    n_tok = out.event_token_mask.sum(1).tolist()
    assert max(n_tok) == t and 1 <= n_tok[0] <= cfg.n_event_tokens
    assert 1 <= n_tok[1] <= 9 and n_tok[2] == 1
    # without the cap the big event has more coarsest-stage voxels than the cap allows
    with torch.no_grad():
        uncapped = make_model(n_event_tokens=None)(ragged)
    assert uncapped.event_token_mask[0].sum() > cfg.n_event_tokens
    # masks are a prefix; padded tokens are zero; real tokens are normalised and finite
    assert torch.all(out.event_token_mask[:, :-1] >= out.event_token_mask[:, 1:])
    assert torch.all(out.event_tokens[~out.event_token_mask] == 0)
    assert torch.all(out.event_tokens[out.event_token_mask].std(-1) > 0.5)
    for t_ in vars(out).values():
        assert torch.isfinite(t_.float()).all()
    # token positions lie inside their event's bounding box
    for e, c in enumerate(split(ragged["coords"], ragged["offset"])):
        tc = out.event_token_coords[e][out.event_token_mask[e]]
        assert torch.all(tc >= c.min(0).values - 1e-4) and torch.all(tc <= c.max(0).values + 1e-4)
    # the single-point event's token sits on the point
    assert torch.allclose(out.event_token_coords[2, 0], ragged["coords"][-1])


def test_point_features_are_permutation_equivariant(ragged):
    model = make_model()
    with torch.no_grad():
        ref = model(ragged)
        g = torch.Generator().manual_seed(5)
        # shuffle the points within each event (events must stay contiguous)
        perm = torch.cat([torch.randperm(len(c), generator=g) + s for c, s in
                          zip(split(ragged["grid"], ragged["offset"]),
                              [0] + ragged["offset"][:-1].tolist())])
        shuffled = {k: (v[perm] if k != "offset" else v) for k, v in ragged.items()}
        out = model(shuffled)
    assert not torch.equal(perm, torch.arange(len(perm)))
    torch.testing.assert_close(out.point_features, ref.point_features[perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.event_tokens, ref.event_tokens, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.pooled, ref.pooled, atol=1e-5, rtol=1e-4)


def test_events_are_processed_independently(ragged):
    model = make_model()
    grids = split(ragged["grid"], ragged["offset"])
    extra = track_event(60, 7)
    with torch.no_grad():
        batched = model(make_batch([extra] + grids))  # shifted batch indices, a new neighbour
        alone = [model(make_batch([g])) for g in grids]
    sizes = [len(extra)] + [len(g) for g in grids]
    feats = split(batched.point_features, torch.cumsum(torch.tensor(sizes), 0))
    for e, single in enumerate(alone):
        torch.testing.assert_close(feats[e + 1], single.point_features, atol=1e-5, rtol=1e-4)
        t = single.event_tokens.shape[1]
        torch.testing.assert_close(batched.event_tokens[e + 1, :t], single.event_tokens[0],
                                   atol=1e-5, rtol=1e-4)
        assert batched.event_token_mask[e + 1].sum() == t
        torch.testing.assert_close(batched.pooled[e + 1], single.pooled[0], atol=1e-5, rtol=1e-4)


def test_points_sharing_a_voxel_are_merged():
    model = make_model()
    base = make_batch([track_event(40, 4)])
    dup = {k: torch.cat([v, v[:5]]) for k, v in base.items() if k != "offset"}
    dup["offset"] = torch.tensor([len(dup["grid"])])
    with torch.no_grad():
        out = model(dup)
    torch.testing.assert_close(out.point_features[-5:], out.point_features[:5])


def test_gradients_reach_every_parameter(ragged):
    model = make_model().train()  # drop_path 0, shuffled orders
    out = model(ragged)
    g = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=g)).sum()
               for t in (out.point_features, out.event_tokens, out.pooled))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient for {missing}"


def test_drop_path_and_checkpointed_cpe_train():
    model = make_model(drop_path=0.5, checkpoint_cpe=True).train()
    batch = make_batch([track_event(40, 4), track_event(20, 5)])
    torch.manual_seed(3)
    outs = [model(batch) for _ in range(4)]
    assert any(not torch.allclose(outs[0].point_features, o.point_features) for o in outs[1:])
    sum(o.pooled.sum() + o.event_tokens.sum() + o.point_features.square().mean()
        for o in outs).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(batch).point_features, model(batch).point_features)


def test_bad_inputs_name_the_problem(ragged):
    model = make_model()
    with pytest.raises(ValueError, match="offset"):
        model({**ragged, "offset": ragged["offset"] + 1})
    with pytest.raises(ValueError, match="no points"):
        n = len(ragged["grid"])
        model({**ragged, "offset": torch.tensor([n - 10, n - 10, n])})
    with pytest.raises(ValueError, match="feat"):
        model({**ragged, "feat": ragged["feat"][:, :3]})


# ============================================================================ config & presets
def test_config_round_trip_and_validation():
    for name in PRESETS:
        cfg = EncoderConfig.preset(name)
        assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
        assert cfg.n_stages == len(cfg.enc_channels)
    import json
    assert EncoderConfig.from_dict(json.loads(json.dumps(EncoderConfig.preset("base").to_dict()))) \
        == EncoderConfig.preset("base")
    with pytest.raises(ValueError, match="enc_channels"):
        EncoderConfig(**{**TEST_CONFIG, "enc_channels": (16, 32)})
    with pytest.raises(ValueError, match="heads"):
        EncoderConfig(**{**TEST_CONFIG, "enc_num_heads": (3, 2, 4, 4)})
    with pytest.raises(ValueError, match="unknown keys"):
        EncoderConfig.from_dict({"nope": 1})


def test_preset_sizes():
    counts = {}
    for name in ("tiny", "small", "base"):
        with torch.device("meta"):
            counts[name] = PointEncoder(EncoderConfig.preset(name)).num_parameters()
    print("parameters:", {k: f"{v / 1e6:.2f}M" for k, v in counts.items()})
    assert 0.3e6 <= counts["tiny"] <= 1.5e6
    assert counts["tiny"] < counts["small"] < counts["base"]
    assert 20e6 <= counts["base"] <= 150e6
    base = EncoderConfig.preset("base")
    assert base.enc_channels == (48, 96, 192, 384, 512) and set(base.enc_patch_size) == {256}


def test_tiny_forward_time_on_5000_points():
    cfg = EncoderConfig.preset("tiny")
    torch.manual_seed(0)
    model = PointEncoder(cfg).eval()
    grid = track_event(5000, 11)
    batch = collate_events([(grid.float() * cfg.voxel_size_cm, torch.rand(len(grid)))], cfg)
    with torch.no_grad():
        model(batch)  # warm-up
        start = time.perf_counter()
        out = model(batch)
        ms = (time.perf_counter() - start) * 1e3
    print(f"tiny ({model.num_parameters() / 1e6:.2f}M params): {len(grid)} points in {ms:.0f} ms "
          f"on {torch.get_num_threads()} thread(s); {int(out.event_token_mask.sum())} tokens")
    assert out.point_features.shape == (len(grid), cfg.out_channels)
    assert torch.isfinite(out.point_features).all()


def test_patches_never_mix_events_and_every_point_has_a_home():
    from larsight.encoder.backbone import _patch_plan

    counts = torch.tensor([37, 5, 1, 16, 17])
    batch = torch.repeat_interleave(torch.arange(5), counts)
    perm = torch.randperm(len(batch), generator=torch.Generator().manual_seed(0))
    # a sorted sequence visits events in order: build perm so that batch[perm] is sorted
    perm = perm[torch.argsort(batch[perm], stable=True)]
    plan = _patch_plan(perm, counts, patch_size=16)
    k = plan.index.shape[1]
    assert k == 16
    assert torch.all(batch[plan.index] == batch[plan.index[:, :1]]), "a patch mixes events"
    slot_point = plan.index.reshape(-1)[plan.home]
    assert torch.equal(slot_point, torch.arange(len(batch))), "a point reads another's output"
    if plan.mask is not None:
        assert plan.mask.reshape(-1)[plan.home].all(), "a point's own slot is masked"
        padded = (~plan.mask.reshape(-1, k)).sum(1)
        # only the events smaller than a patch (5 and 1 points) are padded
        assert sorted(padded[padded > 0].tolist()) == [11, 15]
    # patch counts per event: ceil(n / 16)
    assert plan.index.shape[0] == 3 + 1 + 1 + 1 + 2


def test_a_single_token_sits_at_the_centroid_of_its_points(ragged):
    with torch.no_grad():
        out = make_model(n_event_tokens=1)(ragged)
    assert out.event_tokens.shape[1] == 1 and out.event_token_mask.all()
    centroids = torch.stack([c.mean(0) for c in split(ragged["coords"], ragged["offset"])])
    torch.testing.assert_close(out.event_token_coords[:, 0], centroids)


def test_collate_events_on_a_coarser_grid():
    volume = SimpleNamespace(lower_cm=(0.0, 0.0, 0.0), size_cm=(230.4, 230.4, 230.4),
                             voxel_size_cm=0.3)
    idx = torch.tensor([[10, 20, 30], [11, 21, 31], [100, 0, 767]])
    ev = SimpleNamespace(points=(idx * 0.3).numpy(), energy=torch.tensor([1.0, 0.0, 5.0]).numpy(),
                         meta=SimpleNamespace(volume=volume))
    cfg = EncoderConfig(**{**TEST_CONFIG, "voxel_size_cm": 0.6})
    batch = collate_events([ev, ev], cfg)
    assert torch.equal(batch["grid"][:3], idx // 2)  # the first two points share a 0.6 cm voxel
    assert torch.equal(batch["offset"], torch.tensor([3, 6]))
    assert batch["feat"].shape == (6, 4) and batch["feat"][:, :3].abs().max() <= 1
    assert batch["feat"][1, 3] == 0 and batch["feat"][2, 3] > batch["feat"][0, 3] > 0
    with torch.no_grad():
        out = make_model(voxel_size_cm=0.6)(batch)
    torch.testing.assert_close(out.point_features[0], out.point_features[1])
    torch.testing.assert_close(out.point_features[:3], out.point_features[3:])
