"""Downloads against the fake hub: verified files, resumes after cuts, pauses and restarts,
retries on server errors, checksum failures, gated files, a full disk, cancel, offline."""
from __future__ import annotations

import json
import time

import pytest

from inference.hub import DownloadError, DownloadManager, RepoFile, Variant, list_variants, local_path
from inference.hub.transfer import CHUNK
from tests.fake_hub import GOOD_TOKEN, golden_bytes

FAST = dict(backoff=(0.01, 0.05))


def wait_until(cond, timeout: float = 60.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def manager(models_dir, tmp_path):
    made = []

    def make(**kw):
        m = DownloadManager(models_dir, tmp_path / "state.json", **{**FAST, **kw})
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


def variant(repo: str, name: str, token: str | None = None) -> Variant:
    return next(v for v in list_variants(repo, token=token) if v.name == name)


def ranges(hub, path: str) -> list[str | None]:
    return [r.headers.get("range") for r in hub.file_requests(path)]


def test_download_lands_verified_where_the_library_finds_it(fake_hub, tiny_repo, manager, models_dir, tmp_path):
    from app.library import Library
    from app.store import Store

    updates = []
    m = manager(on_update=updates.append)
    job = m.add(tiny_repo, variant(tiny_repo, "Q4_K_M"))
    s = m.wait(job, 60)
    data = golden_bytes("tiny-llama-Q4_K_M")
    assert (s.state, s.done_bytes, s.total_bytes, s.error) == ("done", len(data), len(data), "")
    (path,) = s.local_paths
    assert path == str(models_dir / "test__tiny-llama-GGUF" / "tiny-llama-Q4_K_M.gguf")
    assert open(path, "rb").read() == data
    assert not list(models_dir.rglob("*.part"))
    states = [u.state for u in updates]
    assert states[0] == "queued" and states[-1] == "done" and "running" in states
    assert all(0 <= u.done_bytes <= u.total_bytes for u in updates)
    store = Store(tmp_path / "lectern.db")
    lib = Library(store, models_dir, builtin=path)
    entry = lib.entry(path, "folder")
    assert entry.ok and entry.architecture == "llama", entry.error
    assert path in [p for p, _ in lib.paths()]
    store.close()
    # adding it again is the same, finished job
    assert m.add(tiny_repo, variant(tiny_repo, "Q4_K_M")) == job
    assert len(fake_hub.file_requests("tiny-llama-Q4_K_M.gguf")) == 1


def test_dropped_connections_resume_with_range(fake_hub, tiny_repo, manager):
    name = "tiny-llama-Q8_0.gguf"
    fake_hub.cut(name, 3 * CHUNK + 100, 2 * CHUNK)       # two cuts mid-file
    m = manager()
    s = m.wait(m.add(tiny_repo, variant(tiny_repo, "Q8_0")), 60)
    assert s.state == "done", s.error
    assert open(s.local_paths[0], "rb").read() == golden_bytes("tiny-llama-Q8_0")
    r = ranges(fake_hub, name)
    assert r[0] is None and len(r) == 3
    starts = [int(x.split("=")[1].rstrip("-")) for x in r[1:]]
    assert 0 < starts[0] <= 3 * CHUNK + 100 and starts[1] > starts[0]


def test_server_errors_are_retried(fake_hub, tiny_repo, manager):
    fake_hub.fail_next("tiny-llama-Q4_0.gguf", 503, 500, 429)
    s = (m := manager()).wait(m.add(tiny_repo, variant(tiny_repo, "Q4_0")), 60)
    assert s.state == "done" and len(fake_hub.file_requests("tiny-llama-Q4_0.gguf")) == 4


def test_too_many_failures_fail_the_job_and_keep_the_part(fake_hub, tiny_repo, manager, models_dir):
    name = "tiny-llama-Q6_K.gguf"
    fake_hub.cut(name, 2 * CHUNK)
    gate = fake_hub.hold(name, 2 * CHUNK)
    m = manager(retries=2)
    job = m.add(tiny_repo, variant(tiny_repo, "Q6_K"))
    wait_until(lambda: m.status(job).done_bytes >= 2 * CHUNK, what="2 chunks")
    fake_hub.fail_next(name, 502, 502)             # the cut, then two errors: 3 > retries=2
    gate.set()
    s = m.wait(job, 60)
    assert s.state == "failed" and "failed 3 times in a row (HTTP 502)" in s.error
    assert "the partial file is kept: resume the download to continue" in s.error
    part = local_path(models_dir, tiny_repo, name).with_name(name + ".part")
    assert part.stat().st_size == s.done_bytes == 2 * CHUNK
    m.resume(s.job_id)                             # the server is fine again
    s = m.wait(s.job_id, 60)
    assert s.state == "done" and ranges(fake_hub, name)[-1] == f"bytes={2 * CHUNK}-"
    assert open(s.local_paths[0], "rb").read() == golden_bytes("tiny-llama-Q6_K")


def test_wrong_checksum_deletes_the_file(fake_hub, tiny_repo, manager, models_dir):
    fake_hub.wrong_sha(tiny_repo, "tiny-llama-Q4_0.gguf")
    s = (m := manager()).wait(m.add(tiny_repo, variant(tiny_repo, "Q4_0")), 60)
    assert s.state == "failed" and s.local_paths == [] and s.done_bytes == 0
    assert "is corrupt: its sha256 is" in s.error and "the downloaded file was deleted" in s.error
    assert not [p for p in models_dir.rglob("*") if p.is_file()]


def test_corrupt_part_from_an_earlier_run_is_caught(fake_hub, tiny_repo, manager, models_dir):
    v = variant(tiny_repo, "Q4_0")
    target = local_path(models_dir, tiny_repo, v.first.path)
    target.parent.mkdir(parents=True)
    target.with_name(target.name + ".part").write_bytes(b"\x00" * 5000)   # not the file's bytes
    s = (m := manager()).wait(m.add(tiny_repo, v), 60)
    assert s.state == "failed" and "corrupt" in s.error
    assert ranges(fake_hub, v.first.path) == ["bytes=5000-"]
    assert not target.exists() and not target.with_name(target.name + ".part").exists()


def test_part_from_an_earlier_run_is_continued(fake_hub, tiny_repo, manager, models_dir):
    v = variant(tiny_repo, "Q6_K")
    data = golden_bytes("tiny-llama-Q6_K")
    target = local_path(models_dir, tiny_repo, v.first.path)
    target.parent.mkdir(parents=True)
    target.with_name(target.name + ".part").write_bytes(data[:123457])
    s = (m := manager()).wait(m.add(tiny_repo, v), 60)
    assert s.state == "done" and target.read_bytes() == data
    assert ranges(fake_hub, v.first.path) == ["bytes=123457-"]


def test_server_ignoring_range_restarts_the_file(fake_hub, tiny_repo, manager):
    fake_hub.no_range = True
    fake_hub.cut("tiny-llama-Q4_0.gguf", 2 * CHUNK + 5)
    s = (m := manager()).wait(m.add(tiny_repo, variant(tiny_repo, "Q4_0")), 60)
    assert s.state == "done" and open(s.local_paths[0], "rb").read() == golden_bytes("tiny-llama-Q4_0")
    assert len(fake_hub.file_requests("tiny-llama-Q4_0.gguf")) == 2


def test_redirected_files_keep_their_range(fake_hub, tiny_repo, manager):
    fake_hub.redirect = True
    name = "tiny-llama-Q6_K.gguf"
    fake_hub.cut(name, 2 * CHUNK)
    s = (m := manager()).wait(m.add(tiny_repo, variant(tiny_repo, "Q6_K")), 60)
    assert s.state == "done" and open(s.local_paths[0], "rb").read() == golden_bytes("tiny-llama-Q6_K")
    assert [r.headers.get("range") for r in fake_hub.file_requests(name, cdn=True)] == [
        None, f"bytes={2 * CHUNK}-"]


def test_stalled_transfer_times_out_and_resumes(fake_hub, tiny_repo, manager):
    name = "tiny-llama-Q4_0.gguf"
    fake_hub.hold(name, CHUNK)                       # never released: the server goes silent
    m = manager(read_timeout=0.5)
    s = m.wait(m.add(tiny_repo, variant(tiny_repo, "Q4_0")), 60)
    assert s.state == "done" and open(s.local_paths[0], "rb").read() == golden_bytes("tiny-llama-Q4_0")
    assert ranges(fake_hub, name) == [None, f"bytes={CHUNK}-"]


def test_slow_transfer_reports_speed_and_eta(fake_hub, tiny_repo, manager):
    fake_hub.slow("tiny-llama-F16.gguf", 0.005)
    updates = []
    m = manager(on_update=updates.append)
    assert m.wait(m.add(tiny_repo, variant(tiny_repo, "F16")), 120).state == "done"
    moving = [u for u in updates if u.state == "running" and u.speed_bps > 0]
    assert moving, "no progress update carried a speed"
    for u in moving:
        assert u.eta_s is not None and abs(u.eta_s * u.speed_bps - (u.total_bytes - u.done_bytes)) < 1
    done = [u.done_bytes for u in updates if u.state == "running"]
    assert done == sorted(done)


def test_files_come_from_the_listed_commit(fake_hub, tiny_repo, manager, models_dir):
    """A commit upstream while a download is paused: resume finishes the listed version (its
    bytes match its sha256); adding the variant again from a new listing starts the new one."""
    name = "tiny-llama-Q6_K.gguf"
    old = golden_bytes("tiny-llama-Q6_K")
    listed = fake_hub.repos[tiny_repo].sha
    gate = fake_hub.hold(name, 2 * CHUNK)
    m = manager()
    job = m.add(tiny_repo, variant(tiny_repo, "Q6_K"))
    wait_until(lambda: m.status(job).done_bytes >= 2 * CHUNK, what="2 chunks")
    m.pause(job)
    gate.set()
    assert m.wait(job, 60).state == "paused"
    new = old[::-1]
    fake_hub.commit(tiny_repo, name, new)
    m.resume(job)
    s = m.wait(job, 60)
    assert s.state == "done" and open(s.local_paths[0], "rb").read() == old
    assert {r.path.split("/resolve/")[1].split("/")[0] for r in fake_hub.file_requests(name)} == {listed}
    # the new listing: a new job is not needed, the finished one is refreshed
    target = local_path(models_dir, tiny_repo, name)
    target.unlink()
    part = target.with_name(name + ".part")
    part.write_bytes(old[:50_000])                   # a stale partial of the old version
    s = m.wait(m.add(tiny_repo, variant(tiny_repo, "Q6_K")), 60)
    assert s.state == "done" and target.read_bytes() == new
    assert fake_hub.file_requests(name)[-1].headers.get("range") is None    # started over


def test_gated_files_need_the_token(fake_hub, manager):
    fake_hub.add_repo("g/gated-GGUF", {"m-Q4_0.gguf": golden_bytes("tiny-llama-Q4_0")}, gated=True)
    v = variant("g/gated-GGUF", "Q4_0")
    s = (m := manager()).wait(m.add("g/gated-GGUF", v), 60)
    assert s.state == "failed" and "accept its licence on https://huggingface.co/g/gated-GGUF" in s.error
    assert len(fake_hub.file_requests("m-Q4_0.gguf")) == 1         # not retried
    s = (m2 := manager(token=GOOD_TOKEN)).wait(m2.add("g/gated-GGUF", v), 60)
    assert s.state == "done"


def test_file_gone_from_the_repository(fake_hub, tiny_repo, manager):
    v = variant(tiny_repo, "Q4_0")
    del fake_hub.repos[tiny_repo].files["tiny-llama-Q4_0.gguf"]
    s = (m := manager()).wait(m.add(tiny_repo, v), 60)
    assert s.state == "failed" and "tiny-llama-Q4_0.gguf in test/tiny-llama-GGUF does not exist" in s.error


def test_full_disk_is_refused_before_downloading(fake_hub, tiny_repo, manager, models_dir):
    quota = 64 << 20    # the disk check keeps 16 MiB spare: a 5 MB file needs more than this leaves
    m = manager(disk_free=lambda path: quota - (16 << 20) - 100)
    v = variant(tiny_repo, "Q4_0")
    fits = m.wait(m.add(tiny_repo, v), 60)
    assert fits.state == "done"
    m.disk_free = lambda path: 1000
    s = m.wait(m.add(tiny_repo, variant(tiny_repo, "F16")), 60)
    assert s.state == "failed" and "Not enough disk space" in s.error and "only 1000 B is free" in s.error
    assert not fake_hub.file_requests("tiny-llama-F16.gguf")


def test_pause_and_resume(fake_hub, tiny_repo, manager, models_dir):
    name = "tiny-llama-F16.gguf"
    gate = fake_hub.hold(name, 3 * CHUNK)
    m = manager()
    job = m.add(tiny_repo, variant(tiny_repo, "F16"))
    wait_until(lambda: m.status(job).done_bytes >= 3 * CHUNK, what="3 chunks")
    m.pause(job)
    gate.set()
    s = m.wait(job, 60)
    part = local_path(models_dir, tiny_repo, name).with_name(name + ".part")
    assert s.state == "paused" and 3 * CHUNK <= part.stat().st_size < s.total_bytes
    kept = part.stat().st_size
    assert s.done_bytes == kept
    m.resume(job)
    s = m.wait(job, 60)
    assert s.state == "done" and open(s.local_paths[0], "rb").read() == golden_bytes("tiny-llama-F16")
    assert ranges(fake_hub, name) == [None, f"bytes={kept}-"]


def test_restart_resumes_an_interrupted_download(fake_hub, tiny_repo, manager, tmp_path, models_dir):
    name = "tiny-llama-F16.gguf"
    fake_hub.hold(name, 2 * CHUNK)                   # the server stalls, the app quits
    m = manager(read_timeout=3.0)                    # (close() must come before this runs out)
    job = m.add(tiny_repo, variant(tiny_repo, "F16"))
    wait_until(lambda: m.status(job).done_bytes >= 2 * CHUNK, what="2 chunks")
    m.close()                                        # returns once the stalled read times out
    saved = json.loads((tmp_path / "state.json").read_text())["jobs"]
    assert [(j["job_id"], j["state"]) for j in saved] == [(job, "queued")]
    part = local_path(models_dir, tiny_repo, name).with_name(name + ".part")
    kept = part.stat().st_size
    assert 2 * CHUNK <= kept < len(golden_bytes("tiny-llama-F16"))
    m2 = manager()                                   # next start: continues by itself
    s = m2.wait(job, 60)
    assert s.state == "done" and open(s.local_paths[0], "rb").read() == golden_bytes("tiny-llama-F16")
    assert ranges(fake_hub, name)[-1] == f"bytes={kept}-"


def test_paused_job_stays_paused_after_restart(fake_hub, tiny_repo, manager):
    gate = fake_hub.hold("tiny-llama-F16.gguf", CHUNK)
    m = manager()
    job = m.add(tiny_repo, variant(tiny_repo, "F16"))
    wait_until(lambda: m.status(job).done_bytes >= CHUNK, what="a chunk")
    m.pause(job)
    gate.set()
    assert m.wait(job, 60).state == "paused"
    m.close()
    m2 = manager()
    assert m2.status(job).state == "paused" and m2.status(job).done_bytes >= CHUNK
    m2.resume(job)
    assert m2.wait(job, 60).state == "done"


def test_cancel_deletes_the_partial_file(fake_hub, tiny_repo, manager, models_dir):
    gate = fake_hub.hold("tiny-llama-F16.gguf", 2 * CHUNK)
    m = manager()
    job = m.add(tiny_repo, variant(tiny_repo, "F16"))
    queued = m.add(tiny_repo, variant(tiny_repo, "Q4_0"))
    wait_until(lambda: m.status(job).done_bytes >= 2 * CHUNK, what="2 chunks")
    assert m.status(queued).state == "queued"                # one download at a time
    m.pause(queued)
    m.cancel(job)
    gate.set()
    assert m.wait(job, 60).state == "cancelled"
    assert not [p for p in models_dir.rglob("*") if p.is_file()]
    m.cancel(queued)
    assert m.status(queued).state == "cancelled"
    m.remove(job)
    assert [s.job_id for s in m.jobs()] == [queued]


def test_queue_runs_jobs_in_order(fake_hub, tiny_repo, manager):
    m = manager()
    ids = [m.add(tiny_repo, variant(tiny_repo, q)) for q in ("Q4_0", "Q6_K", "Q4_K_M")]
    assert [m.wait(i, 60).state for i in ids] == ["done"] * 3
    order = [r.path.rsplit("/", 1)[-1] for r in fake_hub.requests if "/resolve/" in r.path]
    assert order == ["tiny-llama-Q4_0.gguf", "tiny-llama-Q6_K.gguf", "tiny-llama-Q4_K_M.gguf"]


def test_split_variant_downloads_every_part(fake_hub, manager, models_dir):
    p1, p2 = b"GGUF" + b"a" * 300_000, b"b" * 200_000
    fake_hub.add_repo("s/split-GGUF", {"Q2_K/m-Q2_K-00001-of-00002.gguf": p1,
                                       "Q2_K/m-Q2_K-00002-of-00002.gguf": p2})
    fake_hub.cut("Q2_K/m-Q2_K-00002-of-00002.gguf", CHUNK)
    s = (m := manager()).wait(m.add("s/split-GGUF", variant("s/split-GGUF", "Q2_K")), 60)
    assert s.state == "done" and s.done_bytes == s.total_bytes == len(p1) + len(p2)
    d = models_dir / "s__split-GGUF" / "Q2_K"
    assert [p.name for p in s.local_paths and sorted(d.iterdir())] == [
        "m-Q2_K-00001-of-00002.gguf", "m-Q2_K-00002-of-00002.gguf"]
    assert (d / "m-Q2_K-00002-of-00002.gguf").read_bytes() == p2


def test_offline_download_fails_with_the_offline_message(fake_hub, tiny_repo, manager):
    v = variant(tiny_repo, "Q4_0")
    fake_hub.stop()
    s = (m := manager(retries=2)).wait(m.add(tiny_repo, v), 60)
    assert s.state == "failed" and "offline or unreachable" in s.error


def test_unwritable_models_folder(fake_hub, tiny_repo, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    m = DownloadManager(blocker / "models", tmp_path / "state.json", **FAST)
    try:
        s = m.wait(m.add(tiny_repo, variant(tiny_repo, "Q4_0")), 60)
    finally:
        m.close()
    assert s.state == "failed" and s.error.startswith(f"Cannot write the download into {blocker / 'models'}")


def test_offline_mode_variable_stops_downloads(fake_hub, tiny_repo, manager, monkeypatch):
    from huggingface_hub import constants

    v = variant(tiny_repo, "Q4_0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    s = (m := manager()).wait(m.add(tiny_repo, v), 60)
    assert s.state == "failed" and "offline mode is on (HF_HUB_OFFLINE)" in s.error
    assert not fake_hub.file_requests("tiny-llama-Q4_0.gguf")


def test_paths_outside_the_models_folder_are_refused(models_dir, manager):
    m = manager()
    for bad in ("../evil.gguf", "/etc/x.gguf", "a/../../b.gguf", "a\\..\\b.gguf"):
        with pytest.raises(DownloadError, match="outside the models folder"):
            m.add("o/r", Variant("Q4_0", "Q4_0", [RepoFile(bad, 10, None)]))


def test_state_entries_pointing_outside_are_dropped(tmp_path, models_dir):
    good = {"job_id": "a", "repo_id": "o/r", "name": "Q4_0", "state": "paused",
            "files": [{"path": "m-Q4_0.gguf", "size": 10, "sha256": None}]}
    bad = dict(good, job_id="b", files=[{"path": "../../evil.gguf", "size": 10}])
    worse = dict(good, job_id="c", repo_id="..")
    (tmp_path / "state.json").write_text(json.dumps({"version": 1, "jobs": [good, bad, worse]}))
    m = DownloadManager(models_dir, tmp_path / "state.json")
    try:
        assert [s.job_id for s in m.jobs()] == ["a"] and m.status("a").state == "paused"
        assert "Dropped a download" in m.load_error and "outside the models folder" in m.load_error
    finally:
        m.close()


def test_a_changed_models_folder_takes_new_jobs_and_old_jobs_keep_theirs(fake_hub, tiny_repo, manager,
                                                                        models_dir, tmp_path):
    m = manager()
    first = m.add(tiny_repo, variant(tiny_repo, "Q4_K_M"))
    assert m.wait(first, 60).state == "done"
    other = tmp_path / "other-models"
    m.models_dir = other
    second = m.add(tiny_repo, variant(tiny_repo, "Q4_K_M"))       # not the job in the old folder
    assert second != first and m.wait(second, 60).state == "done"
    name = "tiny-llama-Q4_K_M.gguf"
    want = {first: str(local_path(models_dir, tiny_repo, name)), second: str(local_path(other, tiny_repo, name))}
    assert {j: m.status(j).local_paths[0] for j in want} == want
    assert all(open(p, "rb").read() == golden_bytes("tiny-llama-Q4_K_M") for p in want.values())
    m.close()
    m2 = manager()                                    # a restart with yet another folder set
    m2.models_dir = tmp_path / "third"
    assert {j: (m2.status(j).state, m2.status(j).local_paths[0]) for j in want} == \
        {j: ("done", p) for j, p in want.items()}


def test_a_relative_job_folder_in_the_state_file_is_dropped(tmp_path, models_dir):
    job = {"job_id": "a", "repo_id": "o/r", "name": "Q4_0", "state": "paused", "dest": "rel/models",
           "files": [{"path": "m-Q4_0.gguf", "size": 10, "sha256": None}]}
    (tmp_path / "state.json").write_text(json.dumps({"version": 1, "jobs": [job]}))
    m = DownloadManager(models_dir, tmp_path / "state.json")
    try:
        assert m.jobs() == [] and "not an absolute path" in m.load_error
    finally:
        m.close()


def test_damaged_state_file_is_set_aside(tmp_path, models_dir):
    (tmp_path / "state.json").write_text("{not json")
    m = DownloadManager(models_dir, tmp_path / "state.json")
    try:
        assert "unreadable" in m.load_error and m.jobs() == []
        assert (tmp_path / "state.json.broken").read_text() == "{not json"
    finally:
        m.close()


def test_a_file_another_lectern_is_downloading_is_left_to_it(fake_hub, tiny_repo, models_dir, tmp_path):
    """The app and `lectern download` keep separate queues over one models folder: the second
    writer of a .part is refused with a message, and cancelling its job leaves the other's file."""
    name = "tiny-llama-Q6_K.gguf"
    gate = fake_hub.hold(name, 2 * CHUNK)
    app = DownloadManager(models_dir, tmp_path / "app.json", **FAST)
    cli = DownloadManager(models_dir, tmp_path / "cli.json", **FAST)
    try:
        first = app.add(tiny_repo, variant(tiny_repo, "Q6_K"))
        wait_until(lambda: app.status(first).done_bytes >= 2 * CHUNK, what="2 chunks")
        s = cli.wait(cli.add(tiny_repo, variant(tiny_repo, "Q6_K")), 60)
        assert s.state == "failed" and "is being downloaded by another Lectern" in s.error
        cli.cancel(s.job_id)
        part = local_path(models_dir, tiny_repo, name).with_name(name + ".part")
        assert part.stat().st_size == 2 * CHUNK
        gate.set()
        s = app.wait(first, 60)
        assert s.state == "done" and open(s.local_paths[0], "rb").read() == golden_bytes("tiny-llama-Q6_K")
    finally:
        gate.set()
        app.close()
        cli.close()
