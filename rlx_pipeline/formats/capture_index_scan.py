"""The exchange-time bounds of a frame of capture lines in one numba pass (the capture index's per-line cost).

For each line's ``data`` the same value as :func:`rlx_pipeline.formats.capture_file.event_ms`: the digits after the
first ``"E":`` lying in the first 80 bytes, else after the first such ``"T":``; none when neither key is there or
no digit follows it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_KEY_E = np.frombuffer(b'"E":', np.uint8)
_KEY_T = np.frombuffer(b'"T":', np.uint8)
_WINDOW = 80
_MAX_DIGITS = 18  # more: the line is read in Python (an int beyond int64)


@njit(cache=True)
def _find(buf, start: int, end: int, key) -> int:
    last = min(end, start + _WINDOW) - len(key)
    for i in range(start, last + 1):
        if buf[i] == key[0] and buf[i + 1] == key[1] and buf[i + 2] == key[2] and buf[i + 3] == key[3]:
            return i
    return -1


@njit(cache=True)
def _digits(buf, p: int, end: int) -> tuple[int, int]:
    """(number of digits at ``p``, their value if at most ``_MAX_DIGITS``)."""
    v = 0
    q = p
    while q < end and 48 <= buf[q] <= 57:
        if q - p < _MAX_DIGITS:
            v = v * 10 + (buf[q] - 48)
        q += 1
    return q - p, v


@njit(cache=True)
def event_bounds(buf, data_start, data_end) -> tuple[int, int, int, bool]:
    """(count of lines with an event time, min, max, whether some value needs more than int64)."""
    n = 0
    lo = 0
    hi = 0
    big = False
    for k in range(len(data_start)):
        s, e = data_start[k], data_end[k]
        found = False
        v = 0
        for key in (_KEY_E, _KEY_T):
            i = _find(buf, s, e, key)
            if i >= 0:
                nd, v = _digits(buf, i + 4, e)
                if nd > _MAX_DIGITS:
                    big = True
                if nd > 0:
                    found = True
                    break
        if found:
            if n == 0 or v < lo:
                lo = v
            if n == 0 or v > hi:
                hi = v
            n += 1
    return n, lo, hi, big
