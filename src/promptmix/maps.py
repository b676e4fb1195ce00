"""Dense maps (density, depth) as stored in every dataset promptmix writes, and back to NumPy.

A map is one Arrow struct ``{"shape": [H, W] (int32), "dtype": "float16", "data": H*W values as little-endian
bytes, row-major}`` (``schema.map_feature()``; ``dtype`` is ``float16`` in annotations and fake datasets,
``float32`` in real depth datasets). Read one with :func:`decode`::

    np.frombuffer(m["data"], dtype=m["dtype"]).reshape(m["shape"])

Why this layout and not the alternatives (measured on 768x1024 maps, ``scripts/bench_filter_scale.py``):

- ``datasets.Array2D`` needs one fixed width per column, but generated images (and so annotator outputs)
  differ in size from row to row;
- nested lists ``List(List(float16))`` (run folders of manifest format 2) make every reader walk one Python
  list (or one NumPy object) per map row: ~0.5 s and ~70 MB per map in the old ``filter``;
- a flat ``List(float16)`` is NumPy-friendly but Parquet stores a repetition and definition level per
  value: writing and reading it cost 6x and 5x the bytes layout's;
- bytes are one Parquet ``BYTE_ARRAY`` per map: written and read at memory speed (zstd-compressed,
  :func:`parquet_options`), handed to NumPy without a copy (:func:`arrow_maps`, ``np.frombuffer``). The Hub
  viewer shows ``shape`` and ``dtype``; ``data`` shows as binary.

Old nested-list maps still decode (:func:`decode`, :func:`arrow_maps`).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

SHAPE = "shape"
DTYPE = "dtype"
DATA = "data"
DTYPES = ("float16", "float32")


def encode(arr: Any, dtype: Any = np.float16) -> dict[str, Any]:
    """A 2-D array as the stored struct value (``dtype`` float16 unless told)."""
    a = np.asarray(arr)
    if a.ndim != 2:
        raise ValueError(f"a map must be 2-D (H, W); got shape {a.shape}")
    dt = np.dtype(dtype)
    if dt.name not in DTYPES:
        raise ValueError(f"map dtype: expected one of {DTYPES}; got {dt.name}")
    return {SHAPE: [int(a.shape[0]), int(a.shape[1])], DTYPE: dt.name,
            DATA: np.ascontiguousarray(a, dtype=dt.newbyteorder("<")).tobytes()}


def decode(value: Any, dtype: Any = np.float32) -> np.ndarray | None:
    """The (H, W) array of a stored map value (a struct as a dict, from any ``datasets`` format, or an old
    nested list), as ``dtype`` (float32 unless told)."""
    if value is None:
        return None
    if isinstance(value, dict):
        shape, data = value.get(SHAPE), value.get(DATA)
        if shape is None or data is None:
            return None
        h, w = (int(v) for v in np.asarray(shape).reshape(-1))
        stored = np.dtype(str(value.get(DTYPE) or "float16")).newbyteorder("<")
        raw = data if isinstance(data, (bytes, bytearray, memoryview)) else bytes(np.asarray(data).item())
        return np.frombuffer(raw, dtype=stored).reshape(h, w).astype(dtype, copy=False)
    a = np.asarray(value)
    if a.dtype == object:  # ragged nested rows from the numpy formatter
        a = np.stack([np.asarray(r) for r in value]) if len(value) else np.zeros((0, 0))
    return a.astype(dtype, copy=False)


def arrow_maps(column: Any, dtype: Any = np.float32) -> list[np.ndarray | None]:
    """Every map of an Arrow map column (struct array, chunked or not) as (H, W) arrays, without a Python object
    per value: with ``dtype`` the stored one, each is a read-only view of the Arrow buffer. Null rows give
    ``None``. An old nested-list column (``list<list<float>>``) is read too."""
    import pyarrow as pa

    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out: list[np.ndarray | None] = []
    for arr in chunks:
        if pa.types.is_struct(arr.type):
            names = [arr.type.field(k).name for k in range(arr.type.num_fields)]
            children = dict(zip(names, arr.flatten()))  # flatten() applies the struct's own slice offset
            shapes, data = children[SHAPE], children[DATA]
            flat_shape = shapes.values.to_numpy(zero_copy_only=False)[2 * shapes.offset:2 * (shapes.offset + len(shapes))]
            dtypes = children[DTYPE].to_pylist() if DTYPE in children else ["float16"] * len(arr)
            valid = arr.is_valid().to_numpy(zero_copy_only=False) & data.is_valid().to_numpy(zero_copy_only=False)
            _, offsets_buf, values_buf = data.buffers()
            kind = np.int64 if pa.types.is_large_binary(data.type) else np.int32
            offsets = np.frombuffer(offsets_buf, dtype=kind)[data.offset:data.offset + len(data) + 1]
            raw = np.frombuffer(values_buf, dtype=np.uint8) if values_buf is not None else np.zeros(0, np.uint8)
            for i in range(len(arr)):
                if not valid[i]:
                    out.append(None)
                    continue
                h, w = int(flat_shape[2 * i]), int(flat_shape[2 * i + 1])
                stored = np.dtype(dtypes[i] or "float16").newbyteorder("<")
                view = raw[offsets[i]:offsets[i + 1]].view(stored).reshape(h, w)
                out.append(view.astype(dtype, copy=False))
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
            raise TypeError(f"expected a map column (struct<shape, dtype, data>); got Arrow type {arr.type}")
    return out


def map_struct_array(maps: list[np.ndarray | None], dtype: Any = np.float16):
    """An Arrow struct array of maps (``None`` rows are null), built from NumPy without Python floats."""
    import pyarrow as pa

    dt = np.dtype(dtype).newbyteorder("<")
    n = len(maps)
    shape = np.zeros((n, 2), dtype=np.int32)
    offsets = np.zeros(n + 1, dtype=np.int64)
    parts = []
    valid = np.ones(n, dtype=bool)
    for i, m in enumerate(maps):
        if m is None:
            valid[i] = False
            offsets[i + 1] = offsets[i]
            continue
        a = np.ascontiguousarray(m, dtype=dt)
        shape[i] = a.shape
        offsets[i + 1] = offsets[i] + a.nbytes
        parts.append(a.reshape(-1).view(np.uint8))
    values = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)
    large = offsets[-1] >= 2 ** 31
    data = pa.Array.from_buffers(pa.large_binary() if large else pa.binary(), n,
                                 [None, pa.py_buffer(offsets if large else offsets.astype(np.int32)),
                                  pa.py_buffer(values)])
    if large:
        data = data.cast(pa.binary())  # raises when one chunk holds over 2 GB of maps: write fewer rows at once
    shapes = pa.FixedSizeListArray.from_arrays(pa.array(shape.reshape(-1)), 2)
    dtypes = pa.array([np.dtype(dtype).name if v else None for v in valid], pa.string())
    mask = pa.array(~valid) if not valid.all() else None
    return pa.StructArray.from_arrays([shapes, dtypes, data], names=[SHAPE, DTYPE, DATA], mask=mask)


@functools.lru_cache(maxsize=64)
def _leaf_paths(schema) -> tuple[tuple[str, ...], tuple[str, ...]]:
    import io

    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(schema.empty_table(), buf)
    buf.seek(0)
    pschema = pq.ParquetFile(buf).schema
    cols = [pschema.column(i) for i in range(len(pschema))]
    binary = tuple(c.path for c in cols if c.physical_type == "BYTE_ARRAY" and c.logical_type.type != "STRING")
    return binary, tuple(c.path for c in cols if c.path not in binary)


def parquet_options(schema) -> dict[str, Any]:
    """``pyarrow.parquet`` writer options for a table with binary columns (maps' bytes, JPEG bytes): zstd, and no
    dictionary or statistics on the bytes (which only cost time there); other columns as usual."""
    data, other = _leaf_paths(schema)
    if not data:
        return {}
    return {"compression": "zstd", "compression_level": 1, "use_dictionary": list(other),
            "write_statistics": list(other)}
