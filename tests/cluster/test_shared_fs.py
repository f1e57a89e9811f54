"""Two nodes, one file system: concurrent SLURM jobs writing one output never delete each other's temporaries.

On the private test cluster (tests/cluster/slurm_up.sh) two jobs write the same target through
``atacdenoise.atomic.atomic_output``. Each job runs as its own "node": ``unshare --uts --pid`` gives it
another host name and its own process-id space, as a second machine sharing the results folder over
NFS would have. There the other node's pids mean nothing: before the fix the temporaries carried the
pid only, so the second job either reaped the first one's live temporary (its pid not running locally)
or, pids being equal, wrote into the very same file. Killed runs' temporaries of each node are still
reaped by that node only.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import slurm_cluster as sc
from slurm_cluster import REPO

WRITER = textwrap.dedent(
    '''
    """One node of the test: write TARGET via atomic_output while the other node writes it too."""
    import os
    import socket
    import sys
    import time
    from pathlib import Path

    from atacdenoise.atomic import atomic_output

    role, target, sync = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    host = socket.gethostname()
    payload = (f"{host} ".encode() * 2_000_000)[:8_000_000]
    half = len(payload) // 2


    def wait_for(name):
        deadline = time.monotonic() + 120
        while not (sync / name).exists():
            if time.monotonic() > deadline:
                sys.exit(f"{host}: gave up waiting for {name}")
            time.sleep(0.05)


    def temps():
        return sorted(p.name for p in target.parent.iterdir() if p.name.startswith("."))


    def write():
        """Write the payload through atomic_output; return whether the target then holds it."""
        with atomic_output(target) as tmp:  # reaps this host's dead temporaries first
            print(f"{host}: pid {os.getpid()} writes {tmp.name}", flush=True)
            print(f"{host}: temporaries now: {' '.join(temps())}", flush=True)
            with open(tmp, "wb") as fh:
                fh.write(payload[:half])
                fh.flush()
                if role == "first":
                    (sync / "first-writing").write_text(tmp.name)
                    wait_for("second-writing")
                else:
                    (sync / "second-writing").write_text(tmp.name)
                fh.write(payload[half:])
            if role == "second":
                wait_for("first-done")  # rename after the first node, so each can check its own result
            if tmp.read_bytes() != payload:
                sys.exit(f"{host}: my temporary {tmp.name} was changed by the other node")
        return target.read_bytes() == payload


    if role == "second":
        wait_for("first-writing")  # the first node is half-way through its temporary
    try:
        mine = write()
    except FileNotFoundError as exc:
        sys.exit(f"{host}: my temporary was deleted by the other node ({exc})")
    finally:
        if role == "first":
            (sync / "first-done").write_text("")  # the second node waits for it, also after a failure
    print(f"{host}: committed, target is {'mine' if mine else 'NOT mine'}", flush=True)
    sys.exit(0 if mine else 1)
    '''
)

NODES = {"first": "node-a", "second": "node-b"}
DEAD = 99_999  # no such process in a fresh pid namespace


def _unshare_problem() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare (util-linux) not found: cannot give a job another host name and pid space"
    res = subprocess.run(
        ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "hostname", "node-x"], capture_output=True, text=True
    )
    if res.returncode != 0:
        return f"unshare --uts --pid failed ({res.stderr.strip()}): cannot simulate a second node"
    if (os.cpu_count() or 1) < 2:
        return "needs 2 CPUs for two concurrent jobs on the one-node test cluster"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with sc.running_cluster(tmp_path_factory.mktemp("slurm")) as c:
        problem = _unshare_problem()
        if problem:
            pytest.skip(f"shared file system test skipped: {problem}")
        yield c


def _sbatch(cluster: sc.Cluster, work: Path, role: str, target: Path, sync: Path) -> subprocess.CompletedProcess:
    node = NODES[role]
    inner = " ".join(
        shlex.quote(str(a)) for a in (sys.executable, work / "writer.py", role, target, sync)
    )  # python runs on the simulated node, its host name set first
    # one more process before python on node-a: the two nodes' writers get different pids, as on two machines
    # (with equal pids the old names even coincided); each pid is dead in the other's pid space
    extra = "/bin/true && " if role == "first" else ""
    script = f"hostname {node} && {extra}{inner}"
    wrap = f"unshare --uts --pid --fork --mount-proc sh -c {shlex.quote(script)}"
    env = cluster.env()
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "workflow"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = ["sbatch", "--parsable", "--wait", f"--job-name=sharedfs-{node}", "--partition=cpu", "--cpus-per-task=1"]
    cmd += ["--mem=300", "--time=5", f"--output={work / (node + '.log')}", f"--chdir={work}", f"--wrap={wrap}"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_two_nodes_writing_one_output_keep_each_others_temporaries(cluster, tmp_path):
    work, results, sync = tmp_path, tmp_path / "results", tmp_path / "sync"
    results.mkdir()
    sync.mkdir()
    (work / "writer.py").write_text(WRITER)
    target = results / "shared.bin"
    # what killed runs left: one per node (reaped by that node only) and one of a third node (never reaped)
    left = {h: results / f".shared.tmp-{h}-{DEAD}-0123abcd.bin" for h in ("node-a", "node-b", "node-c")}
    for path in left.values():
        path.write_bytes(b"partial")

    with ThreadPoolExecutor(2) as pool:
        jobs = {role: pool.submit(_sbatch, cluster, work, role, target, sync) for role in NODES}
        done = {role: job.result() for role, job in jobs.items()}
    logs = {
        role: (work / f"{NODES[role]}.log").read_text() if (work / f"{NODES[role]}.log").exists() else ""
        for role in NODES
    }
    report = "\n".join(f"== {r}: sbatch {done[r].returncode} {done[r].stderr}\n{logs[r]}" for r in NODES)
    assert all(res.returncode == 0 for res in done.values()), report + "\n" + cluster.logs()

    # the second node started while the first was half-way and saw (and kept) its temporary
    first_tmp = (sync / "first-writing").read_text()
    assert first_tmp.startswith(".shared.tmp-node-a-") and first_tmp.endswith(".bin"), first_tmp
    seen_by_second = next(line for line in logs["second"].splitlines() if "temporaries now:" in line)
    assert first_tmp in seen_by_second.split(), report
    assert "committed, target is mine" in logs["first"] and "committed, target is mine" in logs["second"], report
    # both outputs were whole when renamed; the last rename (the second node's) stands
    assert target.read_bytes() == (b"node-b " * 2_000_000)[:8_000_000]
    # each node reaped its own dead run's temporary, nobody touched the third node's
    leftovers = sorted(p.name for p in results.iterdir() if p.name != target.name)
    assert leftovers == [left["node-c"].name], leftovers
