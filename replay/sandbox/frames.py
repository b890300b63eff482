"""The wire format between the caller and a sandboxed worker: length-prefixed frames.

Caller -> worker: 4-byte big-endian length, then a pickle (the worker trusts its caller).
Worker -> caller: 4-byte JSON length, 4-byte raw length, a JSON object, then the raw bytes of
the arrays that the JSON lists as {"dtype", "shape"}. Never a pickle: the caller must not
unpickle what untrusted code wrote. The caller parses with hard bounds (`decode_reply`).
"""

from __future__ import annotations

import json
import os
import pickle
import struct

import numpy as np

MAX_JSON = 1 << 20
DTYPES = ("<f8", "<i8", "<i4", "|b1")  # what a reply's arrays may be


class FrameError(Exception):
    """A reply that breaks the format (the sandboxed program wrote something else)."""


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_exact(fd: int, n: int) -> bytes | None:
    """n bytes from a blocking fd; None at end-of-file before the first byte."""
    chunks, got = [], 0
    while got < n:
        b = os.read(fd, min(n - got, 1 << 20))
        if not b:
            if got == 0:
                return None
            raise EOFError(f"end of file after {got} of {n} bytes")
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


# ---- caller -> worker

def encode_request(obj) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return struct.pack(">I", len(body)) + body


def read_request(fd: int):
    head = read_exact(fd, 4)
    if head is None:
        return None
    body = read_exact(fd, struct.unpack(">I", head)[0])
    return pickle.loads(body)


# ---- worker -> caller

def encode_reply(header: dict, arrays: list[np.ndarray] = ()) -> bytes:
    arrays = [np.ascontiguousarray(a) for a in arrays]
    for a in arrays:
        if a.dtype.str not in DTYPES:
            raise ValueError(f"reply arrays must be one of {DTYPES}, not {a.dtype.str}")
    header = dict(header, arrays=[{"dtype": a.dtype.str, "shape": list(a.shape)} for a in arrays])
    js = json.dumps(header, allow_nan=True).encode()
    raw = b"".join(a.tobytes() for a in arrays)
    return struct.pack(">II", len(js), len(raw)) + js + raw


def reply_sizes(head: bytes, max_raw: int) -> tuple[int, int]:
    n_js, n_raw = struct.unpack(">II", head)
    if n_js > MAX_JSON or n_raw > max_raw:
        raise FrameError(f"a reply of {n_js} + {n_raw} bytes, over the bounds ({MAX_JSON}, {max_raw})")
    return n_js, n_raw


def decode_reply(js: bytes, raw: bytes) -> tuple[dict, list[np.ndarray]]:
    try:
        header = json.loads(js)
    except ValueError as e:
        raise FrameError(f"a reply that is not JSON ({e})") from None
    if not isinstance(header, dict) or not isinstance(header.get("arrays", []), list):
        raise FrameError("a reply that is not a JSON object with a list of arrays")
    arrays, pos = [], 0
    for spec in header.get("arrays", []):
        if not isinstance(spec, dict) or spec.get("dtype") not in DTYPES or not isinstance(spec.get("shape"), list) \
                or not all(isinstance(d, int) and 0 <= d < (1 << 31) for d in spec["shape"]):
            raise FrameError(f"a reply array described as {str(spec)[:100]}")
        dt = np.dtype(spec["dtype"])
        n = int(np.prod(spec["shape"], dtype=np.int64)) * dt.itemsize
        if pos + n > len(raw):
            raise FrameError("a reply whose arrays are longer than its data")
        arrays.append(np.frombuffer(raw, dtype=dt, count=n // dt.itemsize, offset=pos).reshape(spec["shape"]).copy())
        pos += n
    if pos != len(raw):
        raise FrameError("a reply with data its arrays do not account for")
    return header, arrays
