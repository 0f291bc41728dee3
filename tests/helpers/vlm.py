"""A micro encoder's settings and a VLM assembled from test-sized parts (random projector)."""
import torch

from larsight.encoder import load_model
from larsight.qformer.lm import load_lm
from larsight.qformer.projector import EventProjector, EventProjectorConfig
from larsight.qformer.vlm import VLM

MICRO = dict(enc_depths=(1, 1, 1), enc_channels=(16, 24, 32), enc_num_heads=(2, 2, 4),
             enc_patch_size=(32, 32, 32), strides=(2, 2), dec_depths=(1, 1),
             dec_channels=(16, 24), dec_num_heads=(2, 2), dec_patch_size=(32, 32),
             n_event_tokens=8, drop_path=0.0)


def make_vlm(lm_dir, encoder_ckpt, quantization="none", lora=False, lm_dim=64):
    enc = load_model(encoder_ckpt, device="cpu")
    lm, tok = load_lm(str(lm_dir), quantization=quantization, lora=lora, device="cpu")
    torch.manual_seed(1)
    proj = EventProjector(EventProjectorConfig(encoder_dim=enc.embedding_dim, lm_dim=lm_dim,
                                               n_queries=4, hidden_size=32, num_heads=4,
                                               intermediate_size=64, embed_dim=16))
    return VLM(enc, proj, lm, tok, manifest={"lm": str(lm_dir), "quantization": quantization,
                                             "encoder_checkpoint": str(encoder_ckpt)})
