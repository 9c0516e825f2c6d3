"""The volumes of each data role (source, target, val) as one list, whichever form the recipe
uses: ``[[data.source]]`` tables, or the single-volume keys of older recipes
(``data.source_raw``, ``data.source_labels``, ``data.source_points``, ``data.target_raw``,
``data.val_raw``, ``data.val_labels``). Each volume knows the recipe key of each of its fields,
so errors name what the user wrote."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MaskTwinsError
from .schema import ROLES, DataSection


@dataclass(frozen=True)
class RoleVolume:
    """One volume of a role; ``index`` is its table's position, None in the single-volume form."""

    role: str
    index: int | None
    raw: str
    labels: str = ""
    points: str = ""
    weight: float = 0.0

    def key(self, field: str) -> str:
        """The recipe key of ``field`` ('raw', 'labels', 'points', 'weight') as written."""
        if self.index is None:
            return f"data.{self.role}_{field}"
        return f"data.{self.role}[{self.index}].{field}"

    @property
    def name(self) -> str:
        """How messages name the volume: its first key."""
        return self.key("raw")


def role_volumes(data: DataSection, role: str) -> tuple[RoleVolume, ...]:
    """The volumes of ``role`` ('source', 'target' or 'val'); MaskTwinsError when the recipe
    gives both forms."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: expected one of {ROLES}")
    tables = getattr(data, role)
    single = {field: getattr(data, f"{role}_{field}", "") for field in ("raw", "labels", "points")}
    if tables and any(single.values()):
        used = ", ".join(f"data.{role}_{field}" for field, value in single.items() if value)
        raise MaskTwinsError(f"recipe keys {used} and [[data.{role}]] tables both name {role} "
                             f"volumes: keep one form (the tables hold any number of volumes)")
    if tables:
        return tuple(RoleVolume(role, i, t.raw, t.labels, t.points, t.weight)
                     for i, t in enumerate(tables))
    return (RoleVolume(role, None, **single),) if any(single.values()) else ()


def check_roles(data: DataSection, task: str) -> None:
    """What each role's volumes must hold: target volumes are unlabeled, validation volumes
    have raw and labels, source volumes labels for segmentation or points for synapse."""
    for volume in role_volumes(data, "target"):
        if volume.labels or volume.points:
            field = "labels" if volume.labels else "points"
            raise MaskTwinsError(f"recipe key '{volume.key(field)}': target volumes are unlabeled "
                                 "(labeled target volumes go in [[data.val]])")
    for volume in role_volumes(data, "val"):
        if volume.points:
            raise MaskTwinsError(f"recipe key '{volume.key('points')}': validation volumes take "
                                 "class labels")
        if bool(volume.raw) != bool(volume.labels):
            if volume.index is None:
                raise MaskTwinsError("recipe keys 'data.val_raw' and 'data.val_labels' must be "
                                     "given together")
            missing = "labels" if volume.raw else "raw"
            raise MaskTwinsError(f"recipe key '{volume.key(missing)}' is empty: each [[data.val]] "
                                 "table needs raw and labels")
    for volume in role_volumes(data, "source"):
        if task == "segmentation" and volume.points:
            raise MaskTwinsError(f"recipe key '{volume.key('points')}' = {volume.points!r}: point "
                                 "tables are for model.task = 'synapse' (segmentation uses "
                                 f"{volume.key('labels')})")
        if task == "synapse" and volume.labels:
            raise MaskTwinsError(f"recipe key '{volume.key('labels')}' = {volume.labels!r}: "
                                 "model.task = 'synapse' takes point labels: use "
                                 f"{volume.key('points')} (model.task = 'synapse')")
