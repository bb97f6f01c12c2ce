"""A small LLVM IR text emitter: SSA temporaries, counted loops with carried values, and the
few building blocks every kernel shares (splats, half <-> float, the u8 x s8 dot product).

Kept as text rather than llvmlite.ir objects: vector IR reads best as IR.
"""
from __future__ import annotations

from contextlib import contextmanager

from .. import tables
from ..cpu import CpuInfo


def vec(n: int, ty: str) -> str:
    return f"<{n} x {ty}>"


def const_vec(ty: str, values) -> str:
    return "<" + ", ".join(f"{ty} {v}" for v in values) + ">"


def mask(indices) -> str:
    """A shufflevector mask operand, type included."""
    idx = list(indices)
    return f"<{len(idx)} x i32> " + const_vec("i32", idx)


class Loop:
    def __init__(self, fn: "Fn", name: str):
        self.fn, self.name = fn, name
        self.i = f"%{name}.i"
        self._carried: list[list] = []   # [phi name, type, init, pred label, line index, next]

    def carry(self, ty: str, init: str) -> str:
        """A value carried around the loop: returns its name inside (and, after, its final value)."""
        name = f"%{self.name}.c{len(self._carried)}"
        self.fn.lines.append(None)   # placeholder for the phi, filled at the end of the loop
        self._carried.append([name, ty, init, self._pred, len(self.fn.lines) - 1, None])
        return name

    def set(self, name: str, value: str) -> None:
        for c in self._carried:
            if c[0] == name:
                c[5] = value
                return
        raise KeyError(name)


class Fn:
    """One function's body. `v()` emits an instruction and returns its SSA name."""

    def __init__(self, cpu: CpuInfo, decls: set[str]):
        self.cpu = cpu
        self.decls = decls
        self.prefetch_end = None     # kernels/matvec.py stream_bounds: no prefetch past it
        self.lines: list = []
        self._n = 0
        self._labels = 0
        self.block = "entry"
        self.lines.append("entry:")

    def v(self, text: str) -> str:
        name = f"%t{self._n}"
        self._n += 1
        self.lines.append(f"  {name} = {text}")
        return name

    def do(self, text: str) -> None:
        self.lines.append(f"  {text}")

    def label(self, name: str) -> None:
        self.lines.append(f"{name}:")
        self.block = name

    def fresh(self, stem: str) -> str:
        self._labels += 1
        return f"{stem}{self._labels}"

    def declare(self, decl: str) -> None:
        self.decls.add(decl)

    def call(self, ret: str, fname: str, args: list[str], sig: str) -> str:
        """call an intrinsic/helper; `sig` is the argument type list for the declaration."""
        self.declare(f"declare {ret} @{fname}({sig})")
        return self.v(f"call {ret} @{fname}({', '.join(args)})")

    @contextmanager
    def loop(self, start: str, stop: str, step: int = 1, stem: str = "L"):
        """for (i = start; i < stop; i += step): i64 counter, carried values via Loop.carry."""
        name = self.fresh(stem)
        lp = Loop(self, name)
        lp._pred = self.block
        self.do(f"br label %{name}.head")
        self.label(f"{name}.head")
        idx_line = len(self.lines)
        self.lines.append(None)
        cond = self.v(f"icmp slt i64 {lp.i}, {stop}")
        self.do(f"br i1 {cond}, label %{name}.body, label %{name}.exit")
        self.label(f"{name}.body")
        yield lp
        self.do(f"br label %{name}.latch")
        self.label(f"{name}.latch")
        self.do(f"{lp.i}.next = add i64 {lp.i}, {step}")
        self.do(f"br label %{name}.head")
        self.lines[idx_line] = f"  {lp.i} = phi i64 [{start}, %{lp._pred}], [{lp.i}.next, %{name}.latch]"
        for c in lp._carried:
            if c[5] is None:
                raise ValueError(f"carried value {c[0]} never set")
            self.lines[c[4]] = None
        for phi, ty, init, pred, _, nxt in lp._carried:
            self.lines.insert(idx_line + 1, f"  {phi} = phi {ty} [{init}, %{pred}], [{nxt}, %{name}.latch]")
        self.label(f"{name}.exit")

    # ------------------------------------------------------------------ memory helpers
    def gep(self, base: str, offset: str) -> str:
        """base + offset bytes."""
        return self.v(f"getelementptr inbounds i8, ptr {base}, i64 {offset}")

    def load(self, ty: str, ptr: str, align: int = 1) -> str:
        return self.v(f"load {ty}, ptr {ptr}, align {align}")

    def store(self, ty: str, val: str, ptr: str, align: int = 1) -> None:
        self.do(f"store {ty} {val}, ptr {ptr}, align {align}")

    def splat(self, n: int, ty: str, scalar: str) -> str:
        one = self.v(f"insertelement <1 x {ty}> poison, {ty} {scalar}, i64 0")
        return self.v(f"shufflevector <1 x {ty}> {one}, <1 x {ty}> poison, <{n} x i32> zeroinitializer")

    # ------------------------------------------------------------------ half <-> float
    def half_to_float(self, h16: str, n: int = 0) -> str:
        """i16 (or <n x i16>) IEEE half bits -> float. fpext with F16C, integer code otherwise."""
        it, ft, ht = ("i16", "float", "half") if n == 0 else (vec(n, "i16"), vec(n, "float"), vec(n, "half"))
        if self.cpu.has_f16c:
            h = self.v(f"bitcast {it} {h16} to {ht}")
            return self.v(f"fpext {ht} {h} to {ft}")
        i32 = "i32" if n == 0 else vec(n, "i32")
        c = (lambda k: str(k)) if n == 0 else (lambda k: f"splat (i32 {k})")
        cf = (lambda k: k) if n == 0 else (lambda k: f"splat (float {k})")
        h = self.v(f"zext {it} {h16} to {i32}")
        mag = self.v(f"and {i32} {h}, {c(0x7FFF)}")
        sh = self.v(f"shl {i32} {mag}, {c(13)}")
        f = self.v(f"bitcast {i32} {sh} to {ft}")
        # exact: a half is a float times 2^-112 when its exponent is rebased (covers subnormals)
        f = self.v(f"fmul {ft} {f}, {cf('0x46F0000000000000')}")
        fb = self.v(f"bitcast {ft} {f} to {i32}")
        isinf = self.v(f"icmp uge {i32} {mag}, {c(0x7C00)}")
        infb = self.v(f"or {i32} {fb}, {c(0x7F800000)}")
        fb = self.v(f"select {'i1' if n == 0 else vec(n, 'i1')} {isinf}, {i32} {infb}, {i32} {fb}")
        sign = self.v(f"and {i32} {h}, {c(0x8000)}")
        sign = self.v(f"shl {i32} {sign}, {c(16)}")
        fb = self.v(f"or {i32} {fb}, {sign}")
        return self.v(f"bitcast {i32} {fb} to {ft}")

    def half_to_float_at(self, ptr: str) -> str:
        """The f16 at ptr as a float, through the process's exact table (jit/tables.py): two
        scalar loads (the half, then its float), no vector conversion."""
        self.declare(f"@{tables.F16_F32} = external global [65536 x float]")
        i = self.v(f"zext i16 {self.load('i16', ptr, 2)} to i64")
        return self.load("float", self.v(f"getelementptr [65536 x float], ptr @{tables.F16_F32}, i64 0, i64 {i}"), 4)

    def float_to_half(self, f: str) -> str:
        """float -> i16 IEEE half bits, round to nearest even (float_to_half_v on one lane)."""
        v = self.v(f"insertelement <1 x float> poison, float {f}, i64 0")
        return self.v(f"extractelement <1 x i16> {self.float_to_half_v(v, 1)}, i64 0")

    def round_to_half_v(self, v: str, n: int = 16) -> str:
        """<n x float> -> the nearest half values (ties to even), still as floats: f16(x).
        fptrunc/fpext with F16C (vcvtps2ph, vcvtph2ps); integer and float code otherwise (normal
        halves: round the mantissa to 10 bits; subnormal ones: (|x| + 0.5) - 0.5 rounds to the
        2^-24 grid; overflow to inf; inf and NaN kept)."""
        ft, it = vec(n, "float"), vec(n, "i32")
        if self.cpu.has_f16c:
            h = self.v(f"fptrunc {ft} {v} to {vec(n, 'half')}")
            return self.v(f"fpext {vec(n, 'half')} {h} to {ft}")
        c = lambda k: f"splat (i32 {k})"                                       # noqa: E731
        b = self.v(f"bitcast {ft} {v} to {it}")
        a = self.v(f"and {it} {b}, {c(0x7FFFFFFF)}")
        odd = self.v(f"and {it} {self.v(f'lshr {it} {a}, {c(13)}')}, {c(1)}")
        r = self.v(f"add {it} {self.v(f'add {it} {a}, {c(0xFFF)}')}, {odd}")
        r = self.v(f"and {it} {r}, {c(-0x2000)}")
        r = self.v(f"select {vec(n, 'i1')} {self.v(f'icmp uge {it} {r}, {c(0x47800000)}')}, {it} {c(0x7F800000)}, "
                   f"{it} {r}")
        af = self.v(f"bitcast {it} {a} to {ft}")
        sub = self.v(f"fsub {ft} {self.v(f'fadd {ft} {af}, splat (float 0.5)')}, splat (float 0.5)")
        sub = self.v(f"bitcast {ft} {sub} to {it}")
        r = self.v(f"select {vec(n, 'i1')} {self.v(f'icmp ult {it} {a}, {c(0x38800000)}')}, {it} {sub}, {it} {r}")
        r = self.v(f"select {vec(n, 'i1')} {self.v(f'icmp uge {it} {a}, {c(0x7F800000)}')}, {it} {a}, {it} {r}")
        r = self.v(f"or {it} {r}, {self.v(f'and {it} {b}, {c(-0x80000000)}')}")
        return self.v(f"bitcast {it} {r} to {ft}")

    def float_to_half_v(self, v: str, n: int = 16) -> str:
        """<n x float> -> <n x i16> IEEE half bits, round to nearest even (as vcvtps2ph / numpy).
        Without F16C: round_to_half_v, then the exact re-encoding of a half-valued float."""
        ft, it, st = vec(n, "float"), vec(n, "i32"), vec(n, "i16")
        if self.cpu.has_f16c:
            h = self.v(f"fptrunc {ft} {v} to {vec(n, 'half')}")
            return self.v(f"bitcast {vec(n, 'half')} {h} to {st}")
        c = lambda k: f"splat (i32 {k})"                                       # noqa: E731
        b = self.v(f"bitcast {ft} {self.round_to_half_v(v, n)} to {it}")
        a = self.v(f"and {it} {b}, {c(0x7FFFFFFF)}")
        norm = self.v(f"sub {it} {self.v(f'lshr {it} {a}, {c(13)}')}, {c((127 - 15) << 10)}")
        af = self.v(f"bitcast {it} {a} to {ft}")
        sub = self.v(f"fptosi {ft} {self.v(f'fmul {ft} {af}, splat (float 0x4170000000000000)')} to {it}")  # x 2^24
        h = self.v(f"select {vec(n, 'i1')} {self.v(f'icmp ult {it} {a}, {c(0x38800000)}')}, {it} {sub}, {it} {norm}")
        mant = self.v(f"and {it} {self.v(f'lshr {it} {a}, {c(13)}')}, {c(0x3FF)}")
        nan = self.v(f"or {it} {c(0x7C00)}, {mant}")
        nan = self.v(f"select {vec(n, 'i1')} {self.v(f'icmp ugt {it} {a}, {c(0x7F800000)}')}, {it} {c(0x7E00)}, "
                     f"{it} {nan}")
        h = self.v(f"select {vec(n, 'i1')} {self.v(f'icmp uge {it} {a}, {c(0x7F800000)}')}, {it} {nan}, {it} {h}")
        sign = self.v(f"and {it} {b}, {c(-0x80000000)}")
        h = self.v(f"or {it} {h}, {self.v(f'lshr {it} {sign}, {c(16)}')}")
        return self.v(f"trunc {it} {h} to {st}")

    # ------------------------------------------------------------------ integer dot
    def dot_u8s8(self, acc: str, a: str, b: str, nbytes: int = 32) -> str:
        """acc[i] + sum_{k<4} a[4i+k] * b[4i+k] for <nbytes x i8> a (unsigned; < 128 on the avx2
        path so vpmaddubsw pairs cannot saturate) and b (signed); acc <nbytes/4 x i32>. Lane i
        covers bytes 4i..4i+3 on every path, so per-16-byte scales may be applied lane-wise."""
        path = self.cpu.dot_path
        lanes = nbytes // 4
        vi, vb = vec(lanes, "i32"), vec(nbytes, "i8")
        if path == "vnni" and (nbytes == 32 or (nbytes == 64 and self.cpu.has_avx512 and self.cpu.has_avx512_vnni)):
            a32 = self.v(f"bitcast {vb} {a} to {vi}")
            b32 = self.v(f"bitcast {vb} {b} to {vi}")
            bits = 8 * nbytes
            return self.call(vi, f"llvm.x86.avx512.vpdpbusd.{bits}", [f"{vi} {acc}", f"{vi} {a32}", f"{vi} {b32}"],
                             f"{vi}, {vi}, {vi}")
        if path in ("vnni", "avx2") and nbytes % 32 == 0:
            parts = []
            for h in range(nbytes // 32):
                idx = mask(range(32 * h, 32 * h + 32))
                ah = self.v(f"shufflevector {vb} {a}, {vb} poison, {idx}") if nbytes > 32 else a
                bh = self.v(f"shufflevector {vb} {b}, {vb} poison, {idx}") if nbytes > 32 else b
                if path == "vnni":
                    parts.append(self.dot_u8s8("zeroinitializer", ah, bh, 32))
                    continue
                m = self.call(vec(16, "i16"), "llvm.x86.avx2.pmadd.ub.sw", [f"<32 x i8> {ah}", f"<32 x i8> {bh}"],
                              "<32 x i8>, <32 x i8>")
                parts.append(self.call("<8 x i32>", "llvm.x86.avx2.pmadd.wd",
                                       [f"<16 x i16> {m}", "<16 x i16> splat (i16 1)"], "<16 x i16>, <16 x i16>"))
            w = parts[0] if len(parts) == 1 else self.v(
                f"shufflevector <8 x i32> {parts[0]}, <8 x i32> {parts[1]}, {mask(range(16))}")
            return w if acc == "zeroinitializer" else self.v(f"add {vi} {acc}, {w}")
        az = self.v(f"zext {vb} {a} to {vec(nbytes, 'i32')}")
        bs = self.v(f"sext {vb} {b} to {vec(nbytes, 'i32')}")
        p = self.v(f"mul nsw {vec(nbytes, 'i32')} {az}, {bs}")
        s = acc
        for k in range(4):
            part = self.v(f"shufflevector {vec(nbytes, 'i32')} {p}, {vec(nbytes, 'i32')} poison, "
                          f"{mask(range(k, nbytes, 4))}")
            s = self.v(f"add {vi} {s}, {part}")
        return s

    def dot_s8s8(self, acc: str, a: str, b: str, nbytes: int = 32) -> str:
        """Signed x signed bytes via |a| x (sign(a) * b); b must not hold -128."""
        vb = vec(nbytes, "i8")
        absa = self.call(vb, f"llvm.abs.v{nbytes}i8", [f"{vb} {a}", "i1 false"], f"{vb}, i1")
        if self.cpu.has_avx2 and nbytes == 32:    # vpsignb: b negated where a < 0, zeroed where a == 0
            sb = self.call(vb, "llvm.x86.avx2.psign.b", [f"{vb} {b}", f"{vb} {a}"], f"{vb}, {vb}")
            return self.dot_u8s8(acc, absa, sb, nbytes)     # (where a == 0, |a| == 0 anyway)
        neg = self.v(f"icmp slt {vb} {a}, zeroinitializer")
        nb = self.v(f"sub {vb} zeroinitializer, {b}")
        sb = self.v(f"select {vec(nbytes, 'i1')} {neg}, {vb} {nb}, {vb} {b}")
        return self.dot_u8s8(acc, absa, sb, nbytes)

    def concat(self, ty: str, n: int, a: str, b: str) -> str:
        """<n x ty> a, b -> <2n x ty>"""
        return self.v(f"shufflevector {vec(n, ty)} {a}, {vec(n, ty)} {b}, {mask(range(2 * n))}")

    def hsum_f(self, n: int, v: str) -> str:
        """Horizontal sum in a tree (reassoc): the order is fixed by the code, not by the row split."""
        self.declare(f"declare float @llvm.vector.reduce.fadd.v{n}f32(float, {vec(n, 'float')})")
        return self.v(f"call reassoc float @llvm.vector.reduce.fadd.v{n}f32(float -0.0, {vec(n, 'float')} {v})")

    def fmadd_v(self, n: int, a: str, b: str, c: str) -> str:
        """a*b + c with reassoc/contract: LLVM may fuse it and keep several partial sums when it
        unrolls a loop (the same for every row, so results still never depend on threads)."""
        t = vec(n, "float")
        m = self.v(f"fmul reassoc contract {t} {a}, {b}")
        return self.v(f"fadd reassoc contract {t} {m}, {c}")

    def fma_v(self, n: int, a: str, b: str, c: str) -> str:
        t = vec(n, "float")
        return self.call(t, f"llvm.fma.v{n}f32", [f"{t} {a}", f"{t} {b}", f"{t} {c}"], f"{t}, {t}, {t}")


class ModuleText:
    """Functions plus the declarations they need, as one IR module."""

    def __init__(self, cpu: CpuInfo):
        self.cpu = cpu
        self.decls: set[str] = set()
        self.funcs: list[str] = []

    def function(self, header: str):
        fn = Fn(self.cpu, self.decls)
        fn.header = header
        return fn

    def add(self, fn: Fn) -> None:
        body = "\n".join(ln for ln in fn.lines if ln is not None)
        self.funcs.append(f"{fn.header} {{\n{body}\n}}\n")

    def text(self) -> str:
        return "\n".join(self.funcs) + "\n" + "\n".join(sorted(self.decls)) + "\n"
