"""More matvec kernels (same signature and row loop as matvec.py): BF16, IQ4_NL, IQ4_XS, Q3_K, Q2_K.

Weight layouts (bytes):
  BF16     2 per value: the top 16 bits of a float32. x (float32) is rounded to BF16 in the
           kernel (nearest even, as llama.cpp's vec_dot_type BF16 and ops.round_activations).
  IQ4_NL  18: f16 d, u8 qs[16]; 32 values w_j = d*K[qs[j]&15], w_{16+j} = d*K[qs[j]>>4]
           (K = KVALUES, a non-linear 4-bit codebook). Activations Q8_0.
  IQ4_XS 136: f16 d, u16 scales_h, u8 scales_l[4], u8 qs[128]; 8 sub-blocks of 32 with 6-bit
           ls_j = (scales_l[j/2] >> 4*(j%2)) & 15 | ((scales_h >> 2j) & 3) << 4,
           w = d*(ls_j - 32)*K[q] with sub-block j's nibbles in qs[16j .. 16j+15] as in IQ4_NL.
           Activations Q8_K.
  Q3_K, Q2_K: 16 sub-blocks of 16 per 256, Q8_K activations; layouts at _q3_K_block / _q2_K_block.
Per block the codebook lookup is one vpshufb (AVX2) or a select tree (portable), then the signed
byte dot product; scales are applied in float per (sub-)block as the other kernels do.
"""
from __future__ import annotations

from gguf import GGMLQuantizationType as T

from .emit import Fn, const_vec, mask, vec

KVALUES = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)
V8F, V8I, V16F, V16I = vec(8, "float"), vec(8, "i32"), vec(16, "float"), vec(16, "i32")
V16B, V32B, V64B = vec(16, "i8"), vec(32, "i8"), vec(64, "i8")


def codebook(fn: Fn, idx: str, bias: int = 0) -> str:
    """<32 x i8> nibbles 0..15 -> <32 x i8> K[nibble] + bias (bias 128: as unsigned bytes)."""
    vals = tuple((k + bias + 128) % 256 - 128 for k in KVALUES)
    if fn.cpu.has_avx2:
        table = const_vec("i8", vals + vals)   # vpshufb looks up within each 16-byte lane
        return fn.call(V32B, "llvm.x86.avx2.pshuf.b", [f"{V32B} {table}", f"{V32B} {idx}"], f"{V32B}, {V32B}")
    level = [f"splat (i8 {k})" for k in vals]
    for bit in range(4):   # pick between pairs by bit 0, then bit 1, ...
        b = fn.v(f"and {V32B} {idx}, splat (i8 {1 << bit})")
        on = fn.v(f"icmp ne {V32B} {b}, zeroinitializer")
        level = [fn.v(f"select <32 x i1> {on}, {V32B} {level[2 * k + 1]}, {V32B} {level[2 * k]}")
                 for k in range(len(level) // 2)]
    return level[0]


def code_dot(fn: Fn, idx: str, x: str, nbytes: int) -> str:
    """Integer lanes of K[idx] . x (nbytes, 4 products per i32 lane). With VNNI or the portable
    path (no 16-bit saturation): (K + 128) . x - 128 . x, two plain dots; with AVX2's saturating
    vpmaddubsw: the sign trick of dot_s8s8."""
    parts = [idx] if nbytes == 32 else [fn.v(f"shufflevector {V64B} {idx}, {V64B} poison, {mask(range(32 * h, 32 * h + 32))}")
                                         for h in range(2)]
    if fn.cpu.dot_path == "avx2":
        q = [codebook(fn, p) for p in parts]
        return fn.dot_s8s8("zeroinitializer", q[0] if nbytes == 32 else fn.concat("i8", 32, *q), x, nbytes)
    q = [codebook(fn, p, 128) for p in parts]
    p = fn.dot_u8s8("zeroinitializer", q[0] if nbytes == 32 else fn.concat("i8", 32, *q), x, nbytes)
    vi = vec(nbytes // 4, "i32")
    return fn.v(f"sub {vi} {p}, {fn.dot_u8s8('zeroinitializer', 'splat (i8 -128)', x, nbytes)}")


def _nibbles(fn: Fn, ptr: str) -> str:
    """16 bytes at ptr -> <32 x i8> low nibbles then high nibbles."""
    qs = fn.load(V16B, ptr)
    return fn.concat("i8", 16, fn.v(f"and {V16B} {qs}, splat (i8 15)"), fn.v(f"lshr {V16B} {qs}, splat (i8 4)"))


# ----------------------------------------------------------------------------- BF16

def _round_bf16(fn: Fn, x: str, n: int) -> str:
    """<n x float> (or float) rounded to BF16 (nearest even), still as float."""
    it, ft = (vec(n, "i32"), vec(n, "float")) if n else ("i32", "float")
    c = (lambda k: f"splat (i32 {k})") if n else str
    u = fn.v(f"bitcast {ft} {x} to {it}")
    odd = fn.v(f"and {it} {fn.v(f'lshr {it} {u}, {c(16)}')}, {c(1)}")
    u = fn.v(f"add {it} {u}, {fn.v(f'add {it} {odd}, {c(0x7FFF)}')}")
    u = fn.v(f"and {it} {u}, {c(0xFFFF0000 - (1 << 32))}")
    return fn.v(f"bitcast {it} {u} to {ft}")


def _bf16_to_float(fn: Fn, h: str, n: int) -> str:
    it, ft = (vec(n, "i32"), vec(n, "float")) if n else ("i32", "float")
    src = vec(n, "i16") if n else "i16"
    u = fn.v(f"zext {src} {h} to {it}")
    sixteen = "splat (i32 16)" if n else "16"
    return fn.v(f"bitcast {it} {fn.v(f'shl {it} {u}, {sixteen}')} to {ft}")


def bf16_x(fn: Fn) -> str:
    """x rounded to BF16 once per call into a stack buffer of n floats (not once per row; 4n bytes
    of stack: 128 KB for 32768 columns, well inside the default 8 MB thread stacks)."""
    buf = fn.v("alloca float, i64 %n, align 64")
    nvec = fn.v("lshr i64 %n, 4")
    with fn.loop("0", nvec, stem="bx") as E:
        off = fn.v(f"shl i64 {E.i}, 6")
        v = _round_bf16(fn, fn.load(V16F, fn.gep("%xq", off), 4), 16)
        fn.store(V16F, v, fn.gep(buf, off), 64)
    with fn.loop(fn.v(f"shl i64 {nvec}, 4"), "%n", stem="bxt") as E:
        off = fn.v(f"shl i64 {E.i}, 2")
        fn.store("float", _round_bf16(fn, fn.load("float", fn.gep("%xq", off), 4), 0), fn.gep(buf, off), 4)
    return buf


def bf16_row(fn: Fn, wrow: str, xr: str) -> str:
    """w . xr (xr: x already rounded): 32 values per step into two <16 x float> FMA chains, then
    a scalar tail for any n."""
    from .matvec import prefetch

    nvec = fn.v("lshr i64 %n, 5")
    with fn.loop("0", nvec, stem="bv") as E:
        accs = [E.carry(V16F, "zeroinitializer") for _ in range(2)]
        i = fn.v(f"shl i64 {E.i}, 5")
        wp = fn.gep(wrow, fn.v(f"shl i64 {i}, 1"))
        prefetch(fn, wp, 64)
        a = _bf16_to_float(fn, fn.load(vec(32, "i16"), wp, 2), 32)
        b = fn.load(vec(32, "float"), fn.gep(xr, fn.v(f"shl i64 {i}, 2")), 4)
        for h in range(2):
            idx = mask(range(16 * h, 16 * h + 16))
            ah = fn.v(f"shufflevector <32 x float> {a}, <32 x float> poison, {idx}")
            bh = fn.v(f"shufflevector <32 x float> {b}, <32 x float> poison, {idx}")
            E.set(accs[h], fn.fmadd_v(16, ah, bh, accs[h]))
    total = fn.hsum_f(16, fn.v(f"fadd reassoc {V16F} {accs[0]}, {accs[1]}"))
    with fn.loop(fn.v(f"shl i64 {nvec}, 5"), "%n", stem="bt") as E:
        acc = E.carry("float", total)
        a = _bf16_to_float(fn, fn.load("i16", fn.gep(wrow, fn.v(f"shl i64 {E.i}, 1")), 2), 0)
        b = fn.load("float", fn.gep(xr, fn.v(f"shl i64 {E.i}, 2")), 4)
        E.set(acc, fn.v(f"fadd float {acc}, {fn.v(f'fmul float {a}, {b}')}"))
    return acc


# ----------------------------------------------------------------------------- IQ4_NL

def iq4_nl_row(fn: Fn, wrow: str, nb: str) -> str:
    """Q8_0 activations (34-byte blocks, then per block its f32 scale and i32 sum, quantize.py)."""
    from .matvec import prefetch

    aux = fn.gep("%xq", fn.v(f"mul i64 {nb}, 34"))
    with fn.loop("0", nb, stem="nl") as B:
        acc = B.carry(V8F, "zeroinitializer")
        wb = fn.gep(wrow, fn.v(f"mul i64 {B.i}, 18"))
        prefetch(fn, wb, 18)
        x = fn.load(V32B, fn.gep(fn.gep("%xq", fn.v(f"mul i64 {B.i}, 34")), "2"))
        dx = fn.load("float", fn.gep(aux, fn.v(f"shl i64 {B.i}, 3")), 4)
        lanes = fn.v(f"sitofp {V8I} {code_dot(fn, _nibbles(fn, fn.gep(wb, '2')), x, 32)} to {V8F}")
        d = fn.v(f"fmul float {fn.half_to_float(fn.load('i16', wb, 2))}, {dx}")
        B.set(acc, fn.fmadd_v(8, fn.splat(8, "float", d), lanes, acc))
    return fn.hsum_f(8, acc)


# ----------------------------------------------------------------------------- IQ4_XS

def _iq4_xs_block(fn: Fn, wb: str, xb: str, acc: str):
    dx = fn.load("float", xb)
    d = fn.v(f"fmul float {fn.half_to_float(fn.load('i16', wb, 2))}, {dx}")
    # ls_j for j = 0..7: low 4 bits from scales_l[j/2] (nibble j%2), high 2 from scales_h bits 2j
    sl = fn.v(f"zext <4 x i8> {fn.load('<4 x i8>', fn.gep(wb, '4'))} to <4 x i32>")
    sl = fn.v(f"shufflevector <4 x i32> {sl}, <4 x i32> poison, {mask([j // 2 for j in range(8)])}")
    sl = fn.v(f"lshr {V8I} {sl}, {const_vec('i32', [4 * (j % 2) for j in range(8)])}")
    sl = fn.v(f"and {V8I} {sl}, splat (i32 15)")
    sh = fn.v(f"zext i16 {fn.load('i16', fn.gep(wb, '2'))} to i32")
    sh = fn.v(f"lshr {V8I} {fn.splat(8, 'i32', sh)}, {const_vec('i32', [2 * j for j in range(8)])}")
    sh = fn.v(f"shl {V8I} {fn.v(f'and {V8I} {sh}, splat (i32 3)')}, splat (i32 4)")
    ls = fn.v(f"sub {V8I} {fn.v(f'or {V8I} {sl}, {sh}')}, splat (i32 32)")
    dsc = fn.v(f"fmul {V8F} {fn.v(f'sitofp {V8I} {ls} to {V8F}')}, {fn.splat(8, 'float', d)}")
    for c in range(4):   # sub-blocks 2c and 2c+1: 64 values, lanes 0-7 and 8-15 of the dot
        idx = fn.concat("i8", 32, *(_nibbles(fn, fn.gep(wb, str(8 + 32 * c + 16 * k))) for k in range(2)))
        x = fn.load(V64B, fn.gep(xb, str(4 + 64 * c)))
        pf = fn.v(f"sitofp {V16I} {code_dot(fn, idx, x, 64)} to {V16F}")
        s = fn.v(f"shufflevector {V8F} {dsc}, {V8F} poison, {mask([2 * c] * 8 + [2 * c + 1] * 8)}")
        acc = fn.fmadd_v(16, pf, s, acc)
    return acc, None, "0.0"


def iq4_xs_row(fn: Fn, wrow: str, nb: str) -> str:
    from .matvec import _superblocks

    return _superblocks(fn, wrow, 136, nb, _iq4_xs_block)


# ----------------------------------------------------------------------------- Q2_K, Q3_K

def _two_bit_chunk(fn: Fn, qs: str, p: int) -> str:
    """32 bytes qs -> <64 x i8>: (qs >> 4p) & 3, then (qs >> 4p+2) & 3 (elements 64p .. 64p+63 of the half)."""
    parts = []
    for k in (2 * p, 2 * p + 1):
        t = fn.v(f"lshr {V32B} {qs}, splat (i8 {2 * k})") if k else qs
        parts.append(fn.v(f"and {V32B} {t}, splat (i8 3)"))
    return fn.concat("i8", 32, *parts)


def _scaled_dots(fn: Fn, wb: str, xb: str, acc: str, dsc: str, qs_at: int, high=None) -> str:
    """acc += dsc[sub-block] * (q . x) over the 16 sub-blocks of 16, q 2-bit from qs (plus
    high(h, p) -> <64 x i8> bits to or in). Element 128h + 32k + l is bits 2k of qs[32h + l]."""
    for h in range(2):
        qs = fn.load(V32B, fn.gep(wb, str(qs_at + 32 * h)))
        for p in range(2):
            q = _two_bit_chunk(fn, qs, p)
            if high is not None:
                q = fn.v(f"or {V64B} {q}, {high(h, p)}")
            x = fn.load(V64B, fn.gep(xb, str(4 + 128 * h + 64 * p)))
            pf = fn.v(f"sitofp {V16I} {fn.dot_u8s8('zeroinitializer', q, x, 64)} to {V16F}")
            j = 8 * h + 4 * p   # lanes 4i..4i+3 hold sub-block j + i
            s = fn.v(f"shufflevector {V16F} {dsc}, {V16F} poison, {mask([j + i for i in range(4) for _ in range(4)])}")
            acc = fn.fmadd_v(16, pf, s, acc)
    return acc


def _bsums_dot(fn: Fn, xb: str, v: str) -> str:
    """sum_j v[j] * bsums[j] (<16 x i32> v) as float"""
    bs = fn.v(f"sext <16 x i16> {fn.load('<16 x i16>', fn.gep(xb, '260'))} to {V16I}")
    t = fn.call("i32", "llvm.vector.reduce.add.v16i32", [f"{V16I} {fn.v(f'mul {V16I} {v}, {bs}')}"], V16I)
    return fn.v(f"sitofp i32 {t} to float")


def _q2_K_block(fn: Fn, wb: str, xb: str, acc: str):
    """Q2_K 84 B: u8 scales[16] (low nibble scale, high nibble min), u8 qs[64], f16 d, f16 dmin;
    w = d*(sc_j & 15)*q - dmin*(sc_j >> 4) on sub-block j of 16."""
    dx = fn.load("float", xb)
    sc = fn.v(f"zext <16 x i8> {fn.load('<16 x i8>', wb)} to {V16I}")
    d = fn.v(f"fmul float {fn.half_to_float(fn.load('i16', fn.gep(wb, '80'), 2))}, {dx}")
    dmin = fn.v(f"fmul float {fn.half_to_float(fn.load('i16', fn.gep(wb, '82'), 2))}, {dx}")
    dsc = fn.v(f"sitofp {V16I} {fn.v(f'and {V16I} {sc}, splat (i32 15)')} to {V16F}")
    dsc = fn.v(f"fmul {V16F} {dsc}, {fn.splat(16, 'float', d)}")
    acc = _scaled_dots(fn, wb, xb, acc, dsc, 16)
    mins = _bsums_dot(fn, xb, fn.v(f"lshr {V16I} {sc}, splat (i32 4)"))
    return acc, None, fn.v(f"fmul float {dmin}, {mins}")


def _q3_K_block(fn: Fn, wb: str, xb: str, acc: str):
    """Q3_K 110 B: u8 hmask[32], u8 qs[64], u8 scales[12], f16 d. q = (2 bits of qs) + 4*(bit
    4h+k of hmask[l]) - 4 for element 128h + 32k + l; 16 signed 6-bit scales (see sc below)."""
    dx = fn.load("float", xb)
    d = fn.v(f"fmul float {fn.half_to_float(fn.load('i16', fn.gep(wb, '108'), 2))}, {dx}")
    # sc_j = (scales[j % 8] >> 4*(j / 8)) & 15 | ((scales[8 + j % 4] >> 2*(j / 4)) & 3) << 4, minus 32
    lo = fn.v(f"zext <8 x i8> {fn.load('<8 x i8>', fn.gep(wb, '96'))} to <8 x i32>")
    lo = fn.v(f"shufflevector <8 x i32> {lo}, <8 x i32> poison, {mask([j % 8 for j in range(16)])}")
    lo = fn.v(f"lshr {V16I} {lo}, {const_vec('i32', [4 * (j // 8) for j in range(16)])}")
    hi = fn.v(f"zext <4 x i8> {fn.load('<4 x i8>', fn.gep(wb, '104'))} to <4 x i32>")
    hi = fn.v(f"shufflevector <4 x i32> {hi}, <4 x i32> poison, {mask([j % 4 for j in range(16)])}")
    hi = fn.v(f"lshr {V16I} {hi}, {const_vec('i32', [2 * (j // 4) for j in range(16)])}")
    hi = fn.v(f"shl {V16I} {fn.v(f'and {V16I} {hi}, splat (i32 3)')}, splat (i32 4)")
    sc = fn.v(f"or {V16I} {fn.v(f'and {V16I} {lo}, splat (i32 15)')}, {hi}")
    sc = fn.v(f"sub {V16I} {sc}, splat (i32 32)")
    dsc = fn.v(f"fmul {V16F} {fn.v(f'sitofp {V16I} {sc} to {V16F}')}, {fn.splat(16, 'float', d)}")
    hm = fn.load(V32B, wb)

    def high(h, p):   # bits 4h+2p and 4h+2p+1 of hmask, as 4s
        parts = []
        for b in (4 * h + 2 * p, 4 * h + 2 * p + 1):
            t = fn.v(f"lshr {V32B} {hm}, splat (i8 {b})") if b else hm
            parts.append(fn.v(f"shl {V32B} {fn.v(f'and {V32B} {t}, splat (i8 1)')}, splat (i8 2)"))
        return fn.concat("i8", 32, *parts)
    acc = _scaled_dots(fn, wb, xb, acc, dsc, 32, high)
    off = _bsums_dot(fn, xb, fn.v(f"shl {V16I} {sc}, splat (i32 2)"))   # the -4: 4 * sum_j sc_j * bsums_j
    return acc, None, fn.v(f"fmul float {d}, {off}")


def _k_row(size: int, block):
    def row(fn: Fn, wrow: str, nb: str) -> str:
        from .matvec import _superblocks

        return _superblocks(fn, wrow, size, nb, block)
    return row


# type -> (block values, block bytes, row function (fn, wrow, n_blocks) -> float total)
MORE = {T.BF16: (1, 2, None),
        T.IQ4_NL: (32, 18, iq4_nl_row),
        T.IQ4_XS: (256, 136, iq4_xs_row),
        T.Q3_K: (256, 110, _k_row(110, _q3_K_block)),
        T.Q2_K: (256, 84, _k_row(84, _q2_K_block))}


def more_body(fn: Fn, qtype: T) -> None:
    from .matvec import _rows

    qk, bb, row = MORE[qtype]
    if qtype == T.BF16:
        xr = bf16_x(fn)
        row = lambda fn, wrow, nb: bf16_row(fn, wrow, xr)  # noqa: E731
    nb = fn.v(f"sdiv i64 %n, {qk}")
    _rows(fn, fn.v(f"mul i64 {nb}, {bb}"), lambda fn, wrow: row(fn, wrow, nb))
