"""Remote OpenAI-compatible endpoints as models in the picker ("Add remote endpoint…").

An endpoint is {"url", "api_key", "model"} kept in the store's settings under "remote_endpoints";
the picker knows it by the path "remote:<url>#<model>". NOTE: the API key is stored in plain
text in the user's data dir (lectern.db), like the rest of the settings. Choosing an endpoint makes
the inference worker answer through inference.remote.RemoteBackend with the same signals as a
local model (token, done with stats, error), so the chat code does not know the difference."""
from __future__ import annotations

from PySide6.QtWidgets import QInputDialog, QLineEdit

from .library import ModelEntry

PREFIX = "remote:"
KEY = "remote_endpoints"
TIMEOUT = 60.0          # seconds without data before a remote answer counts as failed
REMOTE_N_CTX = 0        # unknown: the API does not say; the meter then shows only what is used


def remote_path(url: str, model: str) -> str:
    return f"{PREFIX}{url.strip().rstrip('/')}#{model}"


def is_remote(path: str) -> bool:
    return str(path).startswith(PREFIX)


def remote_entry(ep: dict) -> ModelEntry:
    return ModelEntry(path=remote_path(ep["url"], ep["model"]), name=f"{ep['model']} (remote)",
                      source="remote", architecture="remote")


class RemoteModelsMixin:
    """Part of MainWindow: the endpoints list, the add dialog, and loading one."""

    def remote_endpoints(self) -> list[dict]:
        return list(self.store.get(KEY, []))

    def remote_entries(self) -> list[ModelEntry]:
        return [remote_entry(ep) for ep in self.remote_endpoints()]

    def add_remote(self, url: str, api_key: str = "", model: str | None = None) -> ModelEntry:
        """Ask the endpoint for its models (GET /v1/models), keep `model` (or the first one)."""
        from inference.remote import RemoteBackend, RemoteError

        try:
            models = RemoteBackend(url, api_key or None, timeout=15).models()
        except RemoteError as e:
            raise RemoteError(f"cannot add {url}: {e}") from None
        if model is None:
            if not models:
                raise RemoteError(f"{url} lists no models")
            model = models[0]
        ep = {"url": url.strip().rstrip("/"), "api_key": api_key or "", "model": model}
        eps = [e for e in self.remote_endpoints()
               if remote_path(e["url"], e["model"]) != remote_path(ep["url"], model)]
        self.store.set(KEY, eps + [ep])
        self.refresh_models()
        return remote_entry(ep)

    def add_remote_dialog(self) -> None:
        from inference.remote import RemoteBackend, RemoteError

        url, ok = QInputDialog.getText(self, "Add remote endpoint",
                                       "OpenAI-compatible endpoint URL:", text="http://127.0.0.1:8080")
        if not ok or not url.strip():
            return
        key, ok = QInputDialog.getText(self, "Add remote endpoint", "API key (optional, stored in "
                                       "plain text):", QLineEdit.Password)
        if not ok:
            return
        try:
            models = RemoteBackend(url, key or None, timeout=15).models()
        except RemoteError as e:
            self.show_banner(f"Cannot add {url}: {e}")
            return
        model, ok = QInputDialog.getItem(self, "Add remote endpoint", "Model:", models, 0, False) \
            if len(models) > 1 else (models[0] if models else "", True)
        if ok and model:
            self.load_model(self.add_remote(url, key, model).path)

    def load_remote(self, path: str) -> None:
        ep = next((e for e in self.remote_endpoints() if remote_path(e["url"], e["model"]) == path),
                  None)
        if ep is None:
            self.show_banner(f"Unknown remote endpoint {path}: add it again with Add remote endpoint…")
            return
        self.lid += 1
        self.loading_lid = self.lid
        self.model_entry = remote_entry(ep)
        self.picker.set_current(path)
        self.model_label.setText(f"Connecting to {self.model_entry.name}…")
        self.worker.load_remote(self.lid, path, dict(ep, timeout=TIMEOUT))
