"""Host-wide GPU claims: real engines, separate database files, two Unix users, one scripted box.

The box is the file-backed fake NVML (tests/gpu_box.py): trials really allocate on it and one that
does not fit fails with PyTorch's CUDA out-of-memory traceback, so "never oversubscribed" is
checked twice: no trial ran out of memory, and the recorded placement spans of all engines never
hold more of a GPU than it has.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from hpotui.engine.gpus.gpu_claims import ClaimedGpu, ClaimRecord, ClaimRegistry, RegistryUnusable, trial_key
from tests.gpu_box import (GIB, FakeGpu, box_env, events, finish, launch, make_box, overlapping_on_a_gpu,
                           space_file, trials)

REPO = Path(__file__).resolve().parents[1]


def record(registry: ClaimRegistry, trial_id: int, *, gpu: int = 0, pid: int | None = None,
           uid: int | None = None, start: float | None = None) -> ClaimRecord:
    pid = os.getpid() if pid is None else pid
    import psutil

    return ClaimRecord(key=trial_key("/x/h.db", trial_id), uid=registry.uid if uid is None else uid,
                       user=registry.user, db="/x/h.db", study="s", trial_id=trial_id, trial_number=trial_id,
                       gpus=(ClaimedGpu(gpu, f"GPU-fake-{gpu:04d}"),), fraction=1.0, memory_bytes=None,
                       engine_pid=pid, engine_start=psutil.Process(pid).create_time() if start is None else start)


# --- the folder and its files ------------------------------------------------------------------------

def test_folder_files_and_modes(tmp_path: Path) -> None:
    root = tmp_path / "claims"
    registry = ClaimRegistry.open(root)
    assert stat.S_IMODE(os.lstat(root).st_mode) == 0o1777
    own = root / f"user-{os.geteuid()}"
    assert stat.S_IMODE(os.lstat(own).st_mode) == 0o755 and os.lstat(own).st_uid == os.geteuid()
    path = registry.write(record(registry, 1))
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o644
    assert [c.key for c in registry.claims()] == [trial_key("/x/h.db", 1)]
    registry.remove(trial_key("/x/h.db", 1))
    assert registry.claims() == []


def test_dead_engines_claims_are_ignored_and_removed_by_their_owner(tmp_path: Path) -> None:
    registry = ClaimRegistry.open(tmp_path / "claims")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    registry.write(record(registry, 1, pid=dead.pid, start=time.time() - 5))
    reused = record(registry, 2, start=1.0)  # our pid, but another start time: a reused pid
    registry.write(reused)
    registry.write(record(registry, 3))
    assert [c.trial_id for c in registry.claims()] == [3]
    assert sorted(p.name for p in registry.own.iterdir()) == [f"{trial_key('/x/h.db', 3)}.json"]


def test_a_symlinked_or_foreign_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RegistryUnusable, match="symbolic link"):
        ClaimRegistry.open(tmp_path / "link")
    (tmp_path / "file").write_text("")
    with pytest.raises(RegistryUnusable, match="not a folder"):
        ClaimRegistry.open(tmp_path / "file")
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    ClaimRegistry.open(mine)  # our own folder with the wrong mode is repaired
    assert stat.S_IMODE(os.lstat(mine).st_mode) == 0o1777


def test_planted_links_fifos_and_forged_claims_are_skipped(tmp_path: Path) -> None:
    registry = ClaimRegistry.open(tmp_path / "claims")
    registry.write(record(registry, 1))
    secret = tmp_path / "secret.json"
    secret.write_text(record(registry, 9).to_json())
    (registry.own / "link.json").symlink_to(secret)
    os.mkfifo(registry.own / "fifo.json")  # opening it for reading would block without O_NONBLOCK
    (registry.own / "garbage.json").write_text("{not json")
    lie = record(registry, 5, uid=registry.uid + 4242)  # a uid that is not the file's owner
    (registry.own / f"{lie.key}.json").write_text(lie.to_json())
    assert [c.trial_id for c in registry.claims()] == [1]


# --- two engines, two database files -------------------------------------------------------------------

def test_two_engines_with_two_databases_never_oversubscribe_whole_gpus(tmp_path: Path) -> None:
    make_box(tmp_path, [FakeGpu(), FakeGpu()])
    env = box_env(tmp_path)
    engines = []
    for name in ("alpha", "beta"):
        folder = tmp_path / name
        folder.mkdir()
        space = space_file(tmp_path, name, gib=70, resources="{gpus_per_trial: 1}", trials=6, parallel=2,
                           hold=(0.3, 0.8))
        engines.append((folder / "h.db", launch(space, folder / "h.db", env)))
    outputs = [finish(proc) for _, proc in engines]
    dbs = [db for db, _ in engines]
    statuses = [t["status"] for db in dbs for t in trials(db)]
    assert statuses == ["completed"] * 12, outputs  # a second trial on a taken GPU would have run out of memory
    assert overlapping_on_a_gpu(dbs, {"fraction": 1.0}) == []
    assert any("waiting for 1 GPU" in out for out in outputs)  # they did meet: 4 asked, 2 GPUs
    assert not any("host-wide GPU claims unavailable" in out for out in outputs)
    assert list((tmp_path / "claims" / f"user-{os.geteuid()}").glob("*.json")) == []  # all claims returned


def test_mixed_memory_sizes_from_two_engines_pack_and_fit(tmp_path: Path) -> None:
    make_box(tmp_path, [FakeGpu(), FakeGpu(memory_used=20 * GIB, processes={4_000_000: 20 * GIB})])
    env = box_env(tmp_path)
    engines = []
    for name, gib, claim in (("big", 28, "30GiB"), ("small", 14, "16GiB")):
        folder = tmp_path / name
        folder.mkdir()
        space = space_file(tmp_path, name, gib=gib, resources=f"{{gpu_memory: {claim}, avoid_busy: false}}",
                           trials=8, parallel=4, hold=(0.5, 1.0))
        engines.append((folder / "h.db", launch(space, folder / "h.db", env)))
    outputs = [finish(proc) for _, proc in engines]
    dbs = [db for db, _ in engines]
    assert [t["status"] for db in dbs for t in trials(db)] == ["completed"] * 16, outputs
    assert overlapping_on_a_gpu(dbs, {"bytes": 80 * GIB}) == []  # 80 GiB per GPU (GPU 1 has 60 left)
    assert {t["gpu_memory"] for t in trials(dbs[0])} == {30 * GIB}
    reasons = [e["data"].get("placement", "") for db in dbs for e in events(db, "started")]
    packed = [r for r in reasons if re.match(r"GPU \d: [2-9] trials, [\d.]+ of 80 GiB claimed", r)]
    assert packed, reasons  # several trials shared a GPU
    for reason in reasons:
        claimed = float(re.search(r"([\d.]+) of 80 GiB", reason).group(1))  # type: ignore[union-attr]
        assert claimed <= 80


def test_an_unusable_claims_folder_falls_back_with_one_warning(tmp_path: Path) -> None:
    make_box(tmp_path, [FakeGpu()])
    (tmp_path / "target").mkdir()
    (tmp_path / "claims-link").symlink_to(tmp_path / "target")
    space = space_file(tmp_path, "solo", gib=10, resources="{gpus_per_trial: 1}", trials=2, parallel=1, hold=(0.1, 0.2))
    out = finish(launch(space, tmp_path / "h.db", box_env(tmp_path, tmp_path / "claims-link")))
    warnings = [line for line in out.splitlines() if "host-wide GPU claims unavailable" in line]
    assert len(warnings) == 1 and "symbolic link" in warnings[0]
    assert [t["status"] for t in trials(tmp_path / "h.db")] == ["completed"] * 2
    assert [e["level"] for e in events(tmp_path / "h.db", "gpu_claims")] == ["warning"]
    assert list((tmp_path / "target").iterdir()) == []  # nothing written through the link


# --- two Unix users --------------------------------------------------------------------------------------

def _can_make_users() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a second Unix user (useradd); run the suite as root or in a container"
    if shutil.which("useradd") is None or shutil.which("setpriv") is None:
        return "useradd / setpriv not installed"
    return None


@pytest.fixture
def other_user() -> Iterator[str]:
    problem = _can_make_users()
    if problem:
        pytest.skip(problem)
    name = f"hpotui{os.getpid() % 100000}"
    made = subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"useradd failed: {made.stderr.strip()}")
    probe = subprocess.run([*user_prefix(name), sys.executable, "-c", "import hpotui.engine.gpus.gpu_claims"],
                           capture_output=True, text=True, env=box_env(Path("/tmp")))
    if probe.returncode != 0:
        subprocess.run(["userdel", name], capture_output=True)
        pytest.skip(f"cannot run this interpreter as a second user: {probe.stderr.strip()[-200:]}")
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True)


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder both users can reach and create in, like /dev/shm (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="hpotui-two-users-", dir="/tmp"))
    folder.chmod(0o1777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def user_prefix(user: str) -> tuple[str, ...]:
    """Run as ``user``, keeping only CAP_DAC_READ_SEARCH (read and traverse), across exec.

    The test interpreter may live under /root (mode 700), which a new user cannot reach; this
    capability lets it read those files and nothing more: creating, changing, renaming or
    deleting a file is still judged by the user's own uid, which is what these tests check.
    """
    entry = pwd.getpwnam(user)
    return ("setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search")


def as_user(user: str, code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*user_prefix(user), sys.executable, "-c", code], env=env, text=True,
                          capture_output=True, timeout=60, cwd="/")


def test_two_users_share_the_claims_and_never_oversubscribe(other_user: str, shared_folder: Path) -> None:
    make_box(shared_folder, [FakeGpu(), FakeGpu()])
    env = box_env(shared_folder)
    uid = pwd.getpwnam(other_user).pw_uid
    engines = []
    for name, prefix in (("rootstudy", ()), ("userstudy", user_prefix(other_user))):
        folder = shared_folder / name
        folder.mkdir()
        if prefix:
            os.chown(folder, uid, -1)
        space = space_file(shared_folder, name, gib=70, resources="{gpus_per_trial: 1}", trials=5, parallel=2,
                           hold=(0.4, 0.9))
        engines.append((folder / "h.db", launch(space, folder / "h.db", env, prefix)))
    outputs = [finish(proc) for _, proc in engines]
    dbs = [db for db, _ in engines]
    assert os.stat(dbs[1]).st_uid == uid  # the second study really ran as the other user
    assert not any("host-wide GPU claims unavailable" in out for out in outputs), outputs
    assert [t["status"] for db in dbs for t in trials(db)] == ["completed"] * 10, \
        ([(t["status"], (t["status_reason"] or "")[:40], t["gpus"], t["created_at"], t["finished_at"]) for db in dbs
          for t in trials(db)], [line for out in outputs for line in out.splitlines() if "warn" in line])
    assert overlapping_on_a_gpu(dbs, {"fraction": 1.0}) == []
    claims = shared_folder / "claims"
    assert os.lstat(claims / f"user-{uid}").st_uid == uid and os.lstat(claims / "user-0").st_uid == 0


def test_a_user_cannot_delete_or_forge_another_users_claims(other_user: str, shared_folder: Path) -> None:
    claims = shared_folder / "claims"
    registry = ClaimRegistry.open(claims)  # root's, with a live claim (this test process)
    mine = registry.write(record(registry, 1))
    env = box_env(shared_folder)
    code = f"""
import os, sys
from pathlib import Path
import psutil
from hpotui.engine.gpus.gpu_claims import ClaimRegistry, ClaimRecord, ClaimedGpu, trial_key
claims, target = Path({str(claims)!r}), Path({str(mine)!r})
results = []
for what, attempt in (("delete", lambda: os.unlink(target)),
                      ("overwrite", lambda: open(target, "w").write("{{}}")),
                      ("add", lambda: open(target.parent / "forged.json", "w").write("{{}}")),
                      ("rename folder", lambda: os.rename(target.parent, claims / "user-0-gone"))):
    try:
        attempt()
        results.append(what + ": done")
    except PermissionError:
        results.append(what + ": refused")
registry = ClaimRegistry.open(claims)
pretend_root = ClaimRecord(key="forged-root", uid=0, user="root", db="/x", study="s", trial_id=7, trial_number=7,
                           gpus=(ClaimedGpu(1),), fraction=1.0, memory_bytes=None, engine_pid={os.getpid()},
                           engine_start=0.0)
(registry.own / "forged-root.json").write_text(pretend_root.to_json())  # says root, file is ours
borrowed = ClaimRecord(key="borrowed", uid=registry.uid, user=registry.user, db="/x", study="s", trial_id=8,
                       trial_number=8, gpus=(ClaimedGpu(1),), fraction=1.0, memory_bytes=None,
                       engine_pid={os.getpid()}, engine_start=psutil.Process({os.getpid()}).create_time())
# ^ root's live process named as "our" engine: its owner is not us, so the claim is not believed
registry.write(borrowed)
print(";".join(results))
print(sorted(c.key for c in registry.claims()))
"""
    result = as_user(other_user, code, env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "delete: refused;overwrite: refused;add: refused;rename folder: refused"
    assert lines[1] == f"[{trial_key('/x/h.db', 1)!r}]"  # sees root's claim, not its own forgeries
    assert mine.exists() and [c.trial_id for c in registry.claims()] == [1]  # root does not believe them either
