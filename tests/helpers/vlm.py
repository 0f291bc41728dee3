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


def save_tiny_lm(out, smollm2_dir):
    """A 2-layer random Llama with the bundled SmolLM2 tokenizer (its real chat template and class
    texts), saved as a transformers folder at ``out``; returns ``out``."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, tie_word_embeddings=True,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def save_micro_encoder(path):
    """A randomly initialised micro encoder checkpoint at ``path``; returns ``path``."""
    from larsight.encoder.backbone import PointEncoder
    from larsight.encoder.checkpoint import save_weights
    from larsight.encoder.config import EncoderConfig

    save_weights(path, PointEncoder(EncoderConfig.preset("tiny", **MICRO)), manifest={"kind": "test"})
    return path
