"""Errors of the model hub, and the one place that turns client/network failures into them.

Every message says what happened and what the user can do; the rest of the app keeps working.
"""
from __future__ import annotations

from contextlib import contextmanager

from ..errors import LecternError


class HubError(LecternError):
    """Anything that went wrong talking to the Hugging Face Hub."""


class HubOfflineError(HubError):
    """The Hub cannot be reached (no network, connection refused, offline mode)."""


class HubAuthError(HubError):
    """401/403: a gated or private repository, or a rejected token."""


class HubNotFoundError(HubError):
    """The repository, revision or file does not exist."""


class DownloadError(HubError):
    """A download failed after its retries (the partial file is kept for a later resume)."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the sha256 the Hub publishes; the file was deleted."""


class DiskFullError(DownloadError):
    """Not enough free disk space for a download."""


def offline_error(endpoint: str, detail: object = "") -> HubOfflineError:
    extra = f" ({detail})" if detail else ""
    return HubOfflineError(
        f"The Hugging Face Hub is offline or unreachable at {endpoint}{extra}. "
        "Check your network connection; local models and chats keep working.")


def offline_mode_error() -> HubOfflineError:
    return HubOfflineError("Hugging Face Hub offline mode is on (HF_HUB_OFFLINE): unset it to "
                           "browse and download; local models and chats keep working.")


def auth_error(repo_id: str, status: int | None = None, token: bool = False,
               maybe_missing: bool = False) -> HubAuthError:
    code = f" (HTTP {status})" if status else ""
    hint = ("check that your token has access to it" if token
            else "enter a Hugging Face token (in the model hub, or the HF_TOKEN variable)")
    what = (f"{repo_id} was not found, or it is private or gated{code}: check the name; if it is "
            "gated or private, accept its licence" if maybe_missing
            else f"{repo_id} is gated or private{code}: accept its licence")
    return HubAuthError(f"{what} on https://huggingface.co/{repo_id} while logged in, then {hint}.")


def not_found_error(repo_id: str, what: str = "") -> HubNotFoundError:
    thing = f"{what} in {repo_id}" if what else f"the repository {repo_id}"
    return HubNotFoundError(f"Hugging Face Hub: {thing} does not exist (check the spelling).")


@contextmanager
def translated(endpoint: str, repo_id: str = "", token: str | None = None, what: str = ""):
    """Run a huggingface_hub/httpx2 call; re-raise its failures as HubError subclasses."""
    import httpx2
    from huggingface_hub import errors as hf

    try:
        yield
    except HubError:
        raise
    except hf.OfflineModeIsEnabled as e:
        raise offline_mode_error() from e
    except hf.HFValidationError as e:
        raise HubError(f"{repo_id!r} is not a Hugging Face repository id: write it as OWNER/NAME, "
                       "e.g. unsloth/Qwen3-0.6B-GGUF.") from e
    except hf.GatedRepoError as e:
        raise auth_error(repo_id, _status(e), bool(token)) from e
    except (hf.RepositoryNotFoundError, hf.RevisionNotFoundError, hf.RemoteEntryNotFoundError,
            hf.HfHubHTTPError) as e:
        r = getattr(e, "response", None)
        code = r.headers.get("X-Error-Code") if r is not None else None
        raise status_error(_status(e), repo_id, token, what, e, code) from e
    except (httpx2.TransportError, OSError) as e:
        raise offline_error(endpoint, type(e).__name__) from e


def status_error(status: int | None, repo_id: str, token: str | bool | None, what: str = "",
                 detail: object = "", error_code: str | None = None) -> HubError:
    """The HubError for an HTTP error status (error_code: the Hub's X-Error-Code header)."""
    if status in (401, 403):
        missing = status == 401 and error_code != "GatedRepo"
        return auth_error(repo_id, status, bool(token), maybe_missing=missing)
    if status == 404:
        return not_found_error(repo_id, what)
    first = str(detail).strip().splitlines()[0] if str(detail).strip() else ""
    return HubError(f"Hugging Face Hub error{f' (HTTP {status})' if status else ''} for "
                    f"{repo_id or 'the request'}: {first or 'unexpected answer'}. Try again later.")


def _status(e: Exception) -> int | None:
    r = getattr(e, "response", None)
    return getattr(r, "status_code", None)
