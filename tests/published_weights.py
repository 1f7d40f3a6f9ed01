"""Random weights written exactly as each real backbone's source publishes them, where it puts them.

Each writer takes the key names and shapes of the real architecture from the library that
publishes the file (built on torch's `meta` device, so nothing is allocated), fills them with
seeded random values and writes the file in the published format into the published place:

- Hugging Face hub cache: `<cache>/models--ORG--NAME/{blobs/<sha256>, snapshots/<commit>/<file>
  -> ../../blobs/<sha256>, refs/main}`, as `huggingface_hub` lays it out on Linux (the snapshot
  entries are relative symlinks into `blobs/`);
- torch hub: `<TORCH_HOME>/hub/checkpoints/<name>-<hash8>.pth` (torchvision's and DINOv2's
  `load_state_dict_from_url` downloads);
- open_clip's legacy cache: `~/.cache/clip/<url basename>` (its GitHub-release `.pt` files);
- the Anomaly-OneVision expert: a `torch.save`d state dict under the authors' file name.

Values are small (weights ~N(0, 0.02), norm scales and running variances ~1), so real-size
networks run without overflowing; integer buffers are zero. The writers return the tensors they
wrote so a test can compare every loaded tensor with the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file

StateShapes = dict[str, tuple[tuple[int, ...], torch.dtype]]


def meta_shapes(build: Callable[[], torch.nn.Module]) -> StateShapes:
    """Key -> (shape, dtype) of the state dict of the module `build()` makes, built on `meta`."""
    with torch.device("meta"):
        module = build()
    return {key: (tuple(value.shape), value.dtype) for key, value in module.state_dict().items()}


def random_state(shapes: Mapping[str, tuple[tuple[int, ...], torch.dtype]], seed: int,
                 zero_prefixes: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Seeded values for `shapes`; keys starting with a `zero_prefixes` entry are zeros (cheap,
    for the parts of a published file no method here reads, e.g. a text tower)."""
    generator = torch.Generator().manual_seed(seed)
    zero = tuple(zero_prefixes)
    state: dict[str, torch.Tensor] = {}
    for key, (shape, dtype) in shapes.items():
        if not dtype.is_floating_point or key.startswith(zero):
            state[key] = torch.zeros(shape, dtype=dtype)
            continue
        values = torch.randn(shape, generator=generator) * 0.02
        if len(shape) == 1 and key.rsplit(".", 1)[-1] in ("weight", "gamma", "running_var"):
            values += 1.0  # norm scales, layer scales and running variances stay near 1
        state[key] = values.to(dtype)
    return state


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def hf_cache_file(cache: Path, repo: str, filename: str, write: Callable[[Path], None]) -> Path:
    """Put one file of Hugging Face repo `repo` into hub cache `cache` as `huggingface_hub` does;
    returns the snapshot path (a symlink into `blobs/`). Files of one repo share one snapshot."""
    folder = Path(cache) / f"models--{repo.replace('/', '--')}"
    commit = hashlib.sha1(repo.encode()).hexdigest()  # 40 hex digits, like a revision
    incoming = folder / "blobs" / f"{filename}.incomplete"
    incoming.parent.mkdir(parents=True, exist_ok=True)
    write(incoming)
    blob = incoming.with_name(_sha256(incoming))
    incoming.replace(blob)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    link = folder / "snapshots" / commit / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(blob, link.parent))
    return link


def safetensors_writer(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
                       ) -> Callable[[Path], None]:
    return lambda path: save_file(dict(state), str(path), metadata=dict(metadata or {"format": "pt"}))


def torch_writer(obj: object) -> Callable[[Path], None]:
    return lambda path: torch.save(obj, path)


def json_writer(obj: object) -> Callable[[Path], None]:
    return lambda path: path.write_text(json.dumps(obj, indent=2))


def torch_hub_checkpoint(torch_home: Path, filename: str, state: Mapping[str, torch.Tensor]) -> Path:
    """`<torch_home>/hub/checkpoints/<filename>`, as `torch.hub.load_state_dict_from_url` saves it."""
    path = Path(torch_home) / "hub" / "checkpoints" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(state), path)
    return path


# --- the published architectures ------------------------------------------------------------------

SIGLIP_SO400M_CONFIG: dict[str, object] = {
    "architectures": ["SiglipModel"],
    "initializer_factor": 1.0,
    "model_type": "siglip",
    "text_config": {"hidden_size": 1152, "intermediate_size": 4304, "model_type": "siglip_text_model",
                    "num_attention_heads": 16, "num_hidden_layers": 27},
    "torch_dtype": "float32",
    "transformers_version": "4.37.0.dev0",
    "vision_config": {"hidden_size": 1152, "image_size": 384, "intermediate_size": 4304,
                      "model_type": "siglip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 27,
                      "patch_size": 14},
}
"""`config.json` of `google/siglip-so400m-patch14-384` (the fields it sets; the rest are defaults)."""


def siglip_so400m_shapes() -> StateShapes:
    """Every tensor of the published `model.safetensors`: the whole `SiglipModel` (878 M parameters,
    text tower included), as transformers names them."""
    from transformers import SiglipConfig, SiglipModel

    config = {k: v for k, v in SIGLIP_SO400M_CONFIG.items() if k in ("text_config", "vision_config")}
    return meta_shapes(lambda: SiglipModel(SiglipConfig(**config)))  # type: ignore[arg-type]


def timm_shapes(model_name: str) -> StateShapes:
    """The state dict timm publishes for `model_name` on the hub (its default head included)."""
    import timm

    return meta_shapes(lambda: timm.create_model(model_name, pretrained=False))


def open_clip_shapes(model_name: str) -> StateShapes:
    """The whole CLIP state dict (visual and text towers) that open_clip's files hold."""
    import open_clip

    return meta_shapes(lambda: open_clip.create_model(model_name, pretrained=None, device="meta"))


def torchvision_shapes(model_name: str) -> StateShapes:
    import torchvision

    return meta_shapes(lambda: getattr(torchvision.models, model_name)(weights=None))


def dinov2_hub_state(timm_state: Mapping[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """DINOv2's own `dinov2_vits14_pretrain.pth` naming: timm's ViT-S/14 keys (block_chunks=0) plus
    the `mask_token` (1, 384) used by its iBOT masking, which inference never reads."""
    mask_token = torch.randn(1, timm_state["cls_token"].shape[-1], generator=torch.Generator().manual_seed(seed))
    return {**timm_state, "mask_token": mask_token * 0.02}


def anomaly_onevision_expert_state(seed: int, width: int = 1152, tokens: int = 729, levels: int = 4,
                                   embed: int = 512) -> dict[str, torch.Tensor]:
    """The expert module's state dict as the authors' `pretrained_expert_*.pth` names it (SigLIP
    so400m at 384 px: width 1152, 27 x 27 tokens, 4 levels, 512-d embeddings)."""
    shapes: dict[str, tuple[tuple[int, ...], torch.dtype]] = {
        "positive_embedding": ((1, embed), torch.float32),
        "negative_embedding": ((1, embed), torch.float32),
        "pooling_layer.0.weight": ((1, tokens), torch.float32), "pooling_layer.0.bias": ((1,), torch.float32),
        "class_predictor.0.weight": ((embed, width), torch.float32), "class_predictor.0.bias": ((embed,), torch.float32),
        "class_predictor.2.weight": ((embed, embed), torch.float32), "class_predictor.2.bias": ((embed,), torch.float32),
        "q_former.query_proj.weight": ((embed, width), torch.float32), "q_former.query_proj.bias": ((embed,), torch.float32),
        "q_former.key_proj.weight": ((embed, width), torch.float32), "q_former.key_proj.bias": ((embed,), torch.float32),
        "final_predictor.0.weight": ((embed, width), torch.float32), "final_predictor.0.bias": ((embed,), torch.float32),
        "final_predictor.2.weight": ((1, embed), torch.float32), "final_predictor.2.bias": ((1,), torch.float32),
    }
    for level in range(levels):
        shapes[f"prompt_adaptors.{level}.weight"] = ((embed, 2 * embed), torch.float32)
        shapes[f"prompt_adaptors.{level}.bias"] = ((embed,), torch.float32)
        shapes[f"siglip_adaptors.{level}.weight"] = ((embed, width), torch.float32)
        shapes[f"siglip_adaptors.{level}.bias"] = ((embed,), torch.float32)
    return random_state(shapes, seed)
