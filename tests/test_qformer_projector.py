"""The Q-Former projector: shapes, masks, permutation of padded tokens, save/load."""
import pytest
import torch

from larsight.qformer.projector import EventProjector, EventProjectorConfig


@pytest.fixture(scope="module")
def projector():
    torch.manual_seed(0)
    cfg = EventProjectorConfig(encoder_dim=32, lm_dim=48, n_queries=4, hidden_size=32,
                               num_layers=2, num_heads=4, intermediate_size=64, embed_dim=16)
    return EventProjector(cfg).eval()


def _batch(b=3, t=7, d=32):
    g = torch.Generator().manual_seed(1)
    tokens = torch.randn(b, t, d, generator=g)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[1, 3:] = False
    coords = torch.randn(b, t, 3, generator=g) * 40
    return tokens, mask, coords


def test_shapes_and_unit_embeddings(projector):
    tokens, mask, coords = _batch()
    out = projector(tokens, mask, coords)
    assert out.lm_embeds.shape == (3, 4, 48)
    assert out.query_states.shape == (3, 4, 32)
    assert out.event_embed.shape == (3, 16)
    assert torch.allclose(out.event_embed.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_padding_is_ignored(projector):
    tokens, mask, coords = _batch()
    ref = projector(tokens, mask, coords).lm_embeds[1]
    tokens2, coords2 = tokens.clone(), coords.clone()
    tokens2[1, 3:] = 1e3
    coords2[1, 3:] = -1e4
    assert torch.allclose(projector(tokens2, mask, coords2).lm_embeds[1], ref, atol=1e-5)
    # the same event alone, without padding, gives the same queries
    alone = projector(tokens[1:2, :3], mask[1:2, :3], coords[1:2, :3]).lm_embeds[0]
    assert torch.allclose(alone, ref, atol=1e-5)


def test_token_order_does_not_matter(projector):
    tokens, mask, coords = _batch()
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(3))
    a = projector(tokens[:1], mask[:1], coords[:1]).lm_embeds
    b = projector(tokens[:1, perm], mask[:1, perm], coords[:1, perm]).lm_embeds
    assert torch.allclose(a, b, atol=1e-5)


def test_event_without_tokens_is_finite(projector):
    tokens, mask, coords = _batch()
    mask[2] = False
    out = projector(tokens, mask, coords)
    assert torch.isfinite(out.lm_embeds).all() and torch.isfinite(out.event_embed).all()


def test_bad_shapes_name_the_problem(projector):
    tokens, mask, coords = _batch()
    with pytest.raises(ValueError, match="tokens must be"):
        projector(tokens[..., :5], mask, coords)
    with pytest.raises(ValueError, match="token_mask"):
        projector(tokens, mask[:, :4], coords)
    with pytest.raises(ValueError, match="num_heads"):
        EventProjectorConfig(hidden_size=30, num_heads=4)


def test_save_load_round_trip(projector, tmp_path):
    tokens, mask, coords = _batch()
    projector.save_pretrained(tmp_path / "p")
    again = EventProjector.from_pretrained(tmp_path / "p").eval()
    assert again.config.n_queries == 4
    assert torch.equal(again(tokens, mask, coords).lm_embeds, projector(tokens, mask, coords).lm_embeds)


def test_text_embedding_uses_only_real_tokens(projector):
    hidden = torch.randn(2, 5, 48)
    m = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    a = projector.embed_text(hidden, m)
    hidden2 = hidden.clone()
    hidden2[0, 3:] = 99.0
    assert torch.allclose(projector.embed_text(hidden2, m)[0], a[0], atol=1e-6)
    assert a.shape == (2, 16)
