"""Browsing the Hugging Face Hub: search GGUF repositories, a curated list, files, model cards.

Metadata comes through huggingface_hub's HfApi (its session, headers, token lookup and error
types); HF_ENDPOINT and HF_TOKEN are honoured as huggingface_hub does. The endpoint is re-read
from the environment at each call so a changed HF_ENDPOINT takes effect without a restart.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import quote

from .errors import offline_error, offline_mode_error, status_error, translated
from .variants import RepoFile, Variant, group_variants

SORTS = {"downloads": "downloads", "likes": "likes", "recent": "last_modified"}
API_TIMEOUT = 30.0       # seconds for one metadata request
PROBE_TIMEOUT = 10.0
# The search listing's default fields lack lastModified and gated: ask for exactly these.
EXPAND = ["downloads", "likes", "lastModified", "gated"]
_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass
class RepoSummary:
    repo_id: str
    downloads: int
    likes: int
    last_modified: str | None    # ISO 8601
    gated: bool


@dataclass
class CuratedModel:
    repo_id: str
    title: str
    note: str


CURATED = [
    CuratedModel("bartowski/SmolLM2-135M-Instruct-GGUF", "SmolLM2 135M Instruct",
                 "Tiny and fast; runs anywhere (about 100 MB)."),
    CuratedModel("bartowski/SmolLM2-360M-Instruct-GGUF", "SmolLM2 360M Instruct",
                 "Small English chat model; runs anywhere."),
    CuratedModel("bartowski/SmolLM2-1.7B-Instruct-GGUF", "SmolLM2 1.7B Instruct",
                 "A capable small model; about 1 GB at Q4_K_M."),
    CuratedModel("unsloth/gemma-3-270m-it-GGUF", "Gemma 3 270M", "Google's smallest Gemma; runs anywhere."),
    CuratedModel("unsloth/gemma-3-1b-it-GGUF", "Gemma 3 1B", "Multilingual, 32k context; under 1 GB."),
    CuratedModel("unsloth/Qwen3-0.6B-GGUF", "Qwen3 0.6B", "Small multilingual model with a thinking mode."),
    CuratedModel("unsloth/Qwen3-1.7B-GGUF", "Qwen3 1.7B", "Good quality for its size; about 1 GB at Q4."),
    CuratedModel("bartowski/Llama-3.2-1B-Instruct-GGUF", "Llama 3.2 1B Instruct",
                 "Meta's small model with a 128k context."),
    CuratedModel("ymcki/Kimi-Linear-48B-A3B-Instruct-GGUF", "Kimi Linear 48B-A3B",
                 "Long documents: linear attention keeps the cache small; 3B active parameters, "
                 "about 30 GB at Q4_K_M: needs a machine with 48 GB of RAM or more."),
    CuratedModel("AesSedai/Step-3.5-Flash-GGUF", "Step 3.5 Flash",
                 "196B mixture-of-experts (11B active) for big machines: 65 GB and up."),
]


def curated() -> list[CuratedModel]:
    """A first look: models this engine runs, small ones first (no network needed)."""
    return list(CURATED)


def endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def api(token: str | None = None):
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint(), token=token)


def auth_headers(token: str | None = None) -> dict[str, str]:
    """huggingface_hub's headers (user agent; token from `token`, HF_TOKEN or the saved login)."""
    from huggingface_hub.utils import build_hf_headers

    return build_hf_headers(token=token)


def probe(token: str | None = None) -> None:
    """One quick request so an unreachable hub fails at once, not after the client's retries."""
    import httpx2
    from huggingface_hub.errors import OfflineModeIsEnabled
    from huggingface_hub.utils import get_session

    url = endpoint()
    try:
        get_session().head(url + "/", timeout=PROBE_TIMEOUT)
    except OfflineModeIsEnabled as e:
        raise offline_mode_error() from e
    except (httpx2.TransportError, OSError) as e:
        raise offline_error(url, type(e).__name__) from e


def search_repos(text: str, sort: str = "downloads", limit: int = 30,
                 token: str | None = None) -> list[RepoSummary]:
    """GGUF repositories matching `text`, most downloaded / liked / recently updated first."""
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
    probe(token)
    with translated(endpoint(), token=token, what="search"):
        models = api(token).list_models(search=text.strip() or None, filter="gguf",
                                        sort=SORTS[sort], limit=limit, expand=EXPAND)
        return [_summary(m) for m in models]


def _summary(m) -> RepoSummary:
    lm = m.last_modified.isoformat() if m.last_modified else None
    return RepoSummary(m.id, int(m.downloads or 0), int(m.likes or 0), lm,
                       bool(m.gated) and m.gated != "false")


def repo_files(repo_id: str, token: str | None = None) -> list[RepoFile]:
    """Every file of the repository with its size and LFS sha256."""
    check_repo_id(repo_id)
    probe(token)
    with translated(endpoint(), repo_id, token):
        info = api(token).model_info(repo_id, files_metadata=True, timeout=API_TIMEOUT)
    revision = info.sha if info.sha and _COMMIT.fullmatch(info.sha) else "main"
    out = []
    for s in info.siblings or []:
        lfs = s.lfs
        size = s.size if s.size is not None else (lfs.size if lfs else 0)
        out.append(RepoFile(s.rfilename, int(size or 0), lfs.sha256 if lfs else None, revision))
    return out


def list_variants(repo_id: str, token: str | None = None) -> list[Variant]:
    """The repository's GGUF models grouped into quantization variants, smallest first."""
    return group_variants(repo_files(repo_id, token))


def check_repo_id(repo_id: str) -> str:
    """The id if huggingface_hub accepts it (OWNER/NAME), else a HubError saying how to write it."""
    from huggingface_hub.utils import validate_repo_id

    with translated(endpoint(), repo_id):
        validate_repo_id(repo_id)
        if repo_id.count("/") != 1:
            validate_repo_id("")            # ids without an owner are not GGUF repositories
    return repo_id


def file_url(repo_id: str, path: str, revision: str = "main") -> str:
    check_repo_id(repo_id)
    return f"{endpoint()}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"


def model_card(repo_id: str, token: str | None = None) -> str:
    """The repository's README.md (model card) as text; "" if it has none."""
    import httpx2
    from huggingface_hub.utils import get_session

    check_repo_id(repo_id)
    probe(token)
    url = file_url(repo_id, "README.md")
    try:
        r = get_session().get(url, headers=auth_headers(token), timeout=API_TIMEOUT)
    except (httpx2.TransportError, OSError) as e:
        raise offline_error(endpoint(), type(e).__name__) from e
    code = r.headers.get("x-error-code")
    if r.status_code == 404 and code != "RepoNotFound":
        return ""
    if r.status_code >= 400:
        raise status_error(r.status_code, repo_id, token, "README.md", r.reason_phrase, code)
    return r.content.decode("utf-8", errors="replace")


def card_body(text: str) -> str:
    """A model card without its YAML front matter (the `---` block of licence, tags, ...)."""
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            return text[end + 4:].lstrip("\n")
    return text
