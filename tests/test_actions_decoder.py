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
    from larsight.encoder.data import DataSpec, event_stream
    from larsight.qformer.action_decoder import ActionDecoder

    from helpers.vlm import make_vlm, save_micro_encoder, save_tiny_lm

    vlm = make_vlm(save_tiny_lm(tmp_path / "lm", smollm2_dir), save_micro_encoder(tmp_path / "enc.safetensors"))
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
