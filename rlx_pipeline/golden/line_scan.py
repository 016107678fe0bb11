"""One pass over a batch of capture bytes (numba): lines, the capture envelope, and the hot message kinds decoded
straight to integers and fixed point, with no Python object per line or level.

The scanner is a strict reader of the exact subset of JSON Binance sends for trade, aggTrade, bookTicker and depth
diffs. It accepts a line only when its result is certainly the per-line parser's
(:func:`rlx_pipeline.golden.parse.parse_line`: ``orjson.loads`` then the fields): the envelope as
:func:`rlx_pipeline.formats.capture_file.split_line` reads it with a plain decimal ``capture_ns``; the data one JSON object
of ASCII text; each field the per-line parser reads present once, of its JSON type (integers without fraction or
exponent, prices and sizes as canonical ``digits[.digits]`` strings, ``m`` a boolean, depth levels as
``[price, size]`` pairs, bids before asks); other fields a string, a number or a literal. Anything else (bad JSON, a
duplicate or missing field, a float or a string where an integer belongs, ``null``, an escape, nested values under
other keys, non-ASCII bytes, an integer beyond int64) is marked for the per-line parser, which stays the
reference. Lines are cut as ``bytes.splitlines`` cuts each frame (``\\n``, ``\\r``, ``\\r\\n``; never across frames).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from numba import njit

from rlx_pipeline import fixed_point
from rlx_pipeline.formats.capture_file import EVENT_STREAM

# line status
EMPTY, HOT, SLOW, OTHER = 0, 1, 2, 3  # OTHER: a capture line of another symbol (nothing to do)
# hot groups: the stream table's codes for the symbol's trade, aggTrade, bookTicker and depth diff streams
TRADE, AGG_TRADE, BOOK_TICKER, DEPTH = 0, 1, 2, 3
_SLOW_STREAM, _OTHER_STREAM = 4, 5  # the per-line parser's streams; another symbol's
MAX_STREAMS = 256  # distinct streams per batch the table holds; lines of more go to the per-line parser

# field slots: E, T, i1, d0, d1, m, i2, i3, d2, d3, bids, asks
_E, _T, _I1, _D0, _D1, _M, _I2, _I3, _D2, _D3, _BIDS, _ASKS = range(12)


def _mask(*slots: int) -> int:
    return sum(1 << slot for slot in slots)


# per group, the slot of each field the per-line parser reads (its name in the frame)
_FIELDS = (
    {"E": _E, "T": _T, "t": _I1, "p": _D0, "q": _D1, "m": _M},  # trade
    {"E": _E, "T": _T, "a": _I1, "f": _I2, "l": _I3, "p": _D0, "q": _D1, "m": _M},  # aggTrade
    {"E": _E, "T": _T, "u": _I1, "b": _D0, "B": _D1, "a": _D2, "A": _D3},  # bookTicker
    {"E": _E, "U": _I1, "u": _I2, "pu": _I3, "b": _BIDS, "a": _ASKS},  # depth
)
_NEVER_SET = 1 << 12  # a slot no field fills: a group that requires it is never hot


def field_masks(frames: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the slots a venue's frames always carry and those they never carry (``Venue.frames``: kind ->
    ``FrameFields``), for :func:`scan`; a kind the venue does not serve goes to the per-line parser, which names
    the frame that is not the venue's. Fields no slot holds are the per-line parser's to check."""
    groups = ("trade", "aggTrade", "bookTicker", "depth")  # by code: TRADE, AGG_TRADE, BOOK_TICKER, DEPTH
    required, absent = np.zeros(len(groups), np.int64), np.zeros(len(groups), np.int64)
    for code, (group, slots) in enumerate(zip(groups, _FIELDS, strict=True)):
        spec = frames.get(group)
        if spec is None:
            required[code] = _NEVER_SET
            continue
        required[code] = _mask(*(slots[f] for f in spec.required if f in slots))
        absent[code] = _mask(*(slots[f] for f in spec.absent if f in slots))
    return required, absent


_PREFIX = np.frombuffer(b'{"capture_ns":', dtype=np.uint8)
_STREAM_KEY = np.frombuffer(b',"stream":"', dtype=np.uint8)
_DATA_KEY = np.frombuffer(b',"data":', dtype=np.uint8)
_EVENT = np.frombuffer(EVENT_STREAM.encode(), dtype=np.uint8)
_SNAPSHOT = np.frombuffer(b"depthSnapshot", dtype=np.uint8)
_TRUE = np.frombuffer(b"true", dtype=np.uint8)
_FALSE = np.frombuffer(b"false", dtype=np.uint8)
_NULL = np.frombuffer(b"null", dtype=np.uint8)
_KINDS = [np.frombuffer(k.encode(), dtype=np.uint8) for k in ("trade", "aggTrade", "bookTicker")]
_TRADE_KIND, _AGG_KIND, _TICKER_KIND = _KINDS
_DEPTH_KIND = np.frombuffer(b"depth", dtype=np.uint8)
_UNIT, _SCALE = fixed_point.UNIT, fixed_point.SCALE
_MAX_MS = (2**63 - 1) // 1_000_000  # event times in ms whose ns fit int64


# The scanner's helpers: inlined into the scan by LLVM (``forceinline``: numba compiles each function apart and
# calls it), and compiled without reference counting (``_nrt=False``: they allocate nothing, and the buffer's
# atomic incref/decref around every call of a helper took a quarter of the scan's time).
_helper = njit(cache=True, forceinline=True, _nrt=False)


@_helper
def _is_ws(c: int) -> bool:
    return c == 32 or c == 9 or c == 10 or c == 13


@_helper
def _ws(buf, p: int, end: int) -> int:
    while p < end and _is_ws(buf[p]):
        p += 1
    return p


@_helper
def _at(buf, p: int, end: int, lit) -> bool:
    if p + len(lit) > end:
        return False
    for k in range(len(lit)):  # noqa: SIM110 - numba: no generators
        if buf[p + k] != lit[k]:
            return False
    return True


@_helper
def _same(buf, a0: int, a1: int, b0: int, b1: int) -> bool:
    if a1 - a0 != b1 - b0:
        return False
    for k in range(a1 - a0):  # noqa: SIM110 - numba: no generators
        if buf[a0 + k] != buf[b0 + k]:
            return False
    return True


@_helper
def _int(buf, p: int, end: int, out, k: int) -> int:
    """A JSON integer (no fraction, no exponent, at most 18 digits) into ``out[k]``; the position after it or -1."""
    neg = p < end and buf[p] == 45
    if neg:
        p += 1
    q = p
    v = 0
    while q < end and 48 <= buf[q] <= 57:
        v = v * 10 + (buf[q] - 48)
        q += 1
    n = q - p
    if n == 0 or n > 18 or (n > 1 and buf[p] == 48):
        return -1
    if q < end and (buf[q] == 46 or buf[q] == 101 or buf[q] == 69):
        return -1  # a fraction or an exponent: a float
    out[k] = -v if neg else v
    return q


@_helper
def _eight_digits(buf, q: int) -> bool:
    bad = False
    for k in range(8):
        c = buf[q + k]
        bad |= (c < 48) | (c > 57)
    return not bad


@_helper
def _eight(buf, q: int) -> int:
    """Eight digits as an integer: four independent pairs (a chain of eight multiply-adds waits on each one)."""
    a = (buf[q] - 48) * 10 + (buf[q + 1] - 48)
    b = (buf[q + 2] - 48) * 10 + (buf[q + 3] - 48)
    c = (buf[q + 4] - 48) * 10 + (buf[q + 5] - 48)
    d = (buf[q + 6] - 48) * 10 + (buf[q + 7] - 48)
    return (a * 100 + b) * 10_000 + c * 100 + d


@_helper
def _decimal(buf, p: int, end: int) -> tuple[int, int]:
    """A quoted canonical decimal ``"digits[.digits]"`` (1-10 whole digits, fraction digits past the 8th all
    zeros) as fixed point; (position after the closing quote or -1, value)."""
    if p >= end or buf[p] != 34:
        return -1, 0
    p += 1
    whole = 0
    q = p
    while q < end and 48 <= buf[q] <= 57:
        whole = whole * 10 + (buf[q] - 48)
        q += 1
    if q == p or q - p > 10:
        return -1, 0
    frac = 0
    if q < end and buf[q] == 46:
        q += 1
        if _SCALE == 8 and q + 8 < end and buf[q + 8] == 34 and _eight_digits(buf, q):
            return q + 9, whole * _UNIT + _eight(buf, q)  # Binance's form: exactly eight fraction digits
        k = 0
        while q < end and 48 <= buf[q] <= 57:
            if k < _SCALE:
                frac = frac * 10 + (buf[q] - 48)
            elif buf[q] != 48:
                return -1, 0
            k += 1
            q += 1
        while k < _SCALE:
            frac *= 10
            k += 1
    if q >= end or buf[q] != 34:
        return -1, 0
    return q + 1, whole * _UNIT + frac


@_helper
def _skip(buf, p: int, end: int) -> int:
    """Another field's value: a plain string, a JSON number or a literal; -1 for anything else."""
    if p >= end:
        return -1
    c = buf[p]
    if c == 34:
        p += 1
        while p < end:
            c = buf[p]
            if c == 34:
                return p + 1
            if c == 92 or c < 32 or c >= 128:
                return -1
            p += 1
        return -1
    if c == 116:
        return p + 4 if _at(buf, p, end, _TRUE) else -1
    if c == 102:
        return p + 5 if _at(buf, p, end, _FALSE) else -1
    if c == 110:
        return p + 4 if _at(buf, p, end, _NULL) else -1
    # -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    if c == 45:
        p += 1
    if p >= end or not 48 <= buf[p] <= 57:
        return -1
    if buf[p] == 48:
        p += 1
    else:
        while p < end and 48 <= buf[p] <= 57:
            p += 1
    if p < end and buf[p] == 46:
        p += 1
        q = p
        while p < end and 48 <= buf[p] <= 57:
            p += 1
        if p == q:
            return -1
    if p < end and (buf[p] == 101 or buf[p] == 69):
        p += 1
        if p < end and (buf[p] == 43 or buf[p] == 45):
            p += 1
        q = p
        while p < end and 48 <= buf[p] <= 57:
            p += 1
        if p == q:
            return -1
    return p


@_helper
def _slot(group: int, c0: int, c1: int, n: int) -> int:
    """The field slot of key ``c0[c1]`` (``n`` bytes) in ``group``; -1: a field the parser does not read."""
    if n == 2:
        return _I3 if group == DEPTH and c0 == 112 and c1 == 117 else -1  # depth "pu"
    if n != 1:
        return -1
    if c0 == 69:  # E
        return _E
    if c0 == 84:  # T
        return _T if group != DEPTH else -1
    if group == TRADE or group == AGG_TRADE:  # noqa: SIM109 - plain compares in numba
        if c0 == 112:
            return _D0  # p
        if c0 == 113:
            return _D1  # q
        if c0 == 109:
            return _M  # m
        if group == TRADE:
            return _I1 if c0 == 116 else -1  # t
        if c0 == 97:
            return _I1  # a
        if c0 == 102:
            return _I2  # f
        return _I3 if c0 == 108 else -1  # l
    if group == BOOK_TICKER:
        if c0 == 117:
            return _I1  # u
        if c0 == 98:
            return _D0  # b
        if c0 == 66:
            return _D1  # B
        if c0 == 97:
            return _D2  # a
        return _D3 if c0 == 65 else -1  # A
    if c0 == 85:
        return _I1  # U
    if c0 == 117:
        return _I2  # u
    if c0 == 98:
        return _BIDS  # b
    return _ASKS if c0 == 97 else -1  # a


@_helper
def _decimal_then(buf, p: int, end: int, sep: int) -> tuple[int, int]:
    """A quoted decimal, then ``sep``: (position after ``sep`` and its whitespace or -1, the value)."""
    p, value = _decimal(buf, p, end)
    if p < 0:
        return -1, 0
    p = _ws(buf, p, end)
    if p >= end or buf[p] != sep:
        return -1, 0
    return _ws(buf, p + 1, end), value


@_helper
def _levels(buf, p: int, end: int, lv_price, lv_size, n_lv: int) -> tuple[int, int]:
    """``[[price, size], ...]`` appended at ``n_lv``; (position after it or -1, levels read)."""
    if p >= end or buf[p] != 91:
        return -1, 0
    p = _ws(buf, p + 1, end)
    n = 0
    if p < end and buf[p] == 93:
        return p + 1, 0
    while True:
        if p >= end or buf[p] != 91:
            return -1, 0
        p, price = _decimal_then(buf, _ws(buf, p + 1, end), end, 44)  # price,
        if p < 0:
            return -1, 0
        p, size = _decimal_then(buf, p, end, 93)  # size]
        if p < 0:
            return -1, 0
        lv_price[n_lv + n] = price
        lv_size[n_lv + n] = size
        n += 1
        if p < end and buf[p] == 44:
            p = _ws(buf, p + 1, end)
            continue
        if p < end and buf[p] == 93:
            return p + 1, n
        return -1, 0


@_helper
def _data(buf, p: int, end: int, group: int, ints, decs, lv_price, lv_size, n_lv: int):
    """The data object of a hot line; (ok, fields seen mask, bids, asks, m). ``ints``/``decs`` get the values."""
    seen = 0
    n_b = 0
    n_a = 0
    m = False
    p = _ws(buf, p, end)
    if p >= end or buf[p] != 123:
        return False, 0, 0, 0, m
    p = _ws(buf, p + 1, end)
    if p < end and buf[p] == 125:
        p += 1
    else:
        while True:
            if p >= end or buf[p] != 34:
                return False, 0, 0, 0, m
            k0 = p + 1
            k1 = k0
            while k1 < end and buf[k1] != 34:
                c = buf[k1]
                if c == 92 or c < 32 or c >= 128:
                    return False, 0, 0, 0, m
                k1 += 1
            if k1 >= end:
                return False, 0, 0, 0, m
            p = _ws(buf, k1 + 1, end)
            if p >= end or buf[p] != 58:
                return False, 0, 0, 0, m
            p = _ws(buf, p + 1, end)
            n = k1 - k0
            slot = _slot(group, buf[k0] if n > 0 else 0, buf[k0 + 1] if n > 1 else 0, n)
            if slot < 0:
                p = _skip(buf, p, end)
            else:
                if seen & (1 << slot):
                    return False, 0, 0, 0, m  # a duplicate: orjson keeps the last one, leave it to the parser
                seen |= 1 << slot
                if slot == _E or slot == _T or slot == _I1 or slot == _I2 or slot == _I3:  # noqa: SIM109
                    p = _int(buf, p, end, ints, slot)
                    if p >= 0 and slot <= _T and not -_MAX_MS <= ints[slot] <= _MAX_MS:
                        p = -1
                elif slot == _M:
                    if _at(buf, p, end, _TRUE):
                        m, p = True, p + 4
                    elif _at(buf, p, end, _FALSE):
                        m, p = False, p + 5
                    else:
                        p = -1
                elif slot == _BIDS:
                    if seen & (1 << _ASKS):
                        return False, 0, 0, 0, m  # asks before bids: rows go bids first
                    p, n_b = _levels(buf, p, end, lv_price, lv_size, n_lv)
                elif slot == _ASKS:
                    p, n_a = _levels(buf, p, end, lv_price, lv_size, n_lv + n_b)
                else:
                    p, value = _decimal(buf, p, end)
                    decs[slot] = value
            if p < 0:
                return False, 0, 0, 0, m
            p = _ws(buf, p, end)
            if p < end and buf[p] == 44:
                p = _ws(buf, p + 1, end)
                continue
            if p < end and buf[p] == 125:
                p += 1
                break
            return False, 0, 0, 0, m
    if _ws(buf, p, end) != end:
        return False, 0, 0, 0, m
    return True, seen, n_b, n_a, m


@njit(cache=True)
def _classify(buf, s0: int, s1: int, sym) -> int:
    """A stream name's table code: a hot group of the symbol, another symbol's, or the per-line parser's."""
    for k in range(s0, s1):
        if buf[k] >= 128:
            return _SLOW_STREAM
    if _same_lit(buf, s0, s1, _EVENT):
        return _SLOW_STREAM
    at = s0
    while at < s1 and buf[at] != 64:
        at += 1
    if not _same_lit(buf, s0, at, sym):
        return _OTHER_STREAM
    if at == s1:
        return _SLOW_STREAM
    k0 = at + 1
    if _same_lit(buf, k0, s1, _TRADE_KIND):
        return TRADE
    if _same_lit(buf, k0, s1, _AGG_KIND):
        return AGG_TRADE
    if _same_lit(buf, k0, s1, _TICKER_KIND):
        return BOOK_TICKER
    if _at(buf, k0, s1, _DEPTH_KIND) and not _same_lit(buf, k0, s1, _SNAPSHOT):
        return DEPTH
    return _SLOW_STREAM


@_helper
def _same_lit(buf, a0: int, a1: int, lit) -> bool:
    return a1 - a0 == len(lit) and _at(buf, a0, a1, lit)


def terminators(buf: bytes, arr: np.ndarray) -> np.ndarray:
    """Positions of the line-ending bytes (``\\n``, ``\\r``) of ``buf`` (``arr`` its uint8 view)."""
    return line_ends(arr, b"\r" in buf)


def line_ends(arr: np.ndarray, cr: bool) -> np.ndarray:
    """Positions of the line-ending bytes of ``arr`` (uint8): ``\\n``, and ``\\r`` when it holds any (``cr``),
    found by numpy (a vectorized pass, several times faster than a byte loop)."""
    if cr:
        return np.flatnonzero((arr == 10) | (arr == 13))
    return np.flatnonzero(arr == 10)


class Scan(NamedTuple):
    """What :func:`scan` returns, by name: per line (first ``n`` rows of ``starts``, ``ends``, ``status``), then
    per hot line in line order (``line``: its index in the batch), then the levels and the stream table."""

    n: int
    starts: np.ndarray
    ends: np.ndarray
    status: np.ndarray  # EMPTY, HOT, SLOW, OTHER
    line: np.ndarray
    capture_ns: np.ndarray
    stream: np.ndarray  # the line's stream id (a row of the stream table)
    group: np.ndarray  # TRADE, AGG_TRADE, BOOK_TICKER, DEPTH
    ints: np.ndarray  # rows E, T, i1, i2, i3
    decs: np.ndarray  # rows d0, d1, d2, d3 (fixed point)
    seen: np.ndarray  # the fields the line has (slot bits: :func:`has`)
    m: np.ndarray
    lv_first: np.ndarray  # its first level in ``lv_price``/``lv_size``
    n_bids: np.ndarray
    n_asks: np.ndarray
    lv_price: np.ndarray
    lv_size: np.ndarray
    st_start: np.ndarray  # the stream table: a stream name's bytes in the batch, its group (or another code)
    st_end: np.ndarray
    st_code: np.ndarray


@njit(cache=True, nogil=True)  # runs in the golden reader thread, beside the parsing thread
def scan(buf, frame_ends, terms, sym, required, absent):
    """Lines of ``buf`` (frames ending at ``frame_ends``, line-ending bytes at ``terms``: :func:`terminators`) for
    symbol ``sym`` (bytes as uint8); a line is hot only with every slot of ``required[group]`` and none of
    ``absent[group]`` (:func:`field_masks`: its venue's fields).

    Returns the fields of :class:`Scan`, in its order: ``n`` (the number of lines), per line (first ``n`` rows)
    start, end and status; then one row per hot line, in line order: its line, capture_ns, stream id, group, the
    integer fields (``ints``, a row per field: E, T, i1, i2, i3), the decimals (``decs``: d0..d3, fixed point), the
    mask of fields seen (:func:`has`), ``m``, the first level and the numbers of bids and asks; then the levels
    (price, size) and the stream table (start and end of one line's stream name in ``buf``, code). A field the
    line does not have (its bit not in ``seen``) holds any value. Fields by group: trade t=i1 p=d0 q=d1, aggTrade
    a=i1 f=i2 l=i3 p=d0 q=d1, bookTicker u=i1 b=d0 B=d1 a=d2 A=d3, depth U=i1 u=i2 pu=i3.
    """
    cap = len(terms) + len(frame_ends) + 1
    starts = np.empty(cap, np.int64)
    ends = np.empty(cap, np.int64)
    status = np.zeros(cap, np.int8)
    # hot lines' columns, written in place (no per-line row copied into a table of every line)
    hot_line = np.empty(cap, np.int64)
    cap_ns = np.empty(cap, np.int64)
    stream = np.empty(cap, np.int32)
    group = np.empty(cap, np.int8)
    ints = np.empty((5, cap), np.int64)
    decs = np.empty((4, cap), np.int64)
    seen = np.empty(cap, np.int64)
    flags = np.empty(cap, np.bool_)  # m
    lv_first = np.empty(cap, np.int64)
    n_bids = np.empty(cap, np.int32)
    n_asks = np.empty(cap, np.int32)
    lv_cap = len(buf) // 9 + 1  # a level ``["1","1"]`` takes at least 9 bytes
    lv_price = np.empty(lv_cap, np.int64)
    lv_size = np.empty(lv_cap, np.int64)
    st_start = np.zeros(MAX_STREAMS, np.int64)
    st_end = np.zeros(MAX_STREAMS, np.int64)
    st_code = np.zeros(MAX_STREAMS, np.int8)
    n_st = 0
    n = 0
    h = 0
    n_lv = 0
    row_i = np.zeros(10, np.int64)  # by slot
    row_d = np.zeros(10, np.int64)
    f0 = 0
    ti = 0
    for f_end in frame_ends:
        p = f0
        while p < f_end:
            # one line: up to \n, \r or \r\n (bytes.splitlines), or the frame's end
            e = f_end
            if ti < len(terms) and terms[ti] < f_end:
                e = terms[ti]
                ti += 1
            starts[n] = p
            ends[n] = e
            nxt = e + 1
            if e < f_end and buf[e] == 13 and nxt < f_end and buf[nxt] == 10:
                nxt += 1
                ti += 1
            line = n
            n += 1
            p = nxt
            if e == starts[line]:
                continue  # EMPTY
            status[line] = SLOW
            s = starts[line]
            if not _at(buf, s, e, _PREFIX):
                continue
            q = s + len(_PREFIX)
            v = 0
            d0 = q
            while q < e and 48 <= buf[q] <= 57:
                v = v * 10 + (buf[q] - 48)
                q += 1
            if q == d0 or q - d0 > 19 or (q - d0 == 19 and buf[d0] > 56) or not _at(buf, q, e, _STREAM_KEY):
                continue
            s0 = q + len(_STREAM_KEY)
            s1 = s0
            while s1 < e and buf[s1] != 34:
                s1 += 1
            if s1 >= e or not _at(buf, s1 + 1, e, _DATA_KEY) or buf[e - 1] != 125:
                continue
            data0 = s1 + 1 + len(_DATA_KEY)
            data1 = e - 1
            if data0 > data1:
                continue
            sid = -1
            for k in range(n_st):
                if _same(buf, st_start[k], st_end[k], s0, s1):
                    sid = k
                    break
            if sid < 0:
                if n_st == MAX_STREAMS:
                    continue
                sid = n_st
                st_start[sid], st_end[sid], st_code[sid] = s0, s1, _classify(buf, s0, s1, sym)
                n_st += 1
            code = st_code[sid]
            if code == _SLOW_STREAM:
                continue
            if code == _OTHER_STREAM:
                status[line] = OTHER
                continue
            ok, mask, nb, na, m = _data(buf, data0, data1, code, row_i, row_d, lv_price, lv_size, n_lv)
            if not ok or (mask & required[code]) != required[code] or (mask & absent[code]) != 0:
                continue
            status[line] = HOT
            hot_line[h] = line
            cap_ns[h] = v
            stream[h] = sid
            group[h] = code
            ints[0, h], ints[1, h], ints[2, h], ints[3, h], ints[4, h] = (
                row_i[_E],
                row_i[_T],
                row_i[_I1],
                row_i[_I2],
                row_i[_I3],
            )
            decs[0, h], decs[1, h], decs[2, h], decs[3, h] = row_d[_D0], row_d[_D1], row_d[_D2], row_d[_D3]
            seen[h] = mask
            flags[h] = m
            lv_first[h] = n_lv
            n_bids[h] = nb
            n_asks[h] = na
            n_lv += nb + na
            h += 1
        f0 = f_end
    return (
        n,
        starts,
        ends,
        status,
        hot_line[:h],
        cap_ns[:h],
        stream[:h],
        group[:h],
        ints[:, :h],
        decs[:, :h],
        seen[:h],
        flags[:h],
        lv_first[:h],
        n_bids[:h],
        n_asks[:h],
        lv_price[:n_lv],
        lv_size[:n_lv],
        st_start[:n_st],
        st_end[:n_st],
        st_code[:n_st],
    )


def has(seen: np.ndarray, slot: int) -> np.ndarray:
    """Which lines of a ``seen`` mask column have the field of ``slot``."""
    return (seen & (1 << slot)) != 0


SLOTS = {"E": _E, "T": _T, "i1": _I1, "i2": _I2, "i3": _I3, "d0": _D0, "d1": _D1, "d2": _D2, "d3": _D3}
