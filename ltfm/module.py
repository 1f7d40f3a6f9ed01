"""The Look-Twice Feature Matching module (Anomaly-OneVision's anomaly expert, Xu et al., CVPR 2025).

Input: multi-level patch tokens of a frozen vision tower, `(B, C, L, N, W)` for B images,
C crops (crop 0 is the global image), L = 4 levels (the last is the end of the tower and doubles
as the base tokens), N = gh * gw tokens, width W. Steps, with the paper's sizes in brackets:

1. Look-back: the global crop's base tokens -> `Linear(N -> 1)` pooling -> `(B, W)` -> MLP
   (W -> 512 -> 512) = class embedding c.
2. Learnable e+ / e- `(1, 512)`; per level a `Linear(1024 -> 512)` maps [e+; c] and [e-; c] to
   the normal / abnormal descriptions t+, t- (L2-normalised).
3. Per level a `Linear(W -> 512)` maps tokens to v (L2-normalised); logits = 100 v . [t+, t-];
   softmax over the pair; the abnormal probability is the level map. Levels are averaged into the
   significance map M `(B, C, gh, gw)`.
4. Token selection: avg-pool (base tokens x M) to 2x2 and divide by avg-pooled M -> 4
   significance tokens per crop; single-head attention (Q, K projected to 512 from the
   significance tokens and all base tokens, V = the base tokens) aggregates them; weights =
   pooled M x mean(M); weighted average over tokens and crops -> MLP (W -> 512 -> 1) -> logit;
   sigmoid = anomaly score. The last MLP is the "classifier head" the study fine-tuned.

Towers whose levels differ in width (a CNN's stages) pad every level to the widest with zeros;
`LTFMConfig.level_widths` says how many channels of each level are real, and each level's token
adapter reads only those. `width` is the base (last) level's width.

About 7.1 M parameters at W = 1152, N = 729. The divisions by pooled significance are guarded
with a small epsilon (softmax at logit scale 100 underflows to exact zeros in float32); the
reference code has no guard. Parameter names differ from the reference implementation;
`ltfm.checkpoint.EXPERT_KEY_MAP` gives the correspondence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6
ADVERB_THRESHOLDS = ((0.3, "slightly"), (0.7, "moderately"))


def adverb(score: float) -> str:
    """The prompt adverb of an anomaly score: < 0.3 "slightly", < 0.7 "moderately", else "highly"."""
    for bound, word in ADVERB_THRESHOLDS:
        if score < bound:
            return word
    return "highly"


@dataclass(frozen=True)
class LTFMConfig:
    """Sizes of one LTFM. `width` and `grid` must match the vision tower and its input size."""

    width: int = 1152
    grid: tuple[int, int] = (27, 27)
    num_levels: int = 4
    embedding_dim: int = 512
    class_dim: int = 512
    attention_dim: int = 512
    head_dim: int = 512
    pooled_grid: int = 2
    logit_scale: float = 100.0
    level_widths: tuple[int, ...] | None = None
    """Real channels per level when levels differ (None: every level is `width` wide)."""

    def __post_init__(self) -> None:
        if self.level_widths is not None and (len(self.level_widths) != self.num_levels
                                              or self.level_widths[-1] != self.width):
            raise ValueError(f"level_widths {self.level_widths} must have {self.num_levels} entries "
                             f"ending with width {self.width}")

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def widths(self) -> tuple[int, ...]:
        """Real channels of each level."""
        return self.level_widths or (self.width,) * self.num_levels

    @property
    def padded_width(self) -> int:
        """The width of the feature tensor: the widest level."""
        return max(self.widths)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["grid"] = list(self.grid)
        if self.level_widths is None:
            del out["level_widths"]  # checkpoints of equal-width towers keep their old form
        else:
            out["level_widths"] = list(self.level_widths)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LTFMConfig:
        widths = data.get("level_widths")
        return cls(**{**data, "grid": tuple(data["grid"]), "level_widths": tuple(widths) if widths else None})


@dataclass(frozen=True)
class LTFMOutput:
    """logit, score: `(B,)`; significance_map M: `(B, C, gh, gw)`; level_maps: `(B, C, L, gh, gw)`."""

    logit: torch.Tensor
    score: torch.Tensor
    significance_map: torch.Tensor
    level_maps: torch.Tensor


class SignificanceAttention(nn.Module):
    """Single-head attention: `(M, Wq)` queries over `(N, W)` tokens -> `(M, W)`; V is the raw tokens."""

    def __init__(self, width: int, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(width, dim)
        self.key = nn.Linear(width, dim)

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        q, k = self.query(queries), self.key(tokens)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1]), dim=-1)
        return weights @ tokens


class LTFM(nn.Module):
    """Look-Twice Feature Matching: `(B, C, L, N, W)` tower tokens -> `LTFMOutput`."""

    def __init__(self, config: LTFMConfig) -> None:
        super().__init__()
        self.config = config
        c, e = config.class_dim, config.embedding_dim
        self.pos_embedding = nn.Parameter(torch.randn(1, e))
        self.neg_embedding = nn.Parameter(torch.randn(1, e))
        self.token_pool = nn.Linear(config.num_tokens, 1)
        self.class_mlp = nn.Sequential(nn.Linear(config.width, c), nn.GELU(), nn.Linear(c, c))
        self.prompt_adapters = nn.ModuleList(nn.Linear(e + c, e) for _ in range(config.num_levels))
        self.token_adapters = nn.ModuleList(nn.Linear(w, e) for w in config.widths)
        self.attention = SignificanceAttention(config.width, config.attention_dim)
        self.head = nn.Sequential(nn.Linear(config.width, config.head_dim), nn.GELU(), nn.Linear(config.head_dim, 1))

    def class_embedding(self, global_tokens: torch.Tensor) -> torch.Tensor:
        """Look-back: `(B, N, W)` global-crop tokens -> `(B, class_dim)`."""
        pooled = self.token_pool(global_tokens.transpose(1, 2)).squeeze(-1)
        return self.class_mlp(pooled)

    def descriptions(self, class_embedding: torch.Tensor) -> torch.Tensor:
        """`(B, class_dim)` -> `(B, L, E, 2)` L2-normalised [normal, abnormal] descriptions per level."""
        b = class_embedding.shape[0]
        pos = torch.cat([self.pos_embedding.expand(b, -1), class_embedding], dim=-1)
        neg = torch.cat([self.neg_embedding.expand(b, -1), class_embedding], dim=-1)
        levels = [
            torch.stack([F.normalize(adapter(pos), dim=-1), F.normalize(adapter(neg), dim=-1)], dim=-1)
            for adapter in self.prompt_adapters
        ]
        return torch.stack(levels, dim=1)

    def level_maps(self, features: torch.Tensor, descriptions: torch.Tensor) -> torch.Tensor:
        """`(B, C, L, N, W)` tokens, `(B, L, E, 2)` descriptions -> `(B, C, L, N)` abnormal probabilities."""
        maps = []
        for level, (adapter, width) in enumerate(zip(self.token_adapters, self.config.widths, strict=True)):
            v = F.normalize(adapter(features[:, :, level, :, :width]), dim=-1)  # (B, C, N, E)
            logits = self.config.logit_scale * torch.einsum("bcne,bek->bcnk", v, descriptions[:, level])
            maps.append(torch.softmax(logits, dim=-1)[..., 1])
        return torch.stack(maps, dim=2)

    def forward(self, features: torch.Tensor) -> LTFMOutput:
        cfg = self.config
        b, c, n_levels, n, w = features.shape
        if (n_levels, n, w) != (cfg.num_levels, cfg.num_tokens, cfg.padded_width):
            raise ValueError(f"LTFM expects (B, C, {cfg.num_levels}, {cfg.num_tokens}, {cfg.padded_width}) features, "
                             f"got {tuple(features.shape)}: tower and input size must match the config")
        features = features.float()
        w = cfg.width
        base = features[:, :, -1, :, :w]  # (B, C, N, W)
        descriptions = self.descriptions(self.class_embedding(base[:, 0]))
        level_maps = self.level_maps(features, descriptions)
        significance = level_maps.mean(dim=2)  # (B, C, N)

        gh, gw, p = cfg.grid[0], cfg.grid[1], cfg.pooled_grid
        tokens = base.reshape(b * c, n, w)
        m = significance.reshape(b * c, 1, gh, gw)
        grid_tokens = tokens.transpose(1, 2).reshape(b * c, w, gh, gw)
        pooled_m = F.adaptive_avg_pool2d(m, p)  # (B*C, 1, p, p)
        sig_tokens = F.adaptive_avg_pool2d(grid_tokens * m, p) / pooled_m.clamp_min(EPS)
        sig_tokens = sig_tokens.flatten(2).transpose(1, 2)  # (B*C, p*p, W)
        weights = pooled_m.flatten(1) * significance.reshape(b * c, n).mean(dim=1, keepdim=True)
        attended = self.attention(sig_tokens, tokens)  # (B*C, p*p, W)

        attended = attended.reshape(b, c * p * p, w)
        weights = weights.reshape(b, c * p * p, 1)
        pooled = (attended * weights).mean(dim=1) / weights.mean(dim=1).clamp_min(EPS)
        logit = self.head(pooled).squeeze(-1)
        return LTFMOutput(
            logit=logit, score=torch.sigmoid(logit),
            significance_map=significance.reshape(b, c, gh, gw),
            level_maps=level_maps.reshape(b, c, cfg.num_levels, gh, gw),
        )
