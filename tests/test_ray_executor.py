"""Trials on a Ray cluster: a real local multi-node cluster, the real loop and CLI, real trial processes.

One cluster for the module (starting Ray nodes costs seconds on a small machine): a head node
``alpha`` and a worker node ``beta``, each with one CPU and its own custom resource, so that two
one-CPU trials running at once must land on different nodes. The node-loss test adds a third
node ``gamma`` and removes it mid-trial.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from hpotui.engine.database.store import Store
from tests.conftest import REPO, cli_env, run_cli, start_cli

OBJECT_STORE = 80 * 1024 * 1024  # Ray's smallest allowed is about 75 MiB; the default would be 30% of RAM

# Reports an epoch every 50 ms; with --wait it keeps going until the file `release` appears.
TRAINER = """
import json, os, sys, time
lr = float(sys.argv[1]); wait = "--wait" in sys.argv
print("env", json.dumps({k: os.environ.get(k) for k in ("HPOTUI_TRIAL_ID", "HPOTUI_PARAMS")}), flush=True)
epoch = 0
while epoch < 3 or (wait and not os.path.exists("release")):
    epoch += 1
    time.sleep(0.05)
    print("@hpotui " + json.dumps({"epoch": epoch, "val_acc": lr * epoch}), flush=True)
    print(f"epoch {epoch} pid {os.getpid()}", file=sys.stderr, flush=True)
"""


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {"alpha": 1}, "node_name": "alpha", "object_store_memory": OBJECT_STORE,
        "include_dashboard": False})
    c.add_node(num_cpus=1, resources={"beta": 1}, node_name="beta", object_store_memory=OBJECT_STORE)
    c.wait_for_nodes()
    yield c
    c.shutdown()


@pytest.fixture(scope="module")
def executor(cluster):
    """One driver for the in-process studies: joining the cluster and warming its workers costs seconds."""
    from hpotui.engine.executors.ray import RayExecutor
    from hpotui.engine.space_file.space import Resources

    ex = RayExecutor(cluster.address, grace_period_s=2.0, resources=Resources(cpus_per_trial=1))
    yield ex
    ex.shutdown()


def write_space(tmp_path: Path, *, name: str, command: str, trials: int, parallel: int,
                address: str | None) -> Path:
    (tmp_path / "train.py").write_text(textwrap.dedent(TRAINER))
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""
        name: {name}
        command: {command}
        objective: {{metric: val_acc, mode: max}}
        search: {{algorithm: random, seed: 0}}
        budget: {{max_trials: {trials}, max_parallel: {parallel}, failure_streak: 10}}
        resources: {{cpus_per_trial: 1}}
        {f'executor: {{type: ray, address: "{address}"}}' if address else ""}
        space:
          lr: {{type: loguniform, low: 1e-3, high: 1}}
        """))
    return path


def run_loop(space_path: Path, db: Path, executor):
    """The real loop with the real executor, as the CLI's headless launch runs it."""
    import io

    from hpotui.engine.space_file.space import load_space
    from hpotui.engine.study import Options, StudyLoop

    space = load_space(space_path)
    store = Store(db)
    study = store.create_study(name=space.name, objective_metric="val_acc", objective_mode="max",
                               space_file=str(space_path), space_yaml=space_path.read_text(),
                               space_json=json.dumps({"base_dir": str(space_path.parent)}), parent_id=None,
                               max_parallel=space.budget.max_parallel, headless=True)
    out = io.StringIO()
    code = StudyLoop(store, space, study, Options(headless=True, grace_period_s=2.0, out=out),
                     executor=executor).run()
    return code, store.trials(study.id), out.getvalue(), store, study


def test_without_an_address_a_private_ray_runs_the_study_and_leaves_nothing(tmp_path: Path) -> None:
    """`--executor ray` with no address: a Ray of its own for the study, gone when the study ends."""
    pytest.importorskip("ray")
    space = write_space(tmp_path, name="private", command="python train.py {lr}", trials=2, parallel=2, address=None)
    before = ray_processes()
    result = run_cli("launch", str(space), "--headless", "--executor", "ray", "--db", str(tmp_path / "h.db"),
                     cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    trials = Store(tmp_path / "h.db").trials(Store(tmp_path / "h.db").study("private").id)
    assert [t.status for t in trials] == ["completed", "completed"]
    assert {t.host for t in trials} == {socket.gethostname()}  # Ray's node is named after the machine
    wait_for(lambda: ray_processes() - before, lambda left: not left, timeout=20,
             what="the private Ray's processes to exit")


def test_trials_land_on_both_nodes_and_their_logs_come_home(tmp_path: Path, cluster, executor) -> None:
    space = write_space(tmp_path, name="spread", command="python train.py {lr}", trials=4, parallel=2,
                        address=cluster.address)
    code, trials, out, store, _ = run_loop(space, tmp_path / "h.db", executor)
    assert code == 0, out
    assert [t.status for t in trials] == ["completed"] * 4 and {t.exit_code for t in trials} == {0}
    assert {t.host for t in trials} == {"alpha", "beta"}, out  # one CPU each: two at once means both nodes
    for t in trials:
        stdout = Path(t.stdout_path).read_text()
        assert Path(t.stdout_path).parent == tmp_path / "hpotui_runs" / "spread" / str(t.number)
        env = json.loads(stdout.splitlines()[0].removeprefix("env "))
        assert env["HPOTUI_TRIAL_ID"] == str(t.number) and json.loads(env["HPOTUI_PARAMS"]) == t.params
        assert stdout.count("@hpotui") == 3 and Path(t.stderr_path).read_text().count("epoch") == 3
        assert [m.value for m in store.metrics(t.id, "val_acc")] == pytest.approx([t.params["lr"] * e for e in (1, 2, 3)])
        assert t.best_value == pytest.approx(3 * t.params["lr"]) and t.pid > 0
    assert "running on alpha" in out and "running on beta" in out


def test_a_command_missing_on_the_node_fails_with_its_reason(tmp_path: Path, cluster, executor) -> None:
    space = write_space(tmp_path, name="missing", command="no-such-trainer-xyz {lr}", trials=2, parallel=2,
                        address=cluster.address)
    _, trials, out, _, _ = run_loop(space, tmp_path / "h.db", executor)
    assert [t.status for t in trials] == ["failed", "failed"]
    assert all("could not start 'no-such-trainer-xyz'" in (t.status_reason or "") for t in trials), out
    assert "No such file or directory" in Path(trials[0].stderr_path).read_text()


def test_gpu_readings_come_from_every_node(executor) -> None:
    readings = executor.gpu_readings(wait_s=20.0)
    assert set(readings) >= {"alpha", "beta"}
    assert all(isinstance(gpus, list) for gpus in readings.values())  # no GPU here: empty, never an error


def test_engine_killed_then_resumed_reruns_its_ray_trials(tmp_path: Path, cluster) -> None:
    """kill -9 of the engine: Ray ends its trials (none keeps a GPU), and `resume` runs them again."""
    space = write_space(tmp_path, name="crash", command="python train.py {lr} --wait", trials=2, parallel=2,
                        address=cluster.address)
    db = tmp_path / "h.db"
    engine = start_cli("launch", str(space), "--headless", "--db", str(db), "--grace", "2", cwd=tmp_path)
    try:
        wait_for(lambda: running_hosts(db), lambda h: len(h) == 2 and "(pending)" not in h.values(),
                 what="both trials placed")
        store = Store(db)
        study = store.study("crash")
        wait_for(lambda: [t.reports for t in store.trials(study.id)], lambda r: min(r) >= 1, what="reports")
        pids = [t.pid for t in store.trials(study.id)]
    finally:
        engine.kill()
        engine.wait()
    wait_for(lambda: [pid_alive(p) for p in pids], lambda alive: not any(alive), timeout=20,
             what="the dead engine's trials to end")
    (tmp_path / "release").write_text("")
    result = run_cli("resume", "crash", "--headless", "--db", str(db), cwd=tmp_path, timeout=90)
    assert result.returncode == 0, result.stderr
    trials = store.trials(study.id)
    first, reruns = trials[:2], trials[2:]
    assert [t.status for t in first] == ["interrupted", "interrupted"]
    assert [t.status for t in reruns] == ["completed", "completed"]
    assert sorted(t.rerun_of for t in reruns) == sorted(t.id for t in first)
    assert all(t.reports >= 1 for t in first)  # lines logged before the crash are kept


def test_stop_and_node_loss_mid_trial_through_the_cli(tmp_path: Path, cluster) -> None:
    """alpha's trial is stopped by the user; beta's is paused, resumed, then its node dies: it runs again on alpha.

    Runs last among the cluster tests: it takes node beta away.
    """
    space = write_space(tmp_path, name="chaos", command="python train.py {lr} --wait", trials=2, parallel=2,
                        address=cluster.address)
    db = tmp_path / "h.db"
    engine = start_cli("launch", str(space), "--headless", "--db", str(db), "--grace", "2", cwd=tmp_path)
    try:
        hosts = wait_for(lambda: running_hosts(db), lambda h: set(h.values()) == {"alpha", "beta"},
                         what="one running trial on each node")
        by_host = {host: number for number, host in hosts.items()}
        store = Store(db)
        study = store.study("chaos")
        wait_for(lambda: store.trial_by_number(study.id, by_host["alpha"]).reports,
                 lambda n: n >= 2, what="alpha's trial reporting")
        stopped_pid = store.trial_by_number(study.id, by_host["alpha"]).pid
        store.send_command(study.id, "stop_trial", trial_number=by_host["alpha"])
        wait_for(lambda: store.trial_by_number(study.id, by_host["alpha"]).status, lambda s: s == "stopped",
                 what="the stop")
        assert not pid_alive(stopped_pid)
        lost_pid = store.trial_by_number(study.id, by_host["beta"]).pid
        store.send_command(study.id, "pause_trial", trial_number=by_host["beta"])  # signals reach beta too
        wait_for(lambda: process_status(lost_pid), lambda s: s == psutil.STATUS_STOPPED, what="the pause")
        store.send_command(study.id, "resume_trial", trial_number=by_host["beta"])
        wait_for(lambda: process_status(lost_pid), lambda s: s != psutil.STATUS_STOPPED, what="the resume")
        beta = next(node for node in cluster.worker_nodes)
        cluster.remove_node(beta)
        wait_for(lambda: store.trial_by_number(study.id, by_host["beta"]).status, lambda s: s == "interrupted",
                 what="the lost node's trial interrupted")
        (tmp_path / "release").write_text("")
        out, err = engine.communicate(timeout=60)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
    assert engine.returncode == 0, err
    trials = {t.number: t for t in store.trials(study.id)}
    stopped, lost = trials[by_host["alpha"]], trials[by_host["beta"]]
    assert stopped.status == "stopped" and stopped.status_reason == "stopped by the user"
    assert stopped.exit_code == 128 + 15  # SIGTERM reached the trial on its node, well within the grace
    assert lost.status == "interrupted" and lost.status_reason == "Ray node beta was lost mid-trial"
    assert lost.reports >= 1  # what it printed before its node died stays recorded
    rerun = [t for t in trials.values() if t.rerun_of == lost.id]
    assert len(rerun) == 1 and len(trials) == 3
    assert rerun[0].status == "completed" and rerun[0].params == lost.params and rerun[0].host == "alpha"
    assert f"trial {lost.number} interrupted — Ray node beta was lost mid-trial" in out
    wait_for(lambda: pid_alive(lost_pid), lambda alive: not alive, timeout=10,
             what="the lost node's trial process ended by its guard")


def test_an_address_where_no_cluster_listens_fails_in_seconds_with_one_line(tmp_path: Path) -> None:
    """Through the CLI (its own process: this one is already connected to the test cluster)."""
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    space = write_space(tmp_path, name="nowhere", command="python train.py {lr}", trials=1, parallel=1,
                        address=f"127.0.0.1:{port}")
    started = time.monotonic()
    result = run_cli("launch", str(space), "--headless", "--db", str(tmp_path / "h.db"), cwd=tmp_path, timeout=60)
    assert time.monotonic() - started < 20  # ray.init alone would retry for minutes
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(
        f"executor.address 127.0.0.1:{port}: no Ray cluster answers there (Connection refused); "
        f"start one with `ray start --head --port {port}` or fix the address")


def test_without_ray_installed_the_user_gets_one_line() -> None:
    code = ("import sys; sys.modules['ray'] = None\n"
            "from engine.errors import UserError\n"
            "from engine.executors.ray import RayExecutor\n"
            "try:\n    RayExecutor()\nexcept UserError as exc:\n    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.stdout.strip() == "executor: ray needs Ray; pip install 'hpotui[ray]'", result.stderr


# -- helpers ----------------------------------------------------------------------------------------------
def running_hosts(db: Path) -> dict[int, str]:
    try:
        conn = sqlite3.connect(db)
        try:
            rows = conn.execute("SELECT number, host FROM trials WHERE status = 'running'").fetchall()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return {}
    return dict(rows)


def ray_processes() -> set[int]:
    """Ray's own processes on this machine (GCS, raylets, agents, workers)."""
    found = set()
    for p in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if p.info["name"] in ("raylet", "gcs_server") or cmdline.startswith("ray::") or "site-packages/ray/" in cmdline:
            found.add(p.pid)
    return found


def process_status(pid: int) -> str | None:
    try:
        return psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return None


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for(read, ok, *, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = read()
        if ok(value):
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last seen {value!r}")



def test_package_copies_of_engines_that_no_longer_run_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    """An engine killed with SIGKILL never removes its staged copy; the next Ray engine does."""
    from hpotui.engine.executors.ray import STAGE_PREFIX, sweep_stale_stages

    dead = tmp_path / f"{STAGE_PREFIX}{2**22 + 1}-abc"  # above any pid_max: no such process
    alive = tmp_path / f"{STAGE_PREFIX}{os.getpid()}-def"
    other = tmp_path / f"{STAGE_PREFIX}notapid-ghi"
    for folder in (dead, alive, other):
        (folder / "hpotui").mkdir(parents=True)
    assert sweep_stale_stages(tmp_path) == 1
    assert not dead.exists() and alive.exists() and other.exists()
