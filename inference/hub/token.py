"""The Hugging Face token, kept in huggingface_hub's own storage (HF_HOME/token).

HF_TOKEN in the environment takes precedence, as in huggingface_hub.
"""
from __future__ import annotations

from .errors import HubAuthError, translated


def get_token() -> str | None:
    from huggingface_hub import get_token as hf_get_token

    return hf_get_token()


def save_token(token: str) -> str:
    """Check the token with the Hub (whoami) and store it; returns the account name."""
    from huggingface_hub import login

    from .client import api, endpoint

    token = token.strip()
    if not token:
        raise HubAuthError("The Hugging Face token is empty: paste a token from "
                           "https://huggingface.co/settings/tokens")
    try:
        with translated(endpoint(), "your account", token):
            name = api(token).whoami(token=token)["name"]
            login(token=token, add_to_git_credential=False)   # validates again, then stores
    except HubAuthError as e:
        raise HubAuthError("The Hub rejected this token (it is wrong, expired or revoked): "
                           "create a new one at https://huggingface.co/settings/tokens") from e
    return name


def clear_token() -> None:
    """Forget the saved token (HF_TOKEN in the environment is not touched)."""
    from pathlib import Path

    from huggingface_hub import constants

    for p in (constants.HF_TOKEN_PATH, constants.HF_STORED_TOKENS_PATH):
        Path(p).unlink(missing_ok=True)
