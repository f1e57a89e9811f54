#!/usr/bin/env bash
# Stop the private SLURM cluster started by slurm_up.sh STATE_DIR (slurmd, slurmctld, munged).
#
# Usage: tests/cluster/slurm_down.sh STATE_DIR
#
# Cancels any jobs still queued, then stops each daemon by the pid in its pid file (never by name,
# so a machine's own SLURM is left alone) and waits for it to exit. Safe to call twice.
set -uo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 STATE_DIR" >&2; exit 1; }
state=$1
[[ -d $state ]] || exit 0

if [[ -f $state/slurm.conf && -f $state/run/slurmctld.pid ]]; then
    SLURM_CONF="$state/slurm.conf" scancel --quiet --user="$(id -un)" >/dev/null 2>&1 || true
fi

stop() {  # stop NAME: TERM the pid from run/NAME.pid, KILL it after 15 s
    local pidfile=$state/run/$1.pid pid
    [[ -f $pidfile ]] || return 0
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

stop slurmd
stop slurmctld
stop munged

if [[ -f $state/run/etc_link ]]; then
    if [[ -L /etc/slurm/slurm.conf && $(readlink /etc/slurm/slurm.conf) == "$state/slurm.conf" ]]; then
        rm -f /etc/slurm/slurm.conf
    fi
    rm -f "$state/run/etc_link"
fi
exit 0
