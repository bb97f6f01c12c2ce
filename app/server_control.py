"""Tools > Local API server: the OpenAI-compatible Server (inference.server) over the app's
loaded engine, on 127.0.0.1 only. The server's generation worker and the app's inference worker
share one lock (InferenceWorker.engine_lock), so the model (and the JIT pool's single job slot)
never runs for both at once: a chat in the window waits for a server request and vice versa."""
from __future__ import annotations

DEFAULT_PORT = 8080


class ServerControl:
    """callable(on: bool) -> status text; the window stores it as `server_toggle`."""

    def __init__(self, window):
        self.window = window
        self.server = None

    @property
    def running(self) -> bool:
        return self.server is not None

    def __call__(self, on: bool) -> str:
        return self.start() if on else self.stop()

    def start(self) -> str:
        from inference import LecternError
        from inference.server import Server

        w = self.window
        if self.server is not None:
            return f"API server running at {self.server.url}/v1"
        worker = w.worker.worker
        if worker.engine is None:
            w.act_server.setChecked(False)
            w.show_banner("Load a model first: the API server serves the loaded model.")
            return "API server not started: no model loaded"
        port = int(w.store.get("server_port", DEFAULT_PORT))
        try:
            self.server = Server(worker.engine, host="127.0.0.1", port=port,
                                 n_ctx=worker.session.n_ctx if worker.session else None,
                                 engine_lock=worker.engine_lock).start()
        except (LecternError, OSError) as e:
            self.server = None
            w.act_server.setChecked(False)
            w.show_banner(f"The API server could not start: port {port} is busy or not allowed "
                          f"({e}). Choose another port (setting server_port) or stop the other "
                          "program.")
            return f"API server not started: port {port} is busy"
        w.server_label.setText(f"API: {self.server.url}/v1")
        w.server_label.setVisible(True)
        return f"API server running at {self.server.url}/v1"

    def stop(self) -> str:
        srv, self.server = self.server, None
        w = self.window
        w.server_label.setVisible(False)
        w.server_label.setText("")
        if srv is None:
            return "API server is off"
        srv.stop()
        return "API server stopped"
