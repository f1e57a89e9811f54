#!/usr/bin/env bash
# Start a private single-node SLURM cluster (munged + slurmctld + slurmd) for the profile tests.
#
# Usage: tests/cluster/slurm_up.sh STATE_DIR
#
# Everything lives under STATE_DIR: slurm.conf, gres.conf, the munge key and socket, spool and state
# directories, logs and pid files. The only file outside it is /etc/slurm/slurm.conf, a symlink to
# STATE_DIR/slurm.conf made when that path is free (and removed by slurm_down.sh): job steps inside
# a job read the default path. A machine's own SLURM configuration or munge is never touched; when
# /etc/slurm/slurm.conf already exists the script stops with an error.
#
# The node offers two partitions, `cpu` (default) and `gpu`, and one GPU through gres. Without a
# physical GPU the gres device file is /dev/null, which is enough for SLURM to allocate it and
# set CUDA_VISIBLE_DEVICES=0 in the job (with Count=1 and no File= the node would report no GPU).
# Node CPUs and memory are read from this machine so that slurmd does not drain the node.
#
# Installs Debian's slurm-wlm and munge with apt when they are missing (needs root).
# Environment: ATACDENOISE_SLURM_PORT (default 16817): slurmctld port; slurmd uses PORT+1.
# Stop it again with tests/cluster/slurm_down.sh STATE_DIR.
set -euo pipefail

die() { echo "slurm_up: $*" >&2; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 STATE_DIR"
state=$(mkdir -p "$1" && cd "$1" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
port=${ATACDENOISE_SLURM_PORT:-16817}

[[ $(id -u) -eq 0 ]] || die "must run as root (slurmd runs jobs as their submitting user)"

need_install=0
for exe in munged slurmctld slurmd sbatch squeue scontrol; do
    command -v "$exe" >/dev/null 2>&1 || need_install=1
done
if [[ $need_install -eq 1 ]]; then
    command -v apt-get >/dev/null 2>&1 || die "slurmctld/slurmd/munged missing and no apt-get to install them"
    echo "slurm_up: installing slurm-wlm and munge with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Exit status 3 tells the tests that installation (not the cluster) failed.
    apt-get update -qq >&2 || exit 3
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >&2 || exit 3
fi

# Stop a previous instance in the same state dir, if one is left over.
"$here/slurm_down.sh" "$state" >/dev/null 2>&1 || true

mkdir -p "$state"/{munge,ctld,spool,log,run}
chmod 0700 "$state/munge"

# Job steps cannot rely on SLURM_CONF: the jobstep executor strips SLURM_* variables before its
# `srun`, so client commands inside a job read the default /etc/slurm/slurm.conf. Point that at
# this cluster with a symlink, unless the machine already has its own SLURM configuration.
etc_conf=/etc/slurm/slurm.conf
ours_or_stale() {  # a link left by this script: dangling, or to a test cluster's slurm.conf
    [[ -L $etc_conf ]] || return 1
    local target
    target=$(readlink "$etc_conf")
    [[ ! -e $target ]] || grep -qx 'ClusterName=atacdenoise-test' "$target"
}
if [[ -e $etc_conf || -L $etc_conf ]] && ! ours_or_stale; then
    die "$etc_conf exists and is not ours; refusing to replace this machine's SLURM configuration"
fi
# A cluster of ours left running (e.g. by a killed test session) holds the ports: stop it first.
if [[ -L $etc_conf && -e $etc_conf ]]; then
    prev_state=$(dirname "$(readlink "$etc_conf")")
    [[ $prev_state == "$state" ]] || "$here/slurm_down.sh" "$prev_state" >/dev/null 2>&1 || true
fi
mkdir -p /etc/slurm
ln -sfn "$state/slurm.conf" "$etc_conf"
touch "$state/run/etc_link"   # tells slurm_down.sh to remove the link

# --- munge: private key and socket -------------------------------------------------------------
key="$state/munge/munge.key"
if [[ ! -s $key ]]; then
    dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
fi
chmod 0600 "$key"
socket="$state/munge/munge.socket"
munged --force --key-file="$key" --socket="$socket" \
    --pid-file="$state/run/munged.pid" --log-file="$state/log/munged.log" \
    --seed-file="$state/munge/munge.seed"

# --- slurm.conf and gres.conf ----------------------------------------------------------------
host=$(hostname -s)
cpus=$(nproc)
mem_total_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
# Leave a little for the OS so that slurmd's own measurement never falls below the configured value.
real_mb=$(( mem_total_mb * 90 / 100 ))

sed -e "s|@STATE@|$state|g" -e "s|@HOST@|$host|g" -e "s|@CPUS@|$cpus|g" \
    -e "s|@REAL_MB@|$real_mb|g" -e "s|@PORT@|$port|g" -e "s|@SLURMD_PORT@|$((port + 1))|g" \
    -e "s|@MUNGE_SOCKET@|$socket|g" \
    "$here/slurm.conf.in" > "$state/slurm.conf"
printf 'NodeName=%s Name=gpu File=/dev/null\n' "$host" > "$state/gres.conf"

export SLURM_CONF="$state/slurm.conf"

slurmctld -f "$SLURM_CONF" -i
slurmd -f "$SLURM_CONF" -N "$host"

# --- wait until the node is idle in both partitions -------------------------------------------
for _ in $(seq 1 20); do [[ -s $state/run/slurmctld.pid ]] && break; sleep 0.25; done
ctld_pid=$(cat "$state/run/slurmctld.pid" 2>/dev/null || true)
for _ in $(seq 1 60); do
    if [[ -z $ctld_pid ]] || ! kill -0 "$ctld_pid" 2>/dev/null; then
        echo "slurm_up: slurmctld is not running" >&2
        break
    fi
    states=$(timeout 10 sinfo -h -N -o '%P %t' 2>/dev/null || true)
    if grep -q '^cpu\* idle' <<<"$states" && grep -q '^gpu idle' <<<"$states"; then
        echo "slurm_up: cluster ready (SLURM_CONF=$SLURM_CONF, node $host, ${cpus} CPUs, ${real_mb} MB, gpu:1)" >&2
        echo "$SLURM_CONF"
        exit 0
    fi
    # A node that came up before slurmctld knew it may sit in 'unk'/'down': resume it.
    if grep -q -E 'down|drain|unk' <<<"$states"; then
        scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
    fi
    sleep 1
done
echo "slurm_up: node did not become idle; sinfo says:" >&2
timeout 10 sinfo -N -l >&2 || true
timeout 10 scontrol show node "$host" >&2 || true
tail -n 30 "$state/log/slurmctld.log" "$state/log/slurmd.log" >&2 || true
"$here/slurm_down.sh" "$state" || true
exit 1
