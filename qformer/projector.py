"""The Q-Former projector: encoder event tokens in, language-model input embeddings out.

    projector = EventProjector(EventProjectorConfig(encoder_dim=128, lm_dim=576))
    out = projector(tokens, token_mask, token_coords)   # from encoder.PointEncoder
    out.lm_embeds       # (B, n_queries, lm_dim): prepended to the prompt's embeddings
    out.event_embed     # (B, embed_dim) unit vectors: the aligned event-text space
    projector.embed_text(lm_hidden, text_mask)         # (B, embed_dim) the text side

A fixed number of learned queries cross-attend to the variable number of event tokens (the
mask hides padding), so the language model always sees ``n_queries`` event embeddings however
large the event. The Q-Former itself is transformers' ``Blip2QFormerModel``; it stays in fp32
even when the language model is 4-bit, because it is small and trains from scratch.

Token positions matter to physics (where a shower starts relative to the vertex), and the
encoder tokens carry only features, so their centroid positions (cm, relative to the event's
energy-weighted centre, in units of ``position_scale_cm``) are added through a small MLP.

The model is a transformers ``PreTrainedModel``: ``save_pretrained(dir)`` writes
``config.json`` + ``model.safetensors`` and ``EventProjector.from_pretrained(dir)`` reads them
back with shape checks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn
from transformers import Blip2QFormerConfig, Blip2QFormerModel, PretrainedConfig, PreTrainedModel


class EventProjectorConfig(PretrainedConfig):
    model_type = "larsight_event_projector"

    def __init__(self, encoder_dim: int = 128, lm_dim: int = 576, n_queries: int = 16,
                 hidden_size: int = 256, num_layers: int = 2, num_heads: int = 4,
                 intermediate_size: int = 1024, cross_attention_frequency: int = 1,
                 embed_dim: int = 256, dropout: float = 0.1, position_scale_cm: float = 100.0,
                 **kwargs):
        self.encoder_dim = int(encoder_dim)
        self.lm_dim = int(lm_dim)
        self.n_queries = int(n_queries)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.intermediate_size = int(intermediate_size)
        self.cross_attention_frequency = int(cross_attention_frequency)
        self.embed_dim = int(embed_dim)
        self.dropout = float(dropout)
        self.position_scale_cm = float(position_scale_cm)
        super().__init__(**kwargs)
        for name in ("encoder_dim", "lm_dim", "n_queries", "hidden_size", "num_layers",
                     "num_heads", "intermediate_size", "embed_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"EventProjectorConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"EventProjectorConfig: hidden_size {self.hidden_size} is not a "
                             f"multiple of num_heads {self.num_heads}")

    def qformer_config(self) -> Blip2QFormerConfig:
        return Blip2QFormerConfig(
            hidden_size=self.hidden_size, num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads, intermediate_size=self.intermediate_size,
            hidden_dropout_prob=self.dropout, attention_probs_dropout_prob=self.dropout,
            cross_attention_frequency=self.cross_attention_frequency,
            encoder_hidden_size=self.encoder_dim)


@dataclass
class ProjectorOutput:
    query_states: Tensor
    """(B, n_queries, hidden_size) Q-Former outputs."""
    lm_embeds: Tensor
    """(B, n_queries, lm_dim) inputs for the language model."""
    event_embed: Tensor
    """(B, embed_dim) L2-normalised event embedding (contrastive space)."""


class EventProjector(PreTrainedModel):
    config_class = EventProjectorConfig
    base_model_prefix = "projector"
    main_input_name = "tokens"

    def __init__(self, config: EventProjectorConfig):
        super().__init__(config)
        c = config
        self.token_norm = nn.LayerNorm(c.encoder_dim)
        self.position = nn.Sequential(nn.Linear(3, c.encoder_dim), nn.GELU(),
                                      nn.Linear(c.encoder_dim, c.encoder_dim))
        self.queries = nn.Parameter(torch.zeros(1, c.n_queries, c.hidden_size))
        self.qformer = Blip2QFormerModel(c.qformer_config())
        self.to_lm = nn.Sequential(nn.Linear(c.hidden_size, c.lm_dim), nn.LayerNorm(c.lm_dim))
        self.event_head = nn.Linear(c.hidden_size, c.embed_dim)
        self.text_head = nn.Linear(c.lm_dim, c.embed_dim)
        # SigLIP's learned temperature and bias (log t = log 10, b = -10 at start)
        self.logit_scale = nn.Parameter(torch.tensor(2.302585))
        self.logit_bias = nn.Parameter(torch.tensor(-10.0))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, EventProjector):
            nn.init.trunc_normal_(module.queries, std=0.02)
            with torch.no_grad():
                module.logit_scale.fill_(2.302585)
                module.logit_bias.fill_(-10.0)

    def forward(self, tokens: Tensor, token_mask: Tensor,
                token_coords: Optional[Tensor] = None) -> ProjectorOutput:
        """tokens (B, T, encoder_dim), token_mask (B, T) bool (True = real token),
        token_coords (B, T, 3) cm or None."""
        if tokens.dim() != 3 or tokens.shape[-1] != self.config.encoder_dim:
            raise ValueError(f"EventProjector: tokens must be (B, T, {self.config.encoder_dim}), "
                             f"got {tuple(tokens.shape)}")
        if token_mask.shape != tokens.shape[:2]:
            raise ValueError(f"EventProjector: token_mask {tuple(token_mask.shape)} does not "
                             f"match tokens {tuple(tokens.shape[:2])}")
        mask = token_mask.bool()
        empty = ~mask.any(dim=1)
        if bool(empty.any()):
            # an event without tokens would make cross-attention softmax over nothing (NaN);
            # let it attend to one zero token instead
            mask = mask.clone()
            mask[empty, 0] = True
        x = self.token_norm(tokens.float())
        if token_coords is not None:
            w = mask.float().unsqueeze(-1)
            centre = (token_coords * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1)
            rel = (token_coords.float() - centre) / self.config.position_scale_cm
            x = x + self.position(rel)
        x = x * mask.unsqueeze(-1)
        queries = self.queries.expand(tokens.shape[0], -1, -1)
        out = self.qformer(query_embeds=queries, encoder_hidden_states=x,
                           encoder_attention_mask=mask.long())
        states = out.last_hidden_state
        event = nn.functional.normalize(self.event_head(states.mean(dim=1)), dim=-1)
        return ProjectorOutput(query_states=states, lm_embeds=self.to_lm(states),
                               event_embed=event)

    def embed_text(self, lm_hidden: Tensor, text_mask: Tensor) -> Tensor:
        """Mean of a text's language-model hidden states (B, L, lm_dim) over its tokens ->
        (B, embed_dim) unit vectors in the event-text space."""
        w = text_mask.float().unsqueeze(-1)
        pooled = (lm_hidden.float() * w).sum(1) / w.sum(1).clamp(min=1)
        return nn.functional.normalize(self.text_head(pooled), dim=-1)
