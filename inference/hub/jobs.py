"""Download jobs as stored in the state file, and where their files go.

    models_dir/<owner>__<name>/<path in the repository>      (split parts keep their folder)

The state file is JSON {"version": 1, "jobs": [...]}, replaced atomically on every change.
"""
from __future__ import annotations

import json
import os
import shutil
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import DownloadError
from .variants import RepoFile

STATES = ("queued", "running", "paused", "done", "failed", "cancelled")


@dataclass
class JobStatus:
    job_id: str
    repo_id: str
    name: str
    state: str
    done_bytes: int
    total_bytes: int
    speed_bps: float
    eta_s: float | None
    error: str
    local_paths: list[str]


@dataclass
class Job:
    job_id: str
    repo_id: str
    name: str
    files: list[RepoFile]
    state: str = "queued"
    error: str = ""
    completed: list[str] = field(default_factory=list)   # repo paths verified and renamed
    done_bytes: int = 0
    dest: str = ""          # the models folder it writes into, as it was when added ("": the manager's)
    samples: deque = field(default_factory=deque, repr=False)   # (time, done_bytes) for the speed

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict:
        return {"job_id": self.job_id, "repo_id": self.repo_id, "name": self.name,
                "files": [asdict(f) for f in self.files], "state": self.state,
                "error": self.error, "completed": self.completed, "done_bytes": self.done_bytes,
                "dest": self.dest}

    @classmethod
    def from_json(cls, d: dict) -> Job:
        files = [RepoFile(str(f["path"]), int(f["size"]), f.get("sha256"), str(f.get("revision", "main")))
                 for f in d["files"]]
        state = d.get("state", "queued")
        if state not in STATES:
            state = "failed"
        return cls(str(d["job_id"]), str(d["repo_id"]), str(d.get("name", "")), files, state,
                   str(d.get("error", "")), [str(p) for p in d.get("completed", [])],
                   int(d.get("done_bytes", 0)), str(d.get("dest") or ""))


def repo_dir_name(repo_id: str) -> str:
    return repo_id.replace("/", "__")


def local_path(models_dir: Path, repo_id: str, path: str) -> Path:
    """Where a repository file is stored; refuses paths that would leave the models folder."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in path:
        raise DownloadError(f"{repo_id}: refusing the file name {path!r} (it would be written "
                            "outside the models folder)")
    return Path(models_dir) / repo_dir_name(repo_id) / Path(*parts)


def default_state_file() -> Path:
    """Where the app keeps its download queue (the CLI keeps its own in the models folder)."""
    from ..paths import data_dir

    return data_dir() / "hub-downloads.json"


def free_space(path: Path) -> int:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free



def save_jobs(state_file: Path, jobs: list[Job]) -> None:
    data = {"version": 1, "jobs": [j.to_json() for j in jobs]}
    state_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_file.with_name(state_file.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, state_file)


def load_jobs(state_file: Path) -> tuple[list[Job], str]:
    """(jobs, problem): a damaged file is moved aside to NAME.broken and reported, not raised."""
    if not state_file.is_file():
        return [], ""
    try:
        data = json.loads(state_file.read_text())
        return [Job.from_json(d) for d in data.get("jobs", [])], ""
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        broken = state_file.with_name(state_file.name + ".broken")
        os.replace(state_file, broken)
        return [], (f"The download list {state_file} was unreadable ({e}); it was "
                    f"moved to {broken.name} and the list starts empty.")
