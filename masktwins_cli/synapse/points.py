"""The synapse point table (pre points, post points linked to a pre) and its files.

A table holds pre-synaptic points ``pre`` (N, 3) and post-synaptic points ``post`` (M, 3) as
float64 voxel coordinates (z, y, x) local to their volume (voxel 0 is the volume's first voxel),
plus ``post_pre`` (M,) int64: the row of ``pre`` each post belongs to. A pre has 0..n posts, a
post exactly one pre (the WASP-SYN connectivity). Labels and detections use the same table.

A point lies in voxel ``floor(c + 0.5)`` per axis (:func:`point_voxels`, round half up); it is
inside a volume of shape ``(Z, Y, X)`` when that voxel is, i.e. ``-0.5 <= c < S - 0.5``.

Files (:func:`read_points` / :func:`write_points` pick the format by suffix):

* **CSV** (``.csv``): a header row with the six columns ``kind,id,pre_id,z,y,x`` (any order, no
  others), then one row per point. ``kind`` is ``pre`` or ``post``; ``id`` an integer unique within
  its kind; ``pre_id`` the ``id`` of a post's pre (empty on pre rows); ``z,y,x`` voxel coordinates.
  Rows keep file order; blank lines are skipped. Errors name the file and its line number. The
  writer uses ``id`` = row index and Python's shortest round-trip float text, so write -> read
  gives back the same table bit for bit.
* **WASP-SYN HDF5** (``.h5``/``.hdf5``/``.hdf``, the challenge layout): datasets ``pre`` (N, 3:
  z, y, x) and ``post`` (M, 4: pre row index, z, y, x) in global coordinates. The crop offset (the
  global position of local voxel 0, z, y, x) is subtracted on reading and added on writing; unless
  given explicitly it is read from the file name (:func:`offset_from_name`). Errors name the file
  and the dataset row.

Writers stage into a hidden sibling file and move it into place, so an interrupted write never
leaves a table that looks complete.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from masktwins_cli.errors import MaskTwinsError
from masktwins_cli.io.atomic import atomic_path
from masktwins_cli.io.backends import open_hdf5_file, reported_as

CSV_COLUMNS = ("kind", "id", "pre_id", "z", "y", "x")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
_OFFSET_FORMS = ("..._z<Z>_y<Y>_x<X>, ..._<Z>_<Y>_<X> or the challenge's "
                 "..._<z0>-<z1>_<y0>-<y1>_<x0>-<x1> (tokens separated by '_')")


@dataclass(frozen=True, eq=False)
class SynapsePoints:
    """A point table: ``pre`` (N, 3) and ``post`` (M, 3) float64 voxel coordinates (z, y, x),
    ``post_pre`` (M,) int64 row of ``pre`` per post. Arrays are copied and made read-only.

    Construction checks only the array layout (``ValueError``); :func:`make_points` and
    :func:`check_points` validate values for user input (``MaskTwinsError`` naming the row).
    """

    pre: np.ndarray
    post: np.ndarray
    post_pre: np.ndarray

    def __post_init__(self) -> None:
        for name, dtype, width in (("pre", np.float64, 3), ("post", np.float64, 3),
                                   ("post_pre", np.int64, None)):
            array = np.array(getattr(self, name), dtype=dtype)
            if array.size == 0:
                array = array.reshape((0, width) if width else (0,))
            if array.shape[1:] != ((width,) if width else ()):
                raise ValueError(f"SynapsePoints.{name} has shape {array.shape}; expected "
                                 f"{'(rows, 3)' if width else '(rows,)'}")
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        if len(self.post_pre) != len(self.post):
            raise ValueError(f"SynapsePoints: {len(self.post)} posts but {len(self.post_pre)} links")

    n_pre = property(lambda self: len(self.pre))
    n_post = property(lambda self: len(self.post))

    @classmethod
    def empty(cls) -> SynapsePoints:
        """A table without points."""
        return cls(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, np.int64))

    def posts_of(self, pre_row: int) -> np.ndarray:
        """(K, 3) coordinates of the posts linked to pre row ``pre_row``, in table order."""
        return self.post[self.post_pre == pre_row]

    def translated(self, delta: Sequence[float]) -> SynapsePoints:
        """The same table with ``delta`` (z, y, x voxels) added to every coordinate."""
        shift = np.asarray(delta, dtype=np.float64)
        return SynapsePoints(self.pre + shift, self.post + shift, self.post_pre)


def point_voxels(coords: np.ndarray) -> np.ndarray:
    """int64 voxel index of each point, ``floor(c + 0.5)`` (round half up); same shape."""
    return np.floor(np.asarray(coords, dtype=np.float64) + 0.5).astype(np.int64)


# --------------------------------------------------------------------------------- validation
def make_points(pre: Any, post: Any, post_pre: Any, source: str,
                shape: Sequence[int] | None = None, *, pre_rows: Sequence[str] | None = None,
                post_rows: Sequence[str] | None = None) -> SynapsePoints:
    """A validated table from raw arrays; ``MaskTwinsError`` naming ``source`` and the row.

    pre: (N, 3) z,y,x; post: (M, 3); post_pre: (M,) integer-valued rows of ``pre``.
    shape: (Z, Y, X) voxels of the volume every point must lie in (None: no such check).
    pre_rows / post_rows: how messages name each row (e.g. ``"line 7"``); default ``"pre row i"``.
    Checks, in order: columns, links integer and in range, coordinates finite, inside ``shape``.
    """
    pre_xyz = _coordinates(pre, "pre", source)
    post_xyz = _coordinates(post, "post", source)
    name_pre = (lambda i: pre_rows[i]) if pre_rows is not None else (lambda i: f"pre row {i}")
    name_post = (lambda i: post_rows[i]) if post_rows is not None else (lambda i: f"post row {i}")
    links = _links(post_pre, len(post_xyz), len(pre_xyz), source, name_post)
    for xyz, name in ((pre_xyz, name_pre), (post_xyz, name_post)):
        bad = np.flatnonzero(~np.isfinite(xyz).all(axis=1))
        if bad.size:
            raise MaskTwinsError(f"{source}: {name(bad[0])} has a non-finite coordinate "
                                 f"(z, y, x) = {_text(xyz[bad[0]])}")
        if shape is not None:
            _check_inside(xyz, tuple(int(s) for s in shape), source, name)
    return SynapsePoints(pre_xyz, post_xyz, links)


def check_points(points: SynapsePoints, source: str,
                 shape: Sequence[int] | None = None) -> SynapsePoints:
    """Validate an existing table as :func:`make_points` does (rows named ``pre row i``)."""
    return make_points(points.pre, points.post, points.post_pre, source, shape)


def _coordinates(values: Any, kind: str, source: str) -> np.ndarray:
    """(rows, 3) float64 coordinates, or MaskTwinsError naming the wrong layout."""
    try:
        array = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MaskTwinsError(f"{source}: {kind} coordinates are not numbers") from exc
    if array.size == 0:
        array = array.reshape(0, 3)
    if array.ndim != 2 or array.shape[1] != 3:
        raise MaskTwinsError(f"{source}: {kind} points have shape {array.shape}; expected "
                             "(rows, 3) with columns z, y, x")
    return array


def _links(post_pre: Any, n_post: int, n_pre: int, source: str, name) -> np.ndarray:
    """(M,) int64 pre rows; MaskTwinsError for a non-integer or out-of-range link."""
    links = np.array(post_pre, dtype=np.float64).reshape(-1)
    if links.shape != (n_post,):
        raise MaskTwinsError(f"{source}: {links.size} post links for {n_post} post points")
    bad = np.flatnonzero(~np.isfinite(links) | (links != np.round(links)))
    if bad.size:
        raise MaskTwinsError(f"{source}: {name(bad[0])} links to pre {float(links[bad[0]])!r}, not a row "
                             "index")
    bad = np.flatnonzero((links < 0) | (links >= n_pre))
    if bad.size:
        rows = f"{n_pre} pre points (rows 0..{n_pre - 1})" if n_pre else "no pre points"
        raise MaskTwinsError(f"{source}: {name(bad[0])} links to pre row {int(links[bad[0]])}, but "
                             f"there are {rows}")
    return links.astype(np.int64)


def _check_inside(xyz: np.ndarray, shape: tuple[int, ...], source: str, name) -> None:
    """MaskTwinsError naming the first point whose voxel lies outside ``shape``."""
    voxels = point_voxels(xyz)
    bad = np.flatnonzero(((voxels < 0) | (voxels >= np.asarray(shape))).any(axis=1))
    if bad.size:
        raise MaskTwinsError(f"{source}: {name(bad[0])} at (z, y, x) = {_text(xyz[bad[0]])} lies "
                             f"outside the volume of shape {shape}")


def _text(coords: np.ndarray) -> str:
    return "(" + ", ".join(f"{float(c):g}" for c in coords) + ")"


# ------------------------------------------------------------------------------- file names
def offset_from_name(name: str | os.PathLike) -> tuple[int, int, int]:
    """Crop offset (z, y, x voxels) encoded in a file name; MaskTwinsError when none is found.

    The stem is split at ``_`` and read in this order of preference:

    1. tags ``z<Z>``, ``y<Y>``, ``x<X>``, each once, anywhere (``vol_z100_y200_x300.h5``);
    2. the challenge's ranges: exactly one run of three consecutive ``<start>-<end>`` tokens,
       whose starts are the offset (``syns_zyx_5500-6100_6000-6600_1800-2400.h5``);
    3. exactly one run of exactly three consecutive integer tokens (``vol_100_200_300.h5``);
       longer runs (``2023_100_200_300``) are ambiguous and not used.

    Offsets are non-negative integers. Anything else: pass the offset explicitly.
    """
    tokens = Path(name).stem.split("_")
    tags: dict[str, list[int]] = {}
    for token in tokens:
        if match := re.fullmatch(r"([zyxZYX])(\d+)", token):
            tags.setdefault(match.group(1).lower(), []).append(int(match.group(2)))
    if sorted(tags) == ["x", "y", "z"] and all(len(v) == 1 for v in tags.values()):
        return (tags["z"][0], tags["y"][0], tags["x"][0])
    for pattern in (r"(\d+)-\d+", r"(\d+)"):
        runs: list[list[int]] = [[]]  # maximal runs of consecutive matching tokens
        for token in tokens:
            match = re.fullmatch(pattern, token)
            if match:
                runs[-1].append(int(match.group(1)))
            elif runs[-1]:
                runs.append([])
        triples = [r for r in runs if len(r) == 3]
        if len(triples) == 1:
            return (triples[0][0], triples[0][1], triples[0][2])
    raise MaskTwinsError(f"cannot find the crop offset in the file name '{Path(name).name}': "
                         f"expected {_OFFSET_FORMS}; or give the offset explicitly")


def _offset(offset: Sequence[float], source: str) -> np.ndarray:
    """(3,) float64 offset from 3 finite numbers."""
    array = np.asarray(offset, dtype=np.float64).reshape(-1)
    if array.shape != (3,) or not np.isfinite(array).all():
        raise MaskTwinsError(f"{source}: offset must be 3 finite numbers (z, y, x), got {offset!r}")
    return array


# ------------------------------------------------------------------------------------- files
def read_points(path: str | os.PathLike, shape: Sequence[int] | None = None,
                offset: Sequence[float] | None = None) -> SynapsePoints:
    """Read a point table, CSV or WASP-SYN HDF5 by suffix; ``offset`` is for HDF5 only."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        if offset is not None:
            raise MaskTwinsError(f"{path}: CSV tables hold local coordinates; an offset applies "
                                 "to WASP-SYN HDF5 files only")
        return read_points_csv(path, shape)
    if path.suffix.lower() in HDF5_SUFFIXES:
        return read_waspsyn_points(path, offset, shape)
    raise MaskTwinsError(f"{path}: unknown point-table format '{path.suffix}'; expected .csv or "
                         ".h5/.hdf5 (WASP-SYN layout)")


def write_points(path: str | os.PathLike, points: SynapsePoints,
                 offset: Sequence[float] = (0, 0, 0)) -> None:
    """Write a point table, CSV or WASP-SYN HDF5 by suffix; ``offset`` is added in HDF5 only."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        write_points_csv(path, points)
    elif path.suffix.lower() in HDF5_SUFFIXES:
        write_waspsyn_points(path, points, offset)
    else:
        raise MaskTwinsError(f"{path}: unknown point-table format '{path.suffix}'; expected .csv "
                             "or .h5/.hdf5 (WASP-SYN layout)")


@contextlib.contextmanager
def _staged(path: Path) -> Iterator[Path]:
    """Yield a hidden sibling path to write; move it onto ``path`` only on success."""
    with reported_as(f"cannot write {path}"), atomic_path(path) as staging:
        yield staging


def read_points_csv(path: str | os.PathLike, shape: Sequence[int] | None = None) -> SynapsePoints:
    """Read the CSV point table (module docstring); errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise MaskTwinsError(f"point table not found: {path}")
    with reported_as(f"cannot read point table {path}"):
        text = path.read_text(encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    columns = _csv_header(next(reader, None), path)
    pre_ids: dict[int, int] = {}
    post_ids: set[int] = set()
    pre, post, post_pre_ids, pre_lines, post_lines = [], [], [], [], []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path}: line {reader.line_num}"
        kind, ident, pre_id, coords = _csv_row(row, columns, where)
        if ident in (pre_ids if kind == "pre" else post_ids):
            raise MaskTwinsError(f"{where}: {kind} id {ident} is used twice")
        if kind == "pre":
            pre_ids[ident] = len(pre)
            pre.append(coords)
            pre_lines.append(f"line {reader.line_num}")
        else:
            post_ids.add(ident)
            post.append(coords)
            post_pre_ids.append((pre_id, ident, where))
            post_lines.append(f"line {reader.line_num}")
    links = []
    for pre_id, ident, where in post_pre_ids:
        if pre_id not in pre_ids:
            raise MaskTwinsError(f"{where}: post {ident} links to pre_id {pre_id}, which no pre "
                                 "row defines")
        links.append(pre_ids[pre_id])
    return make_points(pre, post, links, str(path), shape, pre_rows=pre_lines, post_rows=post_lines)


def _csv_header(header: list[str] | None, path: Path) -> dict[str, int]:
    """Column positions from the header row; MaskTwinsError unless it has exactly the six names."""
    names = [cell.strip().lower() for cell in header or []]
    if sorted(names) != sorted(CSV_COLUMNS):
        raise MaskTwinsError(f"{path}: line 1: header '{','.join(names)}' is not a point-table "
                             f"header; expected the columns {','.join(CSV_COLUMNS)} (any order)")
    return {name: names.index(name) for name in CSV_COLUMNS}


def _csv_row(row: list[str], columns: dict[str, int], where: str):
    """(kind, id, pre_id or None, [z, y, x]) of one data row; MaskTwinsError naming ``where``."""
    if len(row) != len(CSV_COLUMNS):
        raise MaskTwinsError(f"{where}: {len(row)} fields; expected {len(CSV_COLUMNS)} "
                             f"({','.join(CSV_COLUMNS)})")
    cell = {name: row[index].strip() for name, index in columns.items()}
    kind = cell["kind"].lower()
    if kind not in ("pre", "post"):
        raise MaskTwinsError(f"{where}: kind '{cell['kind']}' is neither 'pre' nor 'post'")
    if kind == "pre" and cell["pre_id"]:
        raise MaskTwinsError(f"{where}: a pre row leaves pre_id empty, got '{cell['pre_id']}'")
    try:
        ident = int(cell["id"])
        pre_id = int(cell["pre_id"]) if kind == "post" else None
    except ValueError as exc:
        raise MaskTwinsError(f"{where}: id and (on post rows) pre_id must be integers, got "
                             f"id '{cell['id']}', pre_id '{cell['pre_id']}'") from exc
    try:
        coords = [float(cell[axis]) for axis in "zyx"]
    except ValueError as exc:
        raise MaskTwinsError(f"{where}: z, y, x must be numbers, got "
                             f"'{cell['z']}', '{cell['y']}', '{cell['x']}'") from exc
    return kind, ident, pre_id, coords


def write_points_csv(path: str | os.PathLike, points: SynapsePoints) -> None:
    """Write the CSV point table: pre rows then post rows, ``id`` = row index."""
    path = Path(path)
    lines = [",".join(CSV_COLUMNS)]
    lines += [f"pre,{i},,{_csv_coords(c)}" for i, c in enumerate(points.pre)]
    lines += [f"post,{i},{int(k)},{_csv_coords(c)}"
              for i, (c, k) in enumerate(zip(points.post, points.post_pre))]
    with _staged(path) as staging:
        staging.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _csv_coords(coords: np.ndarray) -> str:
    return ",".join(repr(float(c)) for c in coords)


def read_waspsyn_points(path: str | os.PathLike, offset: Sequence[float] | None = None,
                        shape: Sequence[int] | None = None) -> SynapsePoints:
    """Read WASP-SYN ``pre`` (N, 3) / ``post`` (M, 4) and subtract the crop offset.

    offset: (z, y, x) voxels; None reads it from the file name (:func:`offset_from_name`).
    shape: (Z, Y, X) of the cropped volume, to check that every point lies inside it.
    """
    path = Path(path)
    origin = _offset(offset_from_name(path) if offset is None else offset, str(path))
    with open_hdf5_file(path) as h5file, reported_as(f"cannot read points from {path}"):
        pre = _hdf5_table(h5file, "pre", 3, path)
        post = _hdf5_table(h5file, "post", 4, path)
    return make_points(pre - origin, post[:, 1:] - origin, post[:, 0], str(path), shape)


def _hdf5_table(h5file: h5py.File, name: str, width: int, path: Path) -> np.ndarray:
    """(rows, width) float64 contents of dataset ``name``; MaskTwinsError for another layout."""
    layout = "'pre' (N, 3: z, y, x) and 'post' (M, 4: pre row, z, y, x)"
    node = h5file.get(name)
    if not isinstance(node, h5py.Dataset):
        raise MaskTwinsError(f"{path}: no dataset '{name}'; the WASP-SYN layout has {layout}")
    array = np.asarray(node[()], dtype=np.float64)
    if array.size == 0:
        array = array.reshape(0, width)
    if array.ndim != 2 or array.shape[1] != width:
        raise MaskTwinsError(f"{path}: dataset '{name}' has shape {array.shape}; the WASP-SYN "
                             f"layout has {layout}")
    return array


def write_waspsyn_points(path: str | os.PathLike, points: SynapsePoints,
                         offset: Sequence[float] = (0, 0, 0)) -> None:
    """Write ``pre`` (N, 3) and ``post`` (M, 4: pre row, z, y, x) float64, ``offset`` added."""
    path = Path(path)
    origin = _offset(offset, str(path))
    post = np.column_stack([points.post_pre.astype(np.float64), points.post + origin])
    with _staged(path) as staging, h5py.File(staging, "w") as h5file:
        h5file.create_dataset("pre", data=points.pre + origin)
        h5file.create_dataset("post", data=post.reshape(-1, 4))
