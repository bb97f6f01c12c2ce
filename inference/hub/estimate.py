"""RAM needed by a variant before downloading it: weights plus the cache at a context length.

The cache depends on the model's shape, which lives in the GGUF header at the start of the
first file. The header is fetched with HTTP Range requests, growing the range until the metadata
parses (a 262k-token vocabulary makes a header of several MiB), up to READ_CAP. Reading stops at
the metadata: tensor infos are not needed. When the header cannot be read the estimate falls
back to one from the file size (exact=False).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import GGUFError
from ..gguf_file import _MIN_KV_BYTES, _U64, _Part
from .errors import (HubAuthError, HubError, HubNotFoundError, HubOfflineError, offline_error,
                     offline_mode_error, status_error)
from .variants import Variant

FIRST_READ = 1 << 20       # first range: 1 MiB; a 262k-token vocabulary needs ~6.5 MB (4 reads)
READ_CAP = 32 << 20        # never read more than this to estimate
SIZE_CACHE_FRACTION = 0.15  # fallback: cache at 4096 tokens ~ 15% of a Q4 file (GQA models)
FALLBACK_CTX = 4096


@dataclass
class RamEstimate:
    weights: int      # bytes of the model data (files on disk)
    cache: int        # KV cache + recurrent state at n_ctx
    total: int
    exact: bool       # False: guessed from the file size (header unreadable)
    n_ctx: int = 0    # the context the cache was computed for (clamped to the training context)
    architecture: str = ""   # general.architecture from the header ("" if unread)

    @property
    def supported(self) -> bool | None:
        """Whether this engine runs the architecture (None when the header was not read)."""
        from ..models import ARCHITECTURES

        return self.architecture in ARCHITECTURES if self.architecture else None


class _NeedMore(Exception):
    """The buffer ends before the metadata does; `need` is a lower bound of the bytes needed."""

    def __init__(self, need: int):
        self.need = need


class _Header(_Part):
    """The metadata of a GGUF file from its first bytes (a prefix of a file of `total` bytes).

    Bounds are checked against the whole file, so a corrupt length still fails like a local
    file would; running out of the prefix raises _NeedMore instead.
    """

    def __init__(self, buf: bytes, total: int, name: str):
        self.path = name
        self.map = buf
        self.size = len(buf)
        self.total = total
        self.pos = 0
        self.metadata: dict[str, Any] = {}
        self.tensors = {}
        self._parse()

    def need(self, n: int, what: str) -> None:
        if n > self.total - self.pos:
            raise self.fail(f"truncated file: {what} at byte {self.pos} needs {n} bytes "
                            f"but the file has only {self.total - self.pos} more")
        if n > self.size - self.pos:
            raise _NeedMore(self.pos + n)

    def count(self, n: int, item_bytes: int, what: str) -> int:
        if n * item_bytes > self.total - self.pos:
            raise self.fail(f"{what} is {n}, more than the file can hold (corrupt file)")
        if n * item_bytes > self.size - self.pos:
            raise _NeedMore(self.pos + n * item_bytes)
        return n

    def string_array(self, n: int, what: str) -> list[str]:
        """Skipped, not decoded: the estimate needs no vocabulary (262k tokens, parsed per read)."""
        buf, pos, end, unpack = self.map, self.pos, self.size, _U64.unpack_from
        for i in range(n):
            if end - pos < 8:
                self.pos = pos
                self.need(8, f"length of {what}[{i}]")
            (ln,) = unpack(buf, pos)
            pos += 8
            if ln > end - pos:
                self.pos = pos
                self.need(ln, f"{what}[{i}]")
            pos += ln
        self.pos = pos
        return []

    def _parse(self) -> None:
        self.need(4, "magic")
        if bytes(self.map[0:4]) != b"GGUF":
            raise self.fail(f"not a GGUF file (starts with {bytes(self.map[0:4])!r})")
        self.pos = 4
        self.version = self.u32("version")
        self._check_version()
        self.u64("tensor count")
        n_kv = self.u64("metadata key count")
        if n_kv * _MIN_KV_BYTES > self.total:
            raise self.fail(f"metadata key count {n_kv} is more than the file can hold")
        for i in range(n_kv):
            self._read_kv(i)

    # memory_estimate reads these
    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch_get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)


def read_remote_metadata(url: str, total: int, headers: dict, first: int = FIRST_READ,
                         cap: int = READ_CAP, repo_id: str = "") -> _Header | None:
    """The parsed header of the file at `url`, or None if it does not fit in `cap` bytes.

    Raises GGUFError for a corrupt header and HubError subclasses for network failures.
    """
    limit = min(total, cap)
    buf = b""
    want = min(first, limit)
    while want > len(buf):
        more = _get_range(url, len(buf), want - 1, headers, repo_id)
        if not more:                   # the server has no more to give
            return None
        buf += more
        try:
            return _Header(buf, total, url.rsplit("/", 1)[-1])
        except _NeedMore as e:          # at least what the parser asked for, at least double
            want = min(max(e.need, len(buf) * 2, 1 << 16), limit)
    return None


def _get_range(url: str, start: int, end: int, headers: dict, repo_id: str) -> bytes:
    """Bytes start..end (inclusive); b"" if the server cannot give them. A server that ignores
    Range is read only up to `end`."""
    import httpx2
    from huggingface_hub.errors import OfflineModeIsEnabled
    from huggingface_hub.utils import get_session

    h = dict(headers, Range=f"bytes={start}-{end}")
    out = bytearray()
    try:
        with get_session().stream("GET", url, headers=h, timeout=30.0) as r:
            if r.status_code >= 400:
                token = any(k.lower() == "authorization" for k in headers)
                raise status_error(r.status_code, repo_id or url, token, url.rsplit("/", 1)[-1],
                                   r.reason_phrase, r.headers.get("x-error-code"))
            skip = start - (_range_start(r.headers.get("content-range")) if r.status_code == 206 else 0)
            if skip < 0:
                return b""
            for chunk in r.iter_bytes(1 << 16):
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                out += chunk
                if len(out) >= end + 1 - start:
                    break
    except OfflineModeIsEnabled as e:
        raise offline_mode_error() from e
    except (httpx2.ConnectError, httpx2.ConnectTimeout, OSError) as e:
        raise offline_error(url.rsplit("/", 1)[0], type(e).__name__) from e
    except httpx2.TransportError as e:     # cut or stalled: the caller falls back to the size
        raise HubError(f"reading the header of {url.rsplit('/', 1)[-1]} was interrupted "
                       f"({type(e).__name__})") from e
    return bytes(out[:end + 1 - start])


def _range_start(content_range: str | None) -> int:
    """100 from 'bytes 100-199/200' (0 when missing or malformed)."""
    try:
        return int((content_range or "").split()[1].split("-")[0])
    except (IndexError, ValueError):
        return 0


def cache_bytes(meta: _Header, n_ctx: int) -> tuple[int, int]:
    """(cache bytes, context used) from the metadata, via model_info.memory_estimate."""
    from ..model_info import memory_estimate

    train = int(meta.arch_get("context_length", 0) or 0)
    ctx = min(n_ctx, train) if train else n_ctx
    return int(memory_estimate(meta, ctx)["cache_bytes"]), ctx


def size_estimate(size: int, n_ctx: int) -> RamEstimate:
    cache = int(size * SIZE_CACHE_FRACTION * n_ctx / FALLBACK_CTX)
    return RamEstimate(size, cache, size + cache, False, n_ctx)


def estimate_ram(repo_id: str, variant: Variant, n_ctx: int, token: str | None = None) -> RamEstimate:
    """Weights (the variant's bytes) plus cache at n_ctx, from the first file's header."""
    from .client import auth_headers, file_url

    url = file_url(repo_id, variant.first.path, variant.first.revision)
    try:
        meta = read_remote_metadata(url, variant.first.size, auth_headers(token), repo_id=repo_id)
    except GGUFError:
        meta = None
    except (HubAuthError, HubOfflineError, HubNotFoundError):
        raise                        # the user can act on these
    except HubError:                 # a server error: the size still gives an estimate
        meta = None
    if meta is None or not meta.arch_get("block_count"):
        return size_estimate(variant.size, n_ctx)
    cache, ctx = cache_bytes(meta, n_ctx)
    return RamEstimate(variant.size, cache, variant.size + cache, True, ctx, meta.architecture)


def fit_verdict(total_bytes: int, ram_bytes: int) -> str:
    """'fits' (leaves room for the OS and the app), 'tight' (may swap), or 'no'."""
    if total_bytes <= 0.7 * ram_bytes:
        return "fits"
    if total_bytes <= 0.9 * ram_bytes:
        return "tight"
    return "no"


def recommend(variants: list[Variant], estimates: list[RamEstimate], ram_bytes: int) -> Variant | None:
    """The largest variant that fits comfortably, or None when none does."""
    ok = [(e.total, v.size, v) for v, e in zip(variants, estimates)
          if e is not None and fit_verdict(e.total, ram_bytes) == "fits"]
    return max(ok, key=lambda t: (t[1], t[0]))[2] if ok else None


def model_stem(path: str) -> str:
    """The model a file belongs to: its name without folder, split suffix and quantization."""
    from .variants import QUANT, split_base

    base = split_base(path)[0].rsplit("/", 1)[-1]
    tokens = [t for t in re.split(r"([-.])", base)]
    kept = [t for t in tokens if not QUANT.match(t) and t.upper() != "UD"]
    return re.sub(r"[-.]+", "-", "".join(kept)).strip("-.").lower()


def estimate_all(repo_id: str, variants: list[Variant], n_ctx: int,
                 token: str | None = None) -> list[RamEstimate]:
    """estimate_ram for every variant, reading one header per model: quantizations of one model
    share its shape, so the cache computed from the smallest file holds for all of them."""
    cache: dict[str, RamEstimate] = {}
    out = []
    for v in variants:
        stem = model_stem(v.first.path)
        known = cache.get(stem)
        if known is None or not known.exact:
            known = cache[stem] = estimate_ram(repo_id, v, n_ctx, token)
        else:
            known = RamEstimate(v.size, known.cache, v.size + known.cache, True, known.n_ctx,
                                known.architecture)
        out.append(known)
    return out
