"""LLVM IR builders for the kernels. Each returns IR text; builders are pure and cached."""
