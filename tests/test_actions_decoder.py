"""qformer.action_decoder on a real (tiny, random) language model with SmolLM2's tokenizer:
whatever the weights, constrained decoding only ever writes valid actions; free decoding of
the same model does not."""
import pytest

from larsight.agent.actions import ActionError, action_json_schema, parse_action
from larsight.qformer.corpus.actions import action_examples


@pytest.mark.slow   # converts the bundled SmolLM2 GGUF for its tokenizer (minutes on a busy CPU)
def test_constrained_decoding_writes_only_valid_actions(smollm2_dir, tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("xgrammar")
    from larsight.encoder.backbone import PointEncoder
    from larsight.encoder.checkpoint import save_weights
    from larsight.encoder.config import EncoderConfig
    from larsight.encoder.data import DataSpec, event_stream
    from larsight.qformer.action_decoder import ActionDecoder
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from helpers.vlm import MICRO, make_vlm

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    lm_dir = tmp_path / "lm"
    LlamaForCausalLM(cfg).save_pretrained(lm_dir)
    tok.save_pretrained(lm_dir)
    enc_path = tmp_path / "enc.safetensors"
    save_weights(enc_path, PointEncoder(EncoderConfig.preset("tiny", **MICRO)), manifest={"kind": "test"})
    vlm = make_vlm(lm_dir, enc_path)
    ev = next(iter(event_stream(DataSpec(modes="nu", seed=5), "eval", start=0, stop=1, min_points=8)))
    prompts = [e["prompt"] for e in action_examples(6, seed=4, split="heldout")]
    constrained = ActionDecoder(vlm, action_json_schema(), max_new_tokens=160)
    for p in prompts:
        parse_action(constrained.generate(ev, p))          # raises if invalid
    free = ActionDecoder(vlm, None, max_new_tokens=40)
    bad = 0
    for p in prompts:
        try:
            parse_action(free.generate(ev, p))
        except ActionError:
            bad += 1
    assert bad == len(prompts)    # a random model writes no valid action unconstrained
