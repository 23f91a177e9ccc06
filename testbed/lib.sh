# shellcheck shell=bash
# Shared settings and helpers for the testbed scripts (sourced, never run).
# Everything that persists lives under $B, outside the repo, so a second run reuses its caches.

B=${TESTBED_DIR:-/var/tmp/phillymesh-testbed}
BRIDGE=brtest
HOST_IP=10.250.0.1
APT_PORT=3142
PYPI_PORT=3141
PYPI_TLS_PORT=3143
ACME_PORT=14000
ACME_MGMT_PORT=15000
ELEMENT_PORT=8090
SSH_KEY=$B/id_ed25519
LOG=$B/log
RUN=$B/run
# Debian's own interpreter: PATH may start with a pyenv or other shim of a different version.
HOST_PYTHON=/usr/bin/python3
# Exported: the scripts each use some of them, and child scripts see the same layout.
export B BRIDGE HOST_IP APT_PORT PYPI_PORT PYPI_TLS_PORT ACME_PORT ACME_MGMT_PORT ELEMENT_PORT SSH_KEY LOG RUN HOST_PYTHON

# The host runs no systemd (PID 1 is the VM's agent): services are plain background processes with
# pid files in $RUN. Only pids recorded there are ever signalled.

# pid_alive NAME PATTERN: the recorded process exists and its command line still matches PATTERN
# (guards against a stale pid file whose number now belongs to something else).
pid_alive() {
    local pidfile="$RUN/$1.pid" pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    [ -n "$pid" ] && proc_running "$pid" || return 1
    # (no "| grep -q": under pipefail, grep quitting early can fail the pipeline with SIGPIPE)
    [[ $(tr '\0' ' ' < "/proc/$pid/cmdline") == *"$2"* ]]
}

# start_bg NAME CMD...: run CMD in its own session (so it outlives the calling shell and whatever
# kills that shell's process group), output appended to $LOG/NAME.log, pid in $RUN/NAME.pid.
# setsid execs without forking here (a background job is never a process-group leader), so $! is
# the service's own pid.
start_bg() {
    local name=$1
    shift
    mkdir -p "$LOG" "$RUN"
    setsid "$@" >> "$LOG/$name.log" 2>&1 < /dev/null &
    echo $! > "$RUN/$name.pid"
}

# proc_running PID: the process exists and is not a zombie. This host's PID 1 reaps orphans only
# every couple of seconds, so a service that has exited lingers as a zombie for a while.
proc_running() {
    [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

proc_gone() {
    ! proc_running "$1"
}

# stop_bg NAME PATTERN: TERM the recorded pid, wait up to 5 s, then KILL it.
stop_bg() {
    local name=$1 pattern=$2 pid
    if pid_alive "$name" "$pattern"; then
        pid=$(cat "$RUN/$name.pid")
        kill -TERM "$pid" 2>/dev/null || true
        wait_for 5 proc_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
        echo "stopped $name (pid $pid)"
    fi
    rm -f "$RUN/$name.pid"
}

# wait_for SECONDS CMD...: poll CMD every 0.1 s until it succeeds.
wait_for() {
    local tries=$(( $1 * 10 )) _
    shift
    for _ in $(seq "$tries"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# The Debian mirror this machine's apt already uses (read at run time; never hard-code a registry).
debian_mirror() {
    local m
    m=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$m" ] || m=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    echo "${m%/}"
}

debian_security_mirror() {
    local m
    m=$(awk '/^URIs:/ && /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$m" ] || m="$(debian_mirror)-security"
    echo "${m%/}"
}

# install_roots ROOTFS: trust the testbed's CAs inside a guest's root filesystem: the CA of pebble's
# own HTTPS listener (certbot talks to it) and every ACME root pebble has had. Pebble makes a new
# root at each start; certs issued before a restart chain to an older one, and the guests verify
# each other's certs over federation, so all of them stay trusted.
# One certificate per .crt file: update-ca-certificates hashes only the first cert of a file.
install_roots() {
    local root=$1 d="$1/usr/local/share/ca-certificates"
    mkdir -p "$d"
    rm -f "$d"/testbed-*.crt
    cp "$B/pebble/ca.pem" "$d/testbed-acme-server-ca.crt"
    if [ -s "$B/pebble/roots-all.pem" ]; then
        awk -v dir="$d" '/BEGIN CERTIFICATE/ {n++; f = sprintf("%s/testbed-pebble-%02d.crt", dir, n)}
                         f {print > f}
                         /END CERTIFICATE/ {close(f); f = ""}' "$B/pebble/roots-all.pem"
    fi
    chroot "$root" update-ca-certificates --fresh >/dev/null 2>&1
}

# guest_ip NAME: the address a running guest was booted with.
guest_ip() {
    cat "$B/run-$1/ip" 2>/dev/null
}
