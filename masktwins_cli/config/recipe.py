"""Load, validate, override and write recipes.

A recipe is a TOML file whose sections and keys are the fields of
:class:`masktwins_cli.config.schema.Recipe`. Unknown keys, wrong types and out-of-range values
raise :class:`MaskTwinsError` naming the key, the value and what is allowed. Command-line
overrides (``--set train.lr=1e-4``) go through the same validation.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import MaskTwinsError
from ..method.pseudo_labels import margin_pairs
from .roles import check_roles, role_volumes
from .schema import Recipe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def section_types() -> dict[str, type]:
    """Section name -> dataclass of that section."""
    return {f.name: f.default_factory for f in dataclasses.fields(Recipe)}  # type: ignore[misc]


def _closest(name: str, allowed: list[str]) -> str:
    match = difflib.get_close_matches(name, allowed, n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _check_number(key: str, value: Any, meta: Mapping[str, Any], shown: Any = None) -> None:
    """Range rules of one number; ``shown`` is the whole value to quote (a list it sits in)."""
    shown = value if shown is None else shown
    if isinstance(value, float) and not math.isfinite(value):
        raise MaskTwinsError(f"recipe key '{key}' = {shown!r}: expected finite numbers")
    bounds = [("min", lambda v, b: v >= b, ">="), ("max", lambda v, b: v <= b, "<="),
              ("gt", lambda v, b: v > b, ">"), ("lt", lambda v, b: v < b, "<")]
    for name, ok, symbol in bounds:
        if name in meta and not ok(value, meta[name]):
            what = "entries must be" if shown is not value else "must be"
            raise MaskTwinsError(f"recipe key '{key}' = {shown!r}: {what} {symbol} {meta[name]}")


def _coerce_scalar(key: str, value: Any, default: Any, meta: Mapping[str, Any]) -> Any:
    """Check one scalar against the type of its default and the field's rules."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise MaskTwinsError(f"recipe key '{key}' = {value!r}: expected true or false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise MaskTwinsError(f"recipe key '{key}' = {value!r}: expected an integer")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MaskTwinsError(f"recipe key '{key}' = {value!r}: expected a number")
        value = float(value)
    elif isinstance(default, str) and not isinstance(value, str):
        raise MaskTwinsError(f"recipe key '{key}' = {value!r}: expected a string")
    if "choices" in meta and value not in meta["choices"]:
        allowed = ", ".join(repr(c) for c in meta["choices"])
        raise MaskTwinsError(f"recipe key '{key}' = {value!r}: must be one of {allowed}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(key, value, meta)
    return value


def _coerce_list(key: str, value: Any, meta: Mapping[str, Any], depth: int = 0) -> tuple:
    """Lists become tuples; entries are checked for type (integers, nesting) and range."""
    if not isinstance(value, (list, tuple)):
        raise MaskTwinsError(f"recipe key '{key}' = {value!r}: expected a list")
    if depth == 0 and "length" in meta and len(value) not in meta["length"]:
        lengths = " or ".join(str(n) for n in meta["length"])
        raise MaskTwinsError(f"recipe key '{key}' = {list(value)!r}: expected {lengths} entries")
    kind = "integers" if meta.get("integer") else "numbers"
    items = []
    for item in value:
        if meta.get("nested") and depth == 0:
            if not isinstance(item, (list, tuple)):
                raise MaskTwinsError(f"recipe key '{key}' = {list(value)!r}: expected a list of "
                                     f"lists of {kind}")
            items.append(_coerce_list(key, item, meta, depth + 1))
            continue
        number_ok = isinstance(item, int) if meta.get("integer") else isinstance(item, (int, float))
        if isinstance(item, bool) or not number_ok:
            raise MaskTwinsError(f"recipe key '{key}' = {_plain(value)!r}: expected a list of {kind}")
        _check_number(key, item, meta, _plain(value))
        items.append(item)
    return tuple(items)


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _coerce_tables(key: str, value: Any, cls: type) -> tuple:
    """A list of tables (``[[data.source]]``) -> tuple of ``cls``, each table validated."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, Mapping) for v in value):
        raise MaskTwinsError(f"recipe key '{key}' = {_plain(value)!r}: expected [[{key}]] tables, "
                             f"e.g. [[{key}]] with raw = \"a.zarr/raw\"")
    return tuple(_build_section(f"{key}[{index}]", cls, item) for index, item in enumerate(value))


def _build_section(name: str, cls: type, values: Mapping[str, Any]):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        full = f"{name}.{key}"
        if key not in fields:
            raise MaskTwinsError(
                f"unknown recipe key '{full}'{_closest(key, list(fields))}; "
                f"allowed in [{name}]: {', '.join(fields)}")
        f = fields[key]
        if "tables" in f.metadata:
            kwargs[key] = _coerce_tables(full, value, f.metadata["tables"])
        elif isinstance(f.default, tuple):
            kwargs[key] = _coerce_list(full, value, f.metadata)
        else:
            kwargs[key] = _coerce_scalar(full, value, f.default, f.metadata)
    return cls(**kwargs)


def recipe_from_dict(values: Mapping[str, Any]) -> Recipe:
    """Validate a nested dict (parsed TOML) into a :class:`Recipe`."""
    sections = section_types()
    built = {}
    for name, content in values.items():
        if name not in sections:
            raise MaskTwinsError(f"unknown recipe section '[{name}]'{_closest(name, list(sections))}; "
                                 f"allowed: {', '.join(sections)}")
        if not isinstance(content, Mapping):
            raise MaskTwinsError(f"recipe entry '{name}' must be a [section] table")
        built[name] = _build_section(name, sections[name], content)
    recipe = Recipe(**built)
    check_consistency(recipe)
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict[str, dict[str, Any]]:
    """Plain nested dict (tuples as lists), suitable for TOML, JSON and checkpoints."""

    def plain(value):
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    return {name: {k: plain(v) for k, v in dataclasses.asdict(getattr(recipe, name)).items()}
            for name in section_types()}


def _product(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def down_factors(model) -> tuple[int, ...]:
    """Total down-sampling factor per spatial axis of the network (U-Nets: 16, or the product
    of model.pool; segformer: 32, its last stage's stride)."""
    if model.name == "segformer":  # HRDA's context (the crop scaled down) must stay a multiple
        return (round(32 / model.hrda_scale) if model.hrda else 32,) * model.spatial_dims
    if model.spatial_dims == 3 and model.pool:
        return tuple(_product(step[axis] for step in model.pool) for axis in range(3))
    return (16,) * model.spatial_dims


def check_consistency(recipe: Recipe) -> None:
    """Rules that involve several keys (one key named in each message)."""
    dims = recipe.model.spatial_dims
    for key, value in (("data.patch_size", recipe.data.patch_size),
                       ("method.block_size", recipe.method.block_size)):
        if len(value) != dims:
            raise MaskTwinsError(f"recipe key '{key}' = {list(value)}: model.spatial_dims = {dims} "
                                 f"needs {dims} entries")
    if recipe.infer.window and len(recipe.infer.window) != dims:
        raise MaskTwinsError(f"recipe key 'infer.window' = {list(recipe.infer.window)}: needs {dims} "
                             "entries (or [] for data.patch_size)")
    pool = recipe.model.pool
    if pool and (dims != 3 or len(pool) != 4 or any(len(p) != 3 or min(p) < 1 for p in pool)):
        raise MaskTwinsError(f"recipe key 'model.pool' = {[list(p) for p in pool]}: expected four "
                             "[z, y, x] kernels of positive integers, and only for spatial_dims = 3")
    m = recipe.model
    if m.hrda and m.name != "segformer":
        raise MaskTwinsError("recipe key 'model.hrda' wraps a segformer: set model.name = 'segformer'")
    if m.hrda and any(d > p or d % 32 for d, p in zip(m.hrda_detail, recipe.data.patch_size)):
        raise MaskTwinsError(f"recipe key 'model.hrda_detail' = {list(m.hrda_detail)}: a multiple "
                             f"of 32 inside data.patch_size {list(recipe.data.patch_size)}")
    if recipe.model.name == "segformer" and (dims != 2 or pool):
        raise MaskTwinsError("recipe key 'model.name' = 'segformer': a 2-D network; set "
                             "model.spatial_dims = 2 and leave model.pool empty")
    wanted = 6 if recipe.model.name == "basicunet" else 5
    if recipe.model.name != "segformer" and len(recipe.model.features) != wanted:
        raise MaskTwinsError(f"recipe key 'model.features' = {list(recipe.model.features)}: "
                             f"model.name = {recipe.model.name!r} takes {wanted} widths")
    if pool and recipe.model.name == "basicunet":
        raise MaskTwinsError("recipe key 'model.pool': basicunet pools by 2 on every axis; "
                             "leave it empty")
    factors = down_factors(recipe.model)
    for key, size in (("data.patch_size", recipe.data.patch_size),
                      ("infer.window", recipe.infer.window)):
        if size and any(s % f for s, f in zip(size, factors)):
            raise MaskTwinsError(f"recipe key '{key}' = {list(size)}: each size must be divisible by "
                                 f"the network's down-sampling {list(factors)}")
    if recipe.data.ignore_label < recipe.model.num_classes:
        raise MaskTwinsError(f"recipe key 'data.ignore_label' = {recipe.data.ignore_label}: it is "
                             f"one of the classes 0..{recipe.model.num_classes - 1} "
                             "(model.num_classes); choose a value above them, e.g. 255")
    check_normalization(recipe)
    if recipe.method.feature_distance > 0 and (recipe.model.name != "segformer"
                                               or not recipe.model.pretrained):
        raise MaskTwinsError("recipe key 'method.feature_distance' compares with the ImageNet "
                             "encoder: it needs model.name = 'segformer' and model.pretrained")
    if any(c >= recipe.model.num_classes for c in recipe.method.feature_distance_classes) and \
            recipe.method.feature_distance > 0:
        raise MaskTwinsError(f"recipe key 'method.feature_distance_classes' = "
                             f"{list(recipe.method.feature_distance_classes)}: classes are "
                             f"0..{recipe.model.num_classes - 1}")
    if recipe.data.rare_class_temperature > 0 and recipe.data.foreground_oversample > 0:
        raise MaskTwinsError("recipe keys 'data.rare_class_temperature' and "
                             "'data.foreground_oversample' both place the source crops: use one")
    weights = recipe.method.class_weights
    if weights and len(weights) != recipe.model.num_classes:
        raise MaskTwinsError(f"recipe key 'method.class_weights' = {list(weights)}: expected "
                             f"{recipe.model.num_classes} entries (model.num_classes)")
    margin, context = recipe.method.pseudo_margin, recipe.method.teacher_context
    if margin and len(margin) not in (dims, 2 * dims):
        raise MaskTwinsError(f"recipe key 'method.pseudo_margin' = {list(margin)}: needs {dims} "
                             f"entries, or {2 * dims} (before, after per axis), or [] for none")
    if context and len(context) != dims:
        raise MaskTwinsError(f"recipe key 'method.teacher_context' = {list(context)}: needs {dims} "
                             "entries (or [] for none)")
    if margin and any(sum(pair) >= p for pair, p in zip(margin_pairs(margin, dims),
                                                         recipe.data.patch_size)):
        raise MaskTwinsError(f"recipe key 'method.pseudo_margin' = {list(margin)}: leaves no pseudo-"
                             f"labels in a data.patch_size {list(recipe.data.patch_size)} patch")
    if context and any((p + 2 * c) % f for p, c, f in zip(recipe.data.patch_size, context, factors)):
        raise MaskTwinsError(f"recipe key 'method.teacher_context' = {list(context)}: the teacher's "
                             "crop (data.patch_size + 2 x context) must stay divisible by the "
                             f"network's down-sampling {list(factors)}")
    if recipe.method.adapt and recipe.method.adapt_start >= recipe.train.iterations:
        raise MaskTwinsError(f"recipe key 'method.adapt_start' = {recipe.method.adapt_start}: must be "
                             f"below train.iterations ({recipe.train.iterations}) or the target is "
                             "never used (for a source-only run set method.adapt = false)")
    if recipe.method.mask_mode == "single" and recipe.method.num_views != 2:
        raise MaskTwinsError("recipe key 'method.num_views' must stay 2 with method.mask_mode = 'single'")
    for key in ("gamma_range", "blur_sigma", "strong_blur_sigma"):
        low, high = getattr(recipe.augment, key)
        if low > high:
            raise MaskTwinsError(f"recipe key 'augment.{key}' = {[low, high]}: expected [low, high] "
                                 "with low <= high")
    check_task(recipe)


def check_normalization(recipe: Recipe) -> None:
    """``fixed`` normalisation takes one mean and std per input channel; they mean nothing
    with the other normalisations."""
    d, channels = recipe.data, recipe.model.in_channels
    if d.normalization != "fixed":
        for key in ("mean", "std"):
            if getattr(d, key):
                raise MaskTwinsError(f"recipe key 'data.{key}' is used only with "
                                     "data.normalization = 'fixed'")
        return
    for key in ("mean", "std"):
        values = getattr(d, key)
        if len(values) != channels:
            raise MaskTwinsError(f"recipe key 'data.{key}' = {list(values)}: data.normalization = "
                                 f"'fixed' needs {channels} value(s), one per channel "
                                 "(model.in_channels)")


def check_task(recipe: Recipe) -> None:
    """Rules of ``model.task``: synapse detection is 3-D, two sigmoid channels, point labels."""
    d, m, method = recipe.data, recipe.model, recipe.method
    check_roles(d, m.task)
    if m.task == "segmentation":
        return
    val = role_volumes(d, "val")
    rules = [
        (m.spatial_dims != 3, "model.spatial_dims", m.spatial_dims, "synapse detection is 3-D: set 3"),
        (m.num_classes != 2, "model.num_classes", m.num_classes,
         "synapse detection has 2 sigmoid channels (pre, post): set 2"),
        (m.in_channels != 1, "model.in_channels", m.in_channels,
         "synapse detection reads one-channel EM volumes: set 1"),
        (method.classmix, "method.classmix", True, "ClassMix mixes class labels (segmentation)"),
        (d.rare_class_temperature > 0, "data.rare_class_temperature", d.rare_class_temperature,
         "rare-class sampling draws segmentation classes"),
        (d.cube_size % 2 == 0, "data.cube_size", d.cube_size,
         "cube targets are centred on their point's voxel: use an odd size"),
        (bool(method.class_weights), "method.class_weights", list(method.class_weights),
         "softmax class weights do not apply to synapse (see method.bce_weighting)"),
        (method.confidence == "quality", "method.confidence", method.confidence,
         "synapse pseudo-labels use per-channel thresholds (method.synapse_thresholds) or "
         "class_balanced selection"),
        (method.synapse_pseudo_labels == "cubes" and method.confidence != "threshold",
         "method.synapse_pseudo_labels", method.synapse_pseudo_labels,
         "cube pseudo-labels use the thresholds: set method.confidence = 'threshold'"),
        (bool(val), val[0].name if val else "", val[0].raw if val else "",
         "validation during training is for segmentation; score synapse runs after training"),
    ]
    for bad, key, value, why in rules:
        if bad:
            raise MaskTwinsError(f"recipe key '{key}' = {value!r}: {why} (model.task = 'synapse')")


def parse_override(text: str) -> tuple[str, str, Any]:
    """``section.key=value`` -> (section, key, value); the value is read as TOML, else a string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise MaskTwinsError(f"--set {text!r}: expected section.key=value, e.g. train.lr=1e-4")
    path, raw = text.split("=", 1)
    section, key = path.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return section, key, value


def apply_overrides(values: Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of the nested recipe dict with ``--set`` overrides applied."""
    merged = {k: dict(v) if isinstance(v, Mapping) else v for k, v in values.items()}
    for text in overrides:
        section, key, value = parse_override(text)
        merged.setdefault(section, {})
        if not isinstance(merged[section], dict):
            raise MaskTwinsError(f"--set {text!r}: '{section}' is not a recipe section")
        merged[section][key] = value
    return merged


def load_recipe(path: str | Path, overrides: list[str] | None = None,
                output_dir: str | Path | None = None) -> Recipe:
    """Read a TOML recipe, apply overrides (``--set`` strings, then ``output_dir``, which
    replaces ``train.output_dir``), validate. Errors name the file or the key."""
    path = Path(path)
    if not path.is_file():
        raise MaskTwinsError(f"recipe not found: {path}")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise MaskTwinsError(f"recipe {path} is not valid TOML: {err}") from None
    try:
        values = apply_overrides(values, overrides or [])
        if output_dir is not None:
            train = values.setdefault("train", {})
            if isinstance(train, dict):
                train["output_dir"] = str(output_dir)
        return recipe_from_dict(values)
    except MaskTwinsError as err:
        raise MaskTwinsError(f"{path}: {err}") from None


def _toml_value(value: Any) -> str:
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):  # a table of a [[...]] list, written inline
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def recipe_to_toml(recipe: Recipe) -> str:
    """The resolved recipe as TOML text, each key preceded by its documentation."""
    lines = ["# Resolved masktwins recipe (every key, defaults included)."]
    for name, cls in section_types().items():
        lines += ["", f"[{name}]"]
        section = getattr(recipe, name)
        for f in dataclasses.fields(cls):
            lines.append(f"# {f.metadata.get('doc', '')}")
            lines.append(f"{f.name} = {_toml_value(getattr(section, f.name))}")
    return "\n".join(lines) + "\n"


def resolve_data_path(recipe: Recipe, uri: str) -> str:
    """A data URI from the recipe, made relative to ``data.root`` unless absolute."""
    if not uri or os.path.isabs(uri):
        return uri
    return str(Path(recipe.data.root) / uri)
