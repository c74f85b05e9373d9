"""Ray executor: each trial is a Ray generator task on whichever node Ray picks; its output comes home.

Same interface as :class:`engine.executors.local.LocalExecutor`, so the loop does not know where trials run.
The task (:func:`engine.executors.ray_node.run_trial`) asks for ``num_cpus = cpus_per_trial`` and
``num_gpus = gpus_per_trial`` (Ray, not the engine's NVML placement, then picks the node and sets
``CUDA_VISIBLE_DEVICES`` there), starts the command in its own process group and yields its output
in batches. One thread per trial on the head node writes those bytes into the trial's
``stdout.log`` / ``stderr.log``, which the loop reads exactly as it reads a local trial's files:
the engine stays the only writer of the database and every log lands in the trial folder.

Stopping is signals sent to the trial's group by its node's agent (a small actor per node,
:class:`engine.executors.ray_node.NodeAgent`): SIGTERM, then SIGKILL at the deadline together with
``ray.cancel``. The agents also read each node's GPUs. A node that dies mid-trial ends the trial
``interrupted`` (the loop reruns its configuration); any other Ray failure ends it ``failed`` with
Ray's one-line reason.

A trial that Ray cannot place yet (cluster full) is submitted anyway and waits in Ray's queue; it
reports its node and pid once it starts, and :meth:`RayExecutor.take_placed` hands those to the loop.

Engine death: Ray ends a driver's tasks when the driver goes, and the guard process beside each
trial then ends its group; so Ray trials never outlive their engine, :meth:`adopt` always returns
``None`` and ``hpotui resume`` reruns them (their logged lines up to that point are kept).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..database.records import TrialStatus
from ..errors import UserError
from ..space_file.space import Resources
from ..trials.liveness import process_alive
from ..trials.trial_files import create_trial_logs
from . import ray_node
from .base import EXIT_UNKNOWN, Executor, TrialProcess

PENDING_NODE = "(pending)"  # the node recorded for a trial that Ray has not placed yet
PRIVATE_OBJECT_STORE_BYTES = 128 * 1024 * 1024  # trials send log batches, not tensors
# The engine's own view of the trial: the node chooses these, never the head.
NODE_SIDE_ENV = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")
PROBE_TIMEOUT_S = 5.0
GPU_ROUND_TIMEOUT_S = 15.0  # a GPU-reading round older than this is given up (node hung or gone)


def import_ray() -> Any:
    """Ray, or the one-line error a user sees when the optional extra is missing."""
    try:
        import ray  # optional: the ray extra, imported only for executor.type ray
    except ImportError:
        raise UserError("executor: ray needs Ray; pip install 'hpotui[ray]'") from None
    return ray


@dataclass
class _Stream:
    """What the reader thread learned about one trial's task (read by the loop thread)."""

    generator: Any
    node_id: str | None = None
    done: bool = False
    exit_code: int | None = None
    final_status: str | None = None  # set by the executor: interrupted (node lost) / failed (Ray error)
    final_reason: str | None = None
    killed: bool = False
    thread: threading.Thread | None = field(default=None, repr=False)


@dataclass
class RayTrialProcess(TrialProcess):
    """A trial this executor started: the loop sees a :class:`TrialProcess`; ``stream`` is the Ray task's own.

    The executor's handle lives on its own subclass, so the port (:mod:`engine.executors.base`)
    carries nothing Ray-specific and no other executor sees a Ray stream.
    """

    stream: _Stream = field(kw_only=True, repr=False)


def _stream(proc: TrialProcess) -> _Stream:
    """The task stream of a trial this executor started (any other TrialProcess is a caller's mistake)."""
    if not isinstance(proc, RayTrialProcess):
        raise TypeError(f"trial {proc.trial_id} was not started by the Ray executor")
    return proc.stream


STAGE_PREFIX = "hpotui-ray-"  # + the engine's pid: a copy whose engine is gone can be told and removed


def sweep_stale_stages(folder: Path) -> int:
    """Remove package copies (``hpotui-ray-<pid>-*``) of this user's engines that no longer run; how many.

    ``shutdown`` removes an engine's own copy, but an engine killed with SIGKILL, or one whose
    machine went down, never gets there; without this a shared box's /tmp fills with copies.
    Another user's copies, and those of engines still running, are left alone.
    """
    removed = 0
    for path in folder.glob(f"{STAGE_PREFIX}*-*"):
        pid = path.name[len(STAGE_PREFIX):].partition("-")[0]
        try:
            mine = path.is_dir() and not path.is_symlink() and path.stat().st_uid == os.getuid()
        except OSError:
            continue
        if mine and pid.isdigit() and not process_alive(int(pid), None):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


class RayExecutor(Executor):
    name = "ray"
    places_gpus = True  # Ray picks each trial's GPUs on its node; the engine's local placement stays out
    outlives_engine = False  # Ray ends a driver's tasks with it: `resume` runs them again

    def __init__(self, address: str | None = None, *, grace_period_s: float = 10.0,
                 resources: Resources | None = None) -> None:
        self.ray = import_ray()
        self.grace_period_s = grace_period_s
        self.resources = resources or Resources()
        self._owns_connection = False  # True when this executor called ray.init (and so must shut it down)
        self._placed: list[TrialProcess] = []
        self._placed_lock = threading.Lock()
        self._streams: dict[int, _Stream] = {}
        self._node_names: dict[str, str] = {}
        self._hostnames: dict[str, str] = {}  # node id -> the node's hostname, as its tasks reported it
        self._names_stale = False
        self._gpu_round: dict[Any, str] = {}  # pending NodeAgent.gpus call -> node id
        self._gpu_cache: dict[str, list[Any]] = {}  # node id -> its latest readings
        self._gpu_round_sent = 0.0
        self._staged_dir: Path | None = None  # the package copy shipped to the nodes (removed at shutdown)
        if not self.ray.is_initialized():
            self._connect(address)
        remote = self.ray.remote
        self._run_trial = remote(max_retries=0, retry_exceptions=False)(ray_node.run_trial)
        self._agent_class = remote(num_cpus=0, max_restarts=3, max_task_retries=0)(ray_node.NodeAgent)
        self._agents: dict[str, Any] = {}  # node id -> its NodeAgent actor
        self._agents_lock = threading.Lock()
        for n in self.ray.nodes():  # started now, so the first stop on a node does not wait for one
            if n["Alive"]:
                self._agent(n["NodeID"])

    def _shippable_package(self) -> Path:
        """A folder ``hpotui/`` holding the package and its engine, as Ray's ``py_modules`` ships it.

        Installed from a wheel, ``hpotui/engine`` already sits inside ``hpotui/``; from a source
        checkout the package-dir mapping keeps ``engine/`` beside it. A staged copy (the engine
        only: nodes never draw the interface) gives the nodes the same import names either way.
        """
        engine_dir = Path(__file__).resolve().parents[1]
        top = sys.modules[__name__.partition(".")[0]]
        sweep_stale_stages(Path(tempfile.gettempdir()))
        staged = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-")) / "hpotui"
        staged.mkdir()
        shutil.copy(str(top.__file__), staged / "__init__.py")
        shutil.copytree(engine_dir, staged / "engine", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        self._staged_dir = staged.parent
        return staged

    def _connect(self, address: str | None) -> None:
        """Join the cluster at ``address``, or start a private Ray on this machine for this study."""
        # Nodes may not have hpotui installed: ship this engine with the job (also keeps versions equal).
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                   "logging_level": logging.ERROR,  # not its banner and notices in the study log
                                   "runtime_env": {"py_modules": [str(self._shippable_package())]}}
        if address is None:  # "local": a new instance even when RAY_ADDRESS or a `ray start` cluster exists
            options.update(address="local", num_cpus=os.cpu_count() or 1,
                           object_store_memory=PRIVATE_OBJECT_STORE_BYTES)
        else:
            _probe(address)
            options["address"] = address
        try:
            self.ray.init(**options)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            if self._staged_dir is not None:  # no shutdown follows a failed start: the copy goes now
                shutil.rmtree(self._staged_dir, ignore_errors=True)
            where = f"the Ray cluster at {address!r}" if address else "a local Ray"
            fix = "start one with `ray start --head` or fix executor.address" if address else \
                "see `ray status`, or give executor.address of a running cluster"
            raise UserError(f"executor: cannot reach {where}: {str(exc).splitlines()[0] if str(exc) else exc}; "
                            f"{fix}") from None
        self._owns_connection = True

    # -- starting ------------------------------------------------------------------------------------
    def start(self, trial_id: int, argv: list[str], *, cwd: Path, env: dict[str, str], stdout_path: Path,
              stderr_path: Path) -> TrialProcess:
        """Submit the trial; returns at once with node ``(pending)`` (see :meth:`take_placed`)."""
        out_fd, err_fd = create_trial_logs(stdout_path, stderr_path)  # new files of ours, never a planted link
        options: dict[str, Any] = {"num_cpus": self.resources.cpus_per_trial, "name": f"hpotui-trial-{trial_id}"}
        if self.resources.gpus_per_trial > 0:
            options["num_gpus"] = self.resources.gpus_per_trial
        try:
            generator = self._run_trial.options(**options).remote(list(argv), str(cwd), env_delta(env),
                                                                   self.grace_period_s)
        except BaseException:
            os.close(out_fd)
            os.close(err_fd)
            raise
        stream = _Stream(generator=generator)
        proc = RayTrialProcess(trial_id=trial_id, pid=0, pgid=0, create_time=time.time(), stdout_path=stdout_path,
                               stderr_path=stderr_path, node=PENDING_NODE, stream=stream)
        self._streams[trial_id] = stream
        stream.thread = threading.Thread(target=self._read, args=(proc, stream, out_fd, err_fd), daemon=True,
                                         name=f"hpotui-ray-trial-{trial_id}")
        stream.thread.start()
        return proc

    def take_placed(self) -> list[TrialProcess]:
        """Trials that started on a node since the last call (their ``node``, ``pid`` and ``pgid`` are now real)."""
        with self._placed_lock:
            placed, self._placed = self._placed, []
        return placed

    def adopt(self, trial_id: int, pid: int, pgid: int, create_time: float, stdout_path: Path,
              stderr_path: Path) -> TrialProcess | None:
        """Never: a Ray trial dies with the engine that submitted it, so there is nothing to take back."""
        return None

    # -- the reader thread ------------------------------------------------------------------------------
    def _read(self, proc: TrialProcess, stream: _Stream, out_fd: int, err_fd: int) -> None:
        """Write the task's output batches into the trial's files until it ends; record how it ended."""
        ray = self.ray
        try:
            with open(out_fd, "ab", buffering=0) as out, open(err_fd, "ab", buffering=0) as err:
                try:
                    for ref in stream.generator:
                        item = ray.get(ref)
                        if "out" in item:
                            if item["out"]:
                                out.write(item["out"])
                            if item["err"]:
                                err.write(item["err"])
                        elif "started" in item:
                            self._on_started(proc, stream, item)
                        elif "exit" in item:
                            stream.exit_code = item["exit"]
                        elif "error" in item:
                            stream.node_id = item["node_id"]
                            err.write((f"hpotui: {item['error']}\n").encode())
                            stream.final_status, stream.final_reason = TrialStatus.FAILED, item["error"]
                            stream.exit_code = 127
                except Exception as exc:  # noqa: BLE001 (every Ray failure ends the trial with a reason)
                    self._on_failure(proc, stream, exc, err)
        except OSError as exc:
            stream.final_status, stream.final_reason = TrialStatus.FAILED, f"could not write the trial's log: {exc}"
        finally:
            if stream.exit_code is None:
                stream.exit_code = EXIT_UNKNOWN
            stream.done = True
            _wake_the_loop()

    def _on_started(self, proc: TrialProcess, stream: _Stream, item: dict[str, Any]) -> None:
        proc.pid = proc.pgid = int(item["pid"])  # before node_id: a stop reads node_id, then signals pgid
        proc.create_time = float(item["create_time"])
        stream.node_id = item["node_id"]
        self._learn_hostname(item["node_id"], item["host"])
        proc.node = self.node_name(item["node_id"])
        with self._placed_lock:
            self._placed.append(proc)
        if proc.final_status is not None and not stream.killed:
            self._send(proc, stream, signal.SIGTERM)  # a stop asked for while it was still pending

    def _on_failure(self, proc: TrialProcess, stream: _Stream, exc: Exception, err: Any) -> None:
        exceptions = self.ray.exceptions
        if isinstance(exc, exceptions.TaskCancelledError):
            stream.exit_code = 128 + signal.SIGKILL if stream.killed else EXIT_UNKNOWN
            return
        if isinstance(exc, exceptions.NodeDiedError) or not self._node_alive(stream.node_id):
            where = proc.node if proc.node != PENDING_NODE else "its node"
            stream.final_status = TrialStatus.INTERRUPTED
            stream.final_reason = f"Ray node {where} was lost mid-trial"
        else:
            stream.final_status = TrialStatus.FAILED
            stream.final_reason = "Ray: " + _first_line(exc)
        with contextlib.suppress(OSError):
            err.write(f"hpotui: {stream.final_reason}\n".encode())

    # -- the loop's questions -----------------------------------------------------------------------------
    def poll(self, proc: TrialProcess) -> int | None:
        """Exit code once the task ended (EXIT_UNKNOWN when it never reported one), else None."""
        stream = _stream(proc)
        if not stream.done:
            return None
        self._streams.pop(proc.trial_id, None)
        if stream.final_status is not None and proc.final_status is None:  # a stop asked for wins over how it ended
            proc.final_status, proc.final_reason = stream.final_status, stream.final_reason
        return stream.exit_code

    def request_stop(self, proc: TrialProcess, status: str, reason: str) -> None:
        """SIGTERM the group on its node now, SIGKILL at ``stop_deadline``; a pending trial is just cancelled."""
        stream = _stream(proc)
        if proc.final_status is None:
            proc.final_status, proc.final_reason = status, reason
        if proc.stop_deadline is None:
            proc.stop_deadline = time.monotonic() + self.grace_period_s
        if stream.node_id is None:
            self.ray.cancel(stream.generator)  # still queued: nothing runs yet (see _on_started for the race)
            return
        if proc.paused:
            self._send(proc, stream, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
        self._send(proc, stream, signal.SIGTERM)

    def enforce_deadline(self, proc: TrialProcess) -> None:
        stream = _stream(proc)
        if proc.stop_deadline is None or stream.killed or stream.done or time.monotonic() < proc.stop_deadline:
            return
        stream.killed = True
        if stream.node_id is not None:
            self._send(proc, stream, signal.SIGKILL)
        self.ray.cancel(stream.generator)  # the task ends even if the node cannot run the signal task

    def reap_group(self, proc: TrialProcess) -> None:
        """Nothing to do here: the task ended the group's leftovers on its node before reporting the exit."""

    def pause(self, proc: TrialProcess) -> None:
        stream = _stream(proc)
        if stream.node_id is not None and not stream.done:
            self._send(proc, stream, signal.SIGSTOP)
            proc.paused = True

    def resume(self, proc: TrialProcess) -> None:
        stream = _stream(proc)
        if stream.node_id is not None and not stream.done:
            self._send(proc, stream, signal.SIGCONT)
            proc.paused = False

    def _send(self, proc: TrialProcess, stream: _Stream, sig: int) -> None:
        """Signal the trial's group through its node's agent (calls run in the order sent; fire and forget)."""
        if stream.node_id is not None and proc.pgid > 1:  # never killpg(0): that is the agent's own group
            self._agent(stream.node_id).signal.remote(proc.pgid, int(sig))

    def _agent(self, node_id: str) -> Any:
        """The node's NodeAgent actor, started on first need and pinned to that node."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # optional, as import_ray

        with self._agents_lock:  # the reader threads ask too
            agent = self._agents.get(node_id)
            if agent is None:
                strategy = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
                agent = self._agents[node_id] = self._agent_class.options(scheduling_strategy=strategy).remote()
            return agent

    # -- nodes -------------------------------------------------------------------------------------------
    def node_name(self, node_id: str) -> str:
        """What the trial's host column and GPU readings call a node.

        ``ray start --node-name NAME`` wins; otherwise the node's hostname once one of its tasks
        told us (Ray's default name is only the IP). Nodes that share a name (several Ray nodes on
        one machine) get the first characters of their node id appended.
        """
        if node_id not in self._node_names or self._names_stale:
            self._names_stale = False
            nodes = self.ray.nodes()
            names = []
            for n in nodes:
                name = n.get("NodeName") or n["NodeManagerAddress"]
                if name == n["NodeManagerAddress"]:
                    name = self._hostnames.get(n["NodeID"], name)
                names.append(name)
            for n, name in zip(nodes, names):
                self._node_names[n["NodeID"]] = name if names.count(name) == 1 else f"{name}/{n['NodeID'][:6]}"
        return self._node_names.get(node_id, node_id[:12])

    def _learn_hostname(self, node_id: str, hostname: str) -> None:
        if self._hostnames.get(node_id) != hostname:
            self._hostnames[node_id] = hostname
            self._names_stale = True

    def _node_alive(self, node_id: str | None) -> bool:
        if node_id is None:
            return True
        try:
            return any(n["NodeID"] == node_id and n["Alive"] for n in self.ray.nodes())
        except Exception:  # noqa: BLE001 (Ray already shut down: nothing says the node died)
            return True

    def gpu_readings(self, wait_s: float = 0.0) -> dict[str, list[Any]]:
        """Latest GPU readings per node name, read on the nodes (engine.machine.resources.GpuReading, NA where unknown).

        Non-blocking by default: each call collects the round sent by the previous one and sends
        the next, so readings are at most one sampling period old and a slow node never stalls the
        loop. ``wait_s`` waits that long for the current round (the first call, tests).
        """
        ray = self.ray
        if self._gpu_round and time.monotonic() - self._gpu_round_sent > GPU_ROUND_TIMEOUT_S:
            for node_id in self._gpu_round.values():  # a node that does not answer shows no figures
                self._gpu_cache.pop(node_id, None)
            self._gpu_round.clear()
        if not self._gpu_round:
            self._send_gpu_round()
        refs = list(self._gpu_round)
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=wait_s) if refs else ([], [])
        fresh: dict[str, list[Any]] = {}
        for ref in ready:
            node_id = self._gpu_round.pop(ref)
            try:
                hostname, readings = ray.get(ref)
            except ray.exceptions.RayError:
                continue  # node gone or unreadable: it drops out of the next round's names
            self._learn_hostname(node_id, hostname)
            fresh[node_id] = readings
        self._gpu_cache.update(fresh)
        if not self._gpu_round:
            self._send_gpu_round()  # collected by the next call
        return {self.node_name(node_id): readings for node_id, readings in self._gpu_cache.items()}

    def _send_gpu_round(self) -> None:
        """Ask each alive node's agent for its GPUs; nodes no longer alive lose their figures and agents."""
        for n in self.ray.nodes():
            if n["Alive"]:
                self._gpu_round[self._agent(n["NodeID"]).gpus.remote()] = n["NodeID"]
            else:
                with self._agents_lock:
                    self._agents.pop(n["NodeID"], None)
        self._gpu_round_sent = time.monotonic()
        wanted = set(self._gpu_round.values())
        self._gpu_cache = {k: v for k, v in self._gpu_cache.items() if k in wanted}

    # -- the end -------------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel what still runs, wait briefly for the reader threads, and leave Ray as we found it."""
        for stream in list(self._streams.values()):
            if not stream.done:
                self.ray.cancel(stream.generator, force=False)
        for stream in list(self._streams.values()):
            if stream.thread is not None:
                stream.thread.join(timeout=5.0)
        self._streams.clear()
        with self._agents_lock:
            agents, self._agents = list(self._agents.values()), {}
        for agent in agents:
            with contextlib.suppress(Exception):  # its node may be gone already
                self.ray.kill(agent)  # also when the connection is not ours to close
        if self._owns_connection and self.ray.is_initialized():
            self.ray.shutdown()  # a private Ray stops entirely; a joined cluster just loses this driver
        if self._staged_dir is not None:
            shutil.rmtree(self._staged_dir, ignore_errors=True)
        self._owns_connection = False


def env_delta(env: dict[str, str]) -> dict[str, str]:
    """The variables the loop set for this trial: the node's own environment (PATH, HOME...) stays the node's."""
    return {k: v for k, v in env.items() if os.environ.get(k) != v and k not in NODE_SIDE_ENV}


def _probe(address: str) -> None:
    """Fail in seconds on a HOST:PORT where nothing listens: ray.init would keep retrying for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and friends: Ray finds the cluster itself and says so quickly when there is none
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise UserError(f"executor.address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
                        f"start one with `ray start --head --port {port}` or fix the address") from None


def _wake_the_loop() -> None:
    """Wake the loop now, as a local trial's exit does: its SIGCHLD handler does nothing but wake it.

    Without this a finished Ray trial would wait for the loop's next tick (up to 0.1 s) to free its slot.
    SIGCHLD is ignored by default, so a process without the loop's handler is not disturbed.
    """
    with contextlib.suppress(OSError):
        os.kill(os.getpid(), signal.SIGCHLD)


def _first_line(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(exc).__name__
