"""A GGUF string array (a 262k-token vocabulary) split in one native pass instead of a Python loop.

In the file, the array is n records, each a little-endian u64 length then that many UTF-8 bytes:

    [len_0: u64][bytes_0 ...][len_1: u64][bytes_1 ...] ...

    i64 gguf_strings(const u8 *buf, i64 pos, i64 end, i64 n, i64 *starts, i64 *lens)
    void gguf_join(const u8 *buf, const i64 *starts, const i64 *lens, i64 n, u8 *out)

walks the records from `pos`, writing each one's byte offset and length, and returns how many
records fit before `end` (n when all do; the caller then reports the first that does not, as its
Python loop, `inference.gguf_file`'s string_array, the twin of this, always did). `split` then
has `gguf_join` copy the records' bytes into one buffer, each followed by a NUL, decodes it once
and splits the text at the NULs (else, if that is not valid UTF-8 or a record holds a NUL, each
record is decoded alone, with errors="replace" as the twin does). 262k Gemma 3 tokens: 0.15 s
in the loop, 0.05 s this way.
"""
from __future__ import annotations

import ctypes

import numpy as np

from . import compile as jc
from .cpu import detect

PROTO = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                         ctypes.c_void_p, ctypes.c_void_p)
JOIN_PROTO = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                              ctypes.c_void_p)

IR = """
define i64 @gguf_strings(ptr noalias %buf, i64 %pos0, i64 %end, i64 %n, ptr noalias %starts,
                         ptr noalias %lens) nounwind {
entry:
  %none = icmp sle i64 %n, 0
  br i1 %none, label %done, label %loop
loop:
  %i = phi i64 [0, %entry], [%i2, %ok]
  %pos = phi i64 [%pos0, %entry], [%next, %ok]
  %room = sub i64 %end, %pos
  %short = icmp ult i64 %room, 8
  br i1 %short, label %bad, label %len
len:
  %lp = getelementptr i8, ptr %buf, i64 %pos
  %ln = load i64, ptr %lp, align 1
  %body = add i64 %pos, 8
  %left = sub i64 %end, %body
  %over = icmp ugt i64 %ln, %left
  br i1 %over, label %bad, label %ok
ok:
  %sp = getelementptr i64, ptr %starts, i64 %i
  store i64 %body, ptr %sp, align 8
  %np = getelementptr i64, ptr %lens, i64 %i
  store i64 %ln, ptr %np, align 8
  %next = add i64 %body, %ln
  %i2 = add i64 %i, 1
  %more = icmp slt i64 %i2, %n
  br i1 %more, label %loop, label %done
bad:
  ret i64 %i
done:
  ret i64 %n
}

define void @gguf_join(ptr noalias %buf, ptr noalias %starts, ptr noalias %lens, i64 %n,
                       ptr noalias %out) nounwind {
entry:
  %none = icmp sle i64 %n, 0
  br i1 %none, label %done, label %loop
loop:
  %i = phi i64 [0, %entry], [%i2, %loop]
  %at = phi i64 [0, %entry], [%at2, %loop]
  %sp = getelementptr i64, ptr %starts, i64 %i
  %start = load i64, ptr %sp, align 8
  %np = getelementptr i64, ptr %lens, i64 %i
  %ln = load i64, ptr %np, align 8
  %src = getelementptr i8, ptr %buf, i64 %start
  %dst = getelementptr i8, ptr %out, i64 %at
  call void @llvm.memcpy.p0.p0.i64(ptr %dst, ptr %src, i64 %ln, i1 false)
  %sep = getelementptr i8, ptr %dst, i64 %ln
  store i8 0, ptr %sep, align 1
  %end = add i64 %at, %ln
  %at2 = add i64 %end, 1
  %i2 = add i64 %i, 1
  %more = icmp slt i64 %i2, %n
  br i1 %more, label %loop, label %done
done:
  ret void
}

declare void @llvm.memcpy.p0.p0.i64(ptr noalias, ptr noalias, i64, i1)
"""


def _kernels() -> dict:
    cpu = detect()
    return jc.kernel(("gguf_strings",), lambda: IR, {"gguf_strings": PROTO, "gguf_join": JOIN_PROTO}, cpu)


def records(buf: np.ndarray, pos: int, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """buf: the file's bytes (uint8). -> (starts, lens, count): the first `count` records' byte
    offsets and lengths (count < n: record `count` runs past the end of buf)."""
    starts, lens = np.empty(n, np.int64), np.empty(n, np.int64)
    count = _kernels()["gguf_strings"](buf.ctypes.data, pos, buf.size, n, starts.ctypes.data, lens.ctypes.data)
    return starts, lens, int(count)


def split(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> list[str]:
    """The records' texts (UTF-8; invalid bytes become U+FFFD, record by record)."""
    n = starts.size
    joined = np.empty(int(lens.sum()) + n, np.uint8)               # each record, then a NUL
    _kernels()["gguf_join"](buf.ctypes.data, starts.ctypes.data, lens.ctypes.data, n, joined.ctypes.data)
    raw = joined.tobytes()
    try:
        parts = raw.decode("utf-8").split("\0")
    except UnicodeDecodeError:
        parts = []
    # valid UTF-8 with exactly n NULs (no record holds one): every record is valid alone, since
    # no character spans an ASCII byte
    if len(parts) == n + 1:
        parts.pop()
        return parts
    ends = np.cumsum(lens + 1) - 1
    return [raw[a:b].decode("utf-8", errors="replace") for a, b in zip((ends - lens).tolist(), ends.tolist())]
