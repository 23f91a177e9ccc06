#!/bin/bash
# Drill 22's memory pressure, run as root on the server: /dev/shm (a tmpfs: memory that no kill gives
# back) filled 8 MiB at a time until the kernel has to kill a process, seen as Synapse's main process
# changing, or until MAX_MIB; the file is removed on the way out, whatever happens. The kernel picks
# whom to kill from the processes' sizes and their oom_score_adj, so what it kills is the program's
# choice (the units' OOMScoreAdjust), not the filler's.
# Usage: memory-fill.sh [MAX_MIB]   Prints "killed after N MiB: synapse A -> B" or "no kill after N MiB".
set -euo pipefail
MAX_MIB=${1:-2000}
F=/dev/shm/drill22-fill
trap 'rm -f "$F"' EXIT
synapse() { systemctl show -p MainPID --value matrix-synapse.service; }
before=$(synapse)
[ "$before" != 0 ] || { echo "Synapse is not running" >&2; exit 1; }
mib=0
while [ "$mib" -lt "$MAX_MIB" ]; do
    if ! head -c 8M /dev/zero >>"$F"; then
        echo "writing $F failed after $mib MiB"
        break
    fi
    mib=$((mib + 8))
    now=$(synapse)
    if [ "$now" != "$before" ]; then
        echo "killed after $mib MiB: synapse $before -> $now"
        exit 0
    fi
done
echo "no kill after $mib MiB"
