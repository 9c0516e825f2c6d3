"""ImageNet MiT weights in the original layout (NVlabs SegFormer / mmsegmentation ``mit_b5.pth``)
converted to the encoder of :mod:`.segformer` (``transformers`` 5's SegformerModel), and back.

Original -> here, for stage i (0-based) and block j:

* ``patch_embed{i+1}.proj`` / ``.norm`` -> ``stages.{i}.patch_embeddings.proj`` / ``.layer_norm``
* ``block{i+1}.{j}.norm1`` / ``norm2`` -> ``stages.{i}.blocks.{j}.layernorm_before`` / ``_after``
* ``block{i+1}.{j}.attn.q`` -> ``...attention.q_proj``; ``attn.kv`` (keys then values, stacked
  on the output axis) -> ``attention.k_proj`` and ``attention.v_proj``; ``attn.proj`` ->
  ``attention.o_proj``; ``attn.sr`` / ``attn.norm`` -> ``attention.sequence_reduction.
  sequence_reduction`` / ``.layer_norm``
* ``block{i+1}.{j}.mlp.{fc1,dwconv.dwconv,fc2}`` -> ``...mlp.{fc1,dwconv.dwconv,fc2}``
* ``norm{i+1}`` -> ``stages.{i}.layer_norm``

``head.*`` (the ImageNet classifier) has no place in a segmentation network and is dropped.
A file may hold the dict itself, or under ``state_dict`` / ``model``, with or without a
``backbone.`` prefix (mmsegmentation checkpoints).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

# (original, here): {i} the 1-based stage there, {s} the 0-based stage here, {b} a block, {w}
# the rest of the name (weight, bias, ...); {m} one of the MLP layers
_PAIRS = (
    ("patch_embed{i}.proj.{w}", "stages.{s}.patch_embeddings.proj.{w}"),
    ("patch_embed{i}.norm.{w}", "stages.{s}.patch_embeddings.layer_norm.{w}"),
    ("block{i}.{b}.norm1.{w}", "stages.{s}.blocks.{b}.layernorm_before.{w}"),
    ("block{i}.{b}.norm2.{w}", "stages.{s}.blocks.{b}.layernorm_after.{w}"),
    ("block{i}.{b}.attn.q.{w}", "stages.{s}.blocks.{b}.attention.q_proj.{w}"),
    ("block{i}.{b}.attn.proj.{w}", "stages.{s}.blocks.{b}.attention.o_proj.{w}"),
    ("block{i}.{b}.attn.sr.{w}",
     "stages.{s}.blocks.{b}.attention.sequence_reduction.sequence_reduction.{w}"),
    ("block{i}.{b}.attn.norm.{w}", "stages.{s}.blocks.{b}.attention.sequence_reduction.layer_norm.{w}"),
    ("block{i}.{b}.mlp.{m}.{w}", "stages.{s}.blocks.{b}.mlp.{m}.{w}"),
    ("norm{i}.{w}", "stages.{s}.layer_norm.{w}"),
)
_FIELDS = {"i": r"(?P<i>\d)", "s": r"(?P<s>\d)", "b": r"(?P<b>\d+)", "w": r"(?P<w>weight|bias)",
           "m": r"(?P<m>fc1|fc2|dwconv\.dwconv)"}
_KV = re.compile(r"block(\d)\.(\d+)\.attn\.kv\.(weight|bias)")
_KV_HERE = re.compile(r"stages\.(\d)\.blocks\.(\d+)\.attention\.(k|v)_proj\.(weight|bias)")
DROPPED = re.compile(r"head\..+")


def _regex(template: str) -> re.Pattern:
    text = re.escape(template)
    for name, group in _FIELDS.items():
        text = text.replace(re.escape("{" + name + "}"), group)
    return re.compile(text)


_FORWARD = [(_regex(there), here) for there, here in _PAIRS]
_BACKWARD = [(_regex(here), there) for there, here in _PAIRS]


def _rename(key: str, table) -> str | None:
    """``key`` renamed by the first matching template (stage numbers shifted), else None."""
    for regex, template in table:
        match = regex.fullmatch(key)
        if match:
            fields = match.groupdict()
            if "i" in fields:
                fields["s"] = str(int(fields["i"]) - 1)
            else:
                fields["i"] = str(int(fields["s"]) + 1)
            return template.format(**fields)
    return None


def unwrap(state: Mapping) -> dict[str, torch.Tensor]:
    """The weights of a loaded file: under ``state_dict`` / ``model`` if there, ``backbone.``
    prefixes removed."""
    for key in ("state_dict", "model"):
        if key in state and isinstance(state[key], Mapping):
            state = state[key]
    return {(k[len("backbone."):] if k.startswith("backbone.") else k): v for k, v in state.items()}


def from_original(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(encoder state dict, original keys that have no place here). The ImageNet head is
    dropped silently; every other unknown key is returned for reporting."""
    converted, unknown = {}, []
    for key, value in unwrap(state).items():
        kv = _KV.fullmatch(key)
        if kv:
            prefix = f"stages.{int(kv.group(1)) - 1}.blocks.{kv.group(2)}.attention"
            keys, values = value.chunk(2, dim=0)
            converted[f"{prefix}.k_proj.{kv.group(3)}"] = keys.clone()
            converted[f"{prefix}.v_proj.{kv.group(3)}"] = values.clone()
            continue
        renamed = _rename(key, _FORWARD)
        if renamed is not None:
            converted[renamed] = value
        elif not DROPPED.fullmatch(key):
            unknown.append(key)
    return converted, unknown


def to_original(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`from_original` (without the ImageNet head); KeyError for a key
    that has no original name."""
    original: dict[str, torch.Tensor] = {}
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        kv = _KV_HERE.fullmatch(key)
        if kv:
            stage, block, which, what = kv.groups()
            halves.setdefault(f"block{int(stage) + 1}.{block}.attn.kv.{what}", {})[which] = value
            continue
        renamed = _rename(key, _BACKWARD)
        if renamed is None:
            raise KeyError(f"no original name for {key!r}")
        original[renamed] = value
    for key, parts in halves.items():
        original[key] = torch.cat([parts["k"], parts["v"]], dim=0)
    return original
