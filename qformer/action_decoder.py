"""Constrained decoding of a JSON value under a JSON schema, for the VLM's action.

    from larsight.qformer.action_decoder import ActionDecoder
    dec = ActionDecoder(vlm, schema)                 # schema: agent.actions.action_json_schema()
    text = dec.generate(event, prompt)               # always parses and matches the schema

The grammar is compiled from the schema by xgrammar (its JSON-schema grammar, compact
separators, no free whitespace) against the language model's tokenizer, once per decoder; at
every step of greedy decoding xgrammar's logits processor masks the tokens that would leave
the grammar, so the text is always a valid action and decoding stops where the JSON ends.
``schema=None`` decodes freely (the unconstrained baseline: the caller parses and can reject).
The schema is passed in because it belongs to the agent's tools (a higher layer).
"""
from __future__ import annotations

import json
from typing import Any, Optional, Sequence

import torch

__all__ = ["ActionDecoder", "SEPARATORS"]

SEPARATORS = (",", ":")


class ActionDecoder:
    """Greedy, schema-constrained decoding with a ``qformer.VLM`` (see the module docstring)."""

    def __init__(self, vlm: Any, schema: Optional[dict], max_new_tokens: int = 96):
        self.vlm = vlm
        self.schema = schema
        self.max_new_tokens = int(max_new_tokens)
        self._compiled = None
        if schema is not None:
            import xgrammar as xgr   # compiled grammars are per tokenizer: built once here

            vocab = int(vlm.lm.get_input_embeddings().weight.shape[0])
            info = xgr.TokenizerInfo.from_huggingface(vlm.tokenizer, vocab_size=vocab, stop_token_ids=[vlm.end_id])
            self._compiled = xgr.GrammarCompiler(info).compile_json_schema(
                json.dumps(schema), any_whitespace=False, separators=SEPARATORS, strict_mode=True)

    def _processors(self) -> list:
        if self._compiled is None:
            return []
        import xgrammar.contrib.hf as xgr_hf

        return [xgr_hf.LogitsProcessor(self._compiled)]   # one per generate call (it keeps state)

    @torch.no_grad()
    def generate_embeds(self, lm_embeds: torch.Tensor, prompts: Sequence[str]) -> list[str]:
        """The decoded texts for projected event tokens ``lm_embeds`` (B, Q, H) and one prompt
        each (decoded one at a time: the grammar state is per sequence)."""
        vlm = self.vlm
        out = []
        for i, prompt in enumerate(prompts):
            batch = vlm.assemble(lm_embeds[i:i + 1], [prompt], None)
            ids = vlm.lm.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=False,
                                  logits_processor=self._processors(), eos_token_id=vlm.end_id,
                                  pad_token_id=vlm.tokenizer.pad_token_id or vlm.end_id)
            out.append(vlm.tokenizer.decode(ids[0], skip_special_tokens=True).strip())
        return out

    @torch.no_grad()
    def generate(self, event: Any, prompt: str) -> str:
        """The decoded text for one event and prompt."""
        vlm = self.vlm
        vlm.eval()
        proj = vlm.project(vlm.event_inputs([event]))
        return self.generate_embeds(proj.lm_embeds, [prompt])[0]
