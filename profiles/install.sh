#!/usr/bin/env bash
# Link profiles/slurm-gpu into Snakemake's user profile directory so that
#   snakemake --profile slurm-gpu
# works from any directory (Snakemake looks up profile *names* only in the working directory,
# ~/.config/snakemake and /etc/xdg/snakemake, never in profiles/).
#
# Usage: bash profiles/install.sh [PROFILE ...]      (default: slurm-gpu; `make install-profile`)
# Honours XDG_CONFIG_HOME. A symlink, so later edits to profiles/slurm-gpu apply at once.
# An existing profile of the same name that is not our link is left alone (exit status 1).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dest_dir="${XDG_CONFIG_HOME:-$HOME/.config}/snakemake"
[[ $# -gt 0 ]] || set -- slurm-gpu

status=0
mkdir -p "$dest_dir"
for name in "$@"; do
    src="$here/$name"
    dest="$dest_dir/$name"
    if [[ ! -f $src/config.yaml ]]; then
        echo "install.sh: no profile $src/config.yaml" >&2
        status=1
    elif [[ -L $dest && $(readlink "$dest") == "$src" ]]; then
        echo "$dest -> $src (already linked)"
    elif [[ -e $dest || -L $dest ]]; then
        echo "install.sh: $dest exists and is not a link to $src; move it away first" >&2
        status=1
    else
        ln -s "$src" "$dest"
        echo "$dest -> $src"
        echo "  now: snakemake --profile $name   (edit the partition/account keys at the top of $src/config.yaml)"
    fi
done
exit $status
