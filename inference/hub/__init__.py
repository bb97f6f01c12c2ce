"""The model hub: find GGUF models on Hugging Face, choose a quantization, download safely.

No Qt here: the desktop dialog and the `lectern search / files / download` commands both use
this package. Network access goes through huggingface_hub (HF_ENDPOINT, HF_TOKEN honoured).
"""
from .client import (CuratedModel, RepoSummary, card_body, curated, endpoint, list_variants, model_card,
                     repo_files, search_repos)
from .download import DownloadManager, JobStatus, default_state_file, local_path, repo_dir_name
from .errors import (ChecksumError, DiskFullError, DownloadError, HubAuthError, HubError,
                     HubNotFoundError, HubOfflineError)
from .estimate import RamEstimate, estimate_all, estimate_ram, fit_verdict, recommend
from .token import clear_token, get_token, save_token
from .variants import RepoFile, Variant, find_variant, group_variants, parse_quant

__all__ = [
    "ChecksumError", "CuratedModel", "DiskFullError", "DownloadError", "DownloadManager",
    "HubAuthError", "HubError", "HubNotFoundError", "HubOfflineError", "JobStatus", "RamEstimate",
    "RepoFile", "RepoSummary", "Variant", "card_body", "clear_token", "curated", "default_state_file", "endpoint",
    "estimate_all",
    "estimate_ram",
    "find_variant", "fit_verdict", "get_token", "group_variants", "list_variants", "local_path",
    "model_card", "parse_quant", "recommend", "repo_dir_name", "repo_files", "save_token",
    "search_repos",
]
