"""Lectern's desktop app and command line."""
import inference  # noqa: F401  (first: it sets the BLAS threads' environment before numpy loads)
