"""Dense maps (density, depth) as stored in every dataset promptmix writes, and back to NumPy.

A map is one Arrow struct ``{"shape": [H, W] (int32), "data": H*W float16 values, row-major}``
(``schema.map_feature()``). Why this layout and not the alternatives:

- ``datasets.Array2D`` needs one fixed width per column, but generated images (and so annotator
  outputs) differ in size from row to row;
- nested lists ``List(List(float16))`` (promptmix <= 0.2, run folders of manifest format 2) make every
  reader walk one Python list (or one NumPy object) per map row: ~0.5 s and ~70 MB per 768x1024 map;
- raw float16 bytes would read as fast but shows as an opaque blob in the Hub viewer and carries no dtype.

``data`` is one flat Arrow list per row, so a reader takes it as a NumPy view of the column buffer
(:func:`arrow_maps`, no Python object per value) and ``load_dataset(...).with_format("numpy")`` gives
``{"shape": array([H, W]), "data": array(H*W)}`` (reshape with :func:`decode`). The Hub viewer shows the
shape and the first values. Old nested-list maps still decode (:func:`decode`, :func:`arrow_maps`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

SHAPE = "shape"
DATA = "data"


def encode(arr: Any, dtype: Any = np.float16) -> dict[str, Any]:
    """A 2-D array as the stored struct value (``dtype`` float16 unless told)."""
    a = np.asarray(arr)
    if a.ndim != 2:
        raise ValueError(f"a map must be 2-D (H, W); got shape {a.shape}")
    return {SHAPE: [int(a.shape[0]), int(a.shape[1])], DATA: np.ascontiguousarray(a, dtype=dtype).reshape(-1)}


def decode(value: Any, dtype: Any = np.float32) -> np.ndarray | None:
    """The (H, W) array of a stored map value (struct dict, NumPy-formatted dict, or an old nested list)."""
    if value is None:
        return None
    if isinstance(value, dict):
        shape, data = value.get(SHAPE), value.get(DATA)
        if shape is None or data is None:
            return None
        h, w = (int(s) for s in shape)
        return np.asarray(data, dtype=dtype).reshape(h, w)
    a = np.asarray(value)
    if a.dtype == object:  # ragged nested rows from the numpy formatter
        a = np.stack([np.asarray(r) for r in value]) if len(value) else np.zeros((0, 0))
    return a.astype(dtype, copy=False)


def arrow_maps(column: Any, dtype: Any = np.float32) -> list[np.ndarray | None]:
    """Every map of an Arrow map column (struct array, chunked or not), as (H, W) arrays, without Python lists.

    Null rows give ``None``. An old nested-list column (``list<list<float>>``) is read too.
    """
    import pyarrow as pa

    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out: list[np.ndarray | None] = []
    for arr in chunks:
        if pa.types.is_struct(arr.type):
            names = [arr.type.field(k).name for k in range(arr.type.num_fields)]
            children = dict(zip(names, arr.flatten()))  # flatten() applies the struct's own slice offset
            shapes, data = children[SHAPE], children[DATA]
            flat_shape = shapes.values.to_numpy(zero_copy_only=False)[2 * shapes.offset:2 * (shapes.offset + len(shapes))]
            offsets = data.offsets.to_numpy()
            values = data.values.to_numpy(zero_copy_only=False)
            valid = arr.is_valid().to_numpy(zero_copy_only=False)
            for i in range(len(arr)):
                if not valid[i]:
                    out.append(None)
                    continue
                h, w = int(flat_shape[2 * i]), int(flat_shape[2 * i + 1])
                out.append(values[offsets[i]:offsets[i + 1]].reshape(h, w).astype(dtype, copy=False))
        elif pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):  # old layout: list<list<float>>
            for i in range(len(arr)):
                if not arr[i].is_valid:
                    out.append(None)
                    continue
                rows = arr[i].values
                n = len(rows)
                vals = rows.flatten().to_numpy(zero_copy_only=False)
                out.append(vals.reshape(n, -1).astype(dtype, copy=False) if n else np.zeros((0, 0), dtype))
        else:
            raise TypeError(f"expected a map column (struct<shape, data>); got Arrow type {arr.type}")
    return out


def map_struct_array(maps: list[np.ndarray | None], dtype: Any = np.float16):
    """An Arrow struct array of maps (``None`` rows are null), built from NumPy without Python floats."""
    import pyarrow as pa

    n = len(maps)
    shape = np.zeros((n, 2), dtype=np.int32)
    lengths = np.zeros(n + 1, dtype=np.int64)
    parts = []
    valid = np.ones(n, dtype=bool)
    for i, m in enumerate(maps):
        if m is None:
            valid[i] = False
            lengths[i + 1] = lengths[i]
            continue
        a = np.ascontiguousarray(m, dtype=dtype)
        shape[i] = a.shape
        lengths[i + 1] = lengths[i] + a.size
        parts.append(a.reshape(-1))
    values = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    value_type = pa.float16() if np.dtype(dtype) == np.float16 else pa.from_numpy_dtype(np.dtype(dtype))
    data = pa.ListArray.from_arrays(pa.array(lengths.astype(np.int32)), pa.array(values, type=value_type))
    shapes = pa.FixedSizeListArray.from_arrays(pa.array(shape.reshape(-1)), 2)
    mask = pa.array(~valid) if not valid.all() else None
    return pa.StructArray.from_arrays([shapes, data], names=[SHAPE, DATA], mask=mask)
