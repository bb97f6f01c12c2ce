"""JIT kernels: LLVM IR built in Python, compiled by llvmlite for the CPU we run on.

  cpu.py          what LLVM says about the CPU (CpuInfo); LECTERN_CPU=host|avx2|generic
  kernels/        IR builders (pure, cached): emit.py (IR text helpers, the u8 x s8 dot on
                  vpdpbusd / vpmaddubsw / portable IR), quantize.py (activation quantizers
                  Q8_0/Q8_1/Q8_K/F16 as llama.cpp's x86 backend rounds), matvec.py (F32, F16,
                  Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K), tiles.py (matmul_tiles:
                  a batch as per-token matvec calls over L1-sized row steps; quantize_rows;
                  linear_one: a decode linear in one native call), group.py (several
                  matvecs of one input as one pool job: q/k/v, gate/up + activation),
                  layer.py / gemma_layer.py (a decode step's layers and output head),
                  x8.py (Q4_0 / Q8_0 repacked 8 rows at a time: matvec and batch kernels),
                  x8k.py (Q4_K / Q5_K the same, in the file layout's float orders)
  compile.py      IR -> O3 (new pass manager) -> object code, cached on disk under
                  cache_dir()/kernels (checksummed, atomic writes) -> MCJIT -> ctypes
  twins.py        numpy twins of every kernel (test oracles)
  pool.py         Python thread pool splitting rows (LECTERN_THREADS)
  native_pool.py  JIT-compiled worker loop: atomic chunk counter, spin then futex sleep;
                  wake() gets sleeping workers spinning ahead of a burst of jobs
  group.py        Jobs: the grouped jobs' parameter blocks built from LinearOps
  plan.py         LlamaPlan / plan_gemma.py GemmaPlan: a decode token (layers + head) in one
                  native call, 5 pool jobs per layer; the per-op path's bits
  api.py          matvec(tensor, x), MatvecOp (prepared weight), available()/enabled()
                  (LECTERN_KERNELS=jit|numpy, LECTERN_POOL=native|python)
  linear.py       linear(tensor, x [T, in]): what inference.ops.linear delegates to; LinearOp
                  cached per tensor; batch, split and decode give identical bits
  repack.py       which weights the engine keeps in a layout of its own (Q4_0, Q8_0, Q4_K and Q5_K
                  in 8-row groups; LECTERN_REPACK=0: none, =Q4_0,Q8_0: those), their kernels,
                  giving the file's pages back
  bench.py        python -m jit.bench: bandwidth, matvec GB/s, per-call overheads
  softmax_block.py  one key block of an online softmax over rows (the long MLA prefill's
                  flash-style attention between its matmuls)
  sgemm.py        float32 C (+)= A B on the pool (kernels/sgemm.py: packed B panels, register
                  tiles of the CPU's full width): the long MLA prefill's matmuls
LECTERN_PREFETCH (bytes, default 16384) tunes the matvec kernels' software prefetch distance;
LECTERN_MV_ROWS (default 4) and LECTERN_MV_PREFETCH (default -1: the next group of rows) the
32-block matvecs' rows per step and prefetch distance; LECTERN_MV_GROUP_MIN_BYTES (default 8192)
the Q8_0 row length below which rows go one at a time; LECTERN_MV_STREAMS (default 4) how many
runs of 8-row groups a repacked matvec reads side by side (1: one stream, prefetched).
"""
