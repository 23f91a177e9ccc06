#!/bin/bash
# Installed as /usr/local/sbin/phillymesh-chat-status (rendered: {{...}} is filled in by statusCheck.ts)
# and run daily by phillymesh-chat-status.timer. Trouble must reach the admin: Let's Encrypt no
# longer e-mails before a certificate expires, a backup that stopped is otherwise found out on the
# day it is needed, and a full disk stops PostgreSQL. Four checks:
#   certificate  the TLS certificate is valid for more than 14 more days
#   backup       the newest backup below the backup directory is less than 36 hours old
#   disk         the data directory's and the root file system's use are below the threshold
#   synapse      Synapse answers its /health on 127.0.0.1
# and in worker mode (synapseWorkers), named by the drop-in the synapse-workers step installs
# (phillymesh-chat-status.service.d/phillymesh-chat-workers.conf: STATUS_WORKERS "name:port ...",
# port "-" for none, and STATUS_REDIS_PORT), two more; without it, nothing more is checked:
#   redis        redis-server runs and answers on 127.0.0.1
#   workers      each matrix-synapse-worker@<name> runs and answers its /health on 127.0.0.1
# Each result is logged, a problem at error priority (journalctl -p err -u phillymesh-chat-status);
# when one fails the unit fails (systemctl --failed). Run through the unit, every result is also
# recorded in $STATE_DIRECTORY/status.json (/var/lib/phillymesh-chat/status.json):
#   {"checkedAt": "<UTC>", "ok": <all ok>, "checks": [{"name": ..., "ok": ..., "detail": ...}, ...]}
# Run by hand it prints the same verdicts and records nothing: the file is the unit's, and root never
# writes into a directory a service user owns.
set -euo pipefail
STATUS_WORKERS=${STATUS_WORKERS:-}
STATUS_REDIS_PORT=${STATUS_REDIS_PORT:-6379}
CERT_DAYS=14
BACKUP_HOURS=36
DISK_ALERT_PERCENT='{{disk_alert_percent}}'
cert_name='{{certificate_file}}'
backup_dir='{{backup_dir}}'
data_dir='{{data_dir}}'
health_url='http://127.0.0.1:{{synapse_port}}/health'
cgroup_root='{{cgroup_root}}'

names=()
oks=()
details=()
failed=0
# record NAME true|false DETAIL
record() {
    names+=("$1")
    oks+=("$2")
    details+=("$3")
    if [ "$2" = true ]; then
        echo "$1: ok: $3"
    else
        echo "<3>$1: $3" >&2
        failed=$((failed + 1))
    fi
}

check_certificate() {
    # Run by its unit, the certificate comes as a credential (the unit cannot read /etc/letsencrypt);
    # run by hand as root, from where certbot keeps it.
    local cert=${CREDENTIALS_DIRECTORY:+$CREDENTIALS_DIRECTORY/fullchain.pem} end end_s days
    cert=${cert:-$cert_name}
    if ! end=$(openssl x509 -in "$cert" -noout -enddate 2>/dev/null); then
        record certificate false "no readable certificate at $cert_name: see 'journalctl -u certbot'"
        return
    fi
    end=${end#notAfter=}
    end_s=$(date -d "$end" +%s 2>/dev/null) || end_s=$(date +%s)
    days=$(((end_s - $(date +%s)) / 86400))
    if openssl x509 -in "$cert" -noout -checkend $((CERT_DAYS * 86400)) >/dev/null; then
        record certificate true "$cert_name valid until $end ($days days)"
    else
        record certificate false "TLS certificate $cert_name expires $end ($days days, fewer than $CERT_DAYS): renewal is failing, see 'journalctl -u certbot'"
    fi
}

check_backup() {
    local list newest mtime age
    # The backups are named by their UTC start time; the newest is the last by name, as for
    # phillymesh-chat-backup itself. A copy still being written (.partial) does not count.
    if ! list=$(find "$backup_dir" -mindepth 1 -maxdepth 1 -type d -name '20*' ! -name '*.partial' -printf '%f\n' 2>&1); then
        record backup false "cannot list $backup_dir: ${list//$'\n'/ }"
        return
    fi
    newest=$(printf '%s\n' "$list" | sort | tail -n 1)
    if [ -z "$newest" ]; then
        record backup false "no backup in $backup_dir: see 'journalctl -u phillymesh-chat-backup'"
        return
    fi
    if ! mtime=$(stat -c %Y "$backup_dir/$newest" 2>&1); then
        record backup false "cannot read $backup_dir/$newest: $mtime"
        return
    fi
    age=$(($(date +%s) - mtime))
    if [ "$age" -lt $((BACKUP_HOURS * 3600)) ]; then
        record backup true "newest backup $newest, $((age / 3600)) hours old"
    else
        record backup false "newest backup $backup_dir/$newest is $((age / 3600)) hours old (the limit is $BACKUP_HOURS): the nightly backup is failing, see 'journalctl -u phillymesh-chat-backup'"
    fi
}

# join TEXT...: the texts joined by ", ".
join() {
    local out="" x
    for x in "$@"; do out+="${out:+, }$x"; done
    printf '%s' "$out"
}

check_disk() {
    local path out use target seen=" " used=() full=()
    for path in "$data_dir" /; do
        if ! out=$(df --output=pcent,target "$path" 2>&1); then
            full+=("cannot read the use of $path (${out//$'\n'/ })")
            continue
        fi
        read -r use target <<<"$(tail -n 1 <<<"$out")"
        use=${use%\%}
        # The data directory may be on the root file system (an existing server without a volume).
        [[ $seen != *" $target "* ]] || continue
        seen+="$target "
        used+=("$target $use% used")
        [[ $use =~ ^[0-9]+$ ]] || use=100
        [ "$use" -lt "$DISK_ALERT_PERCENT" ] || full+=("$target is $use% full")
    done
    if [ "${#full[@]}" = 0 ]; then
        record disk true "$(join "${used[@]}") (the alert is at $DISK_ALERT_PERCENT%)"
    else
        record disk false "$(join "${full[@]}") (the alert is at $DISK_ALERT_PERCENT%, diskAlertPercent): free space or grow the volume (volumeSizeGb) before PostgreSQL and Synapse stop"
    fi
}

# health PORT: succeeds when a Synapse process answers 200 OK on 127.0.0.1:PORT/health; else fails
# and prints what it met instead.
health() {
    local reply rc=0 status
    # Plain bash on a TCP socket: no HTTP client is needed for one status line and a two-letter body.
    # shellcheck disable=SC2016 # $0 is expanded by the inner bash
    reply=$(timeout 10 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" && printf "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3 && cat <&3' \
        "$1" 2>&1) || rc=$?
    status=$(head -n 1 <<<"$reply" | tr -d '\r')
    if [ "$rc" = 0 ] && [[ $status == "HTTP/1."?" 200 "* ]] && [ "$(tail -n 1 <<<"$reply" | tr -d '\r')" = OK ]; then
        return 0
    fi
    if [ "$rc" = 124 ]; then
        status="no answer within 10 s"
    elif [[ $reply == *"Connection refused"* ]]; then
        status="connection refused"
    elif [ "$rc" != 0 ]; then
        status=$(tr '\n' ' ' <<<"$reply" | cut -c1-200)
    fi
    printf '%s' "$status"
    return 1
}

check_synapse() {
    local problem
    if problem=$(health "{{synapse_port}}"); then
        record synapse true "Synapse answers $health_url"
    else
        record synapse false "Synapse does not answer $health_url ($problem): see 'systemctl status matrix-synapse' and 'journalctl -u matrix-synapse'"
    fi
}

# unit_running UNIT: whether UNIT has processes now, from its control group in systemd's layout
# (system.slice/[system-<template>.slice/]UNIT, "populated 1" in its cgroup.events). Not `systemctl
# is-active`: the check runs as a dynamic user, and D-Bus hangs up on a user it cannot look up (no
# nss-systemd), while the control groups are readable to anyone.
unit_running() {
    local unit=$1 dir=$cgroup_root/system.slice template
    if [[ $unit == *@* ]]; then
        # A template's instances live in a slice named after it, "-" escaped as systemd does.
        template=${unit%%@*}
        dir+="/system-${template//-/\\x2d}.slice"
    fi
    grep -qx 'populated 1' "$dir/$unit/cgroup.events" 2>/dev/null
}

check_redis() {
    local port=$STATUS_REDIS_PORT reply rc=0
    if ! unit_running redis-server.service; then
        record redis false "redis-server is not running: the workers cannot reach the main process; see 'systemctl status redis-server' and 'journalctl -u redis-server'"
        return
    fi
    # PING without the password: an answer at all (PONG, or NOAUTH) shows Redis serving.
    # shellcheck disable=SC2016 # $0 is expanded by the inner bash
    reply=$(timeout 10 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" && printf "PING\r\n" >&3 && IFS= read -r line <&3 && printf "%s" "$line"' \
        "$port" 2>&1) || rc=$?
    reply=${reply%$'\r'}
    if [ "$rc" = 0 ] && [[ $reply == "+PONG" || $reply == "-NOAUTH"* ]]; then
        record redis true "redis-server answers on 127.0.0.1:$port"
    else
        [ "$rc" != 124 ] || reply="no answer within 10 s"
        record redis false "redis-server does not answer on 127.0.0.1:$port ($(tr '\n' ' ' <<<"$reply" | cut -c1-200)): see 'journalctl -u redis-server'"
    fi
}

check_workers() {
    local entry name port problem good=() bad=()
    for entry in $STATUS_WORKERS; do
        name=${entry%%:*}
        port=${entry#*:}
        if ! unit_running "matrix-synapse-worker@$name.service"; then
            bad+=("$name is not running")
        elif [ "$port" != - ] && ! problem=$(health "$port"); then
            bad+=("$name does not answer 127.0.0.1:$port/health ($problem)")
        else
            good+=("$name")
        fi
    done
    if [ "${#bad[@]}" = 0 ]; then
        record workers true "$(join "${good[@]}") running and answering"
    else
        record workers false "$(join "${bad[@]}"): see 'systemctl status matrix-synapse-worker@<name>' and 'journalctl -u matrix-synapse-worker@<name>'"
    fi
}

# json_string TEXT: TEXT as a JSON string (control characters dropped).
json_string() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    printf '"%s"' "$(tr -d '\000-\037' <<<"$s")"
}

write_status() {
    local dir=${STATE_DIRECTORY:-} i json
    if [ -z "$dir" ]; then
        echo "not recorded (run by hand): systemctl start phillymesh-chat-status records it"
        return
    fi
    json="{\"checkedAt\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"ok\":$([ "$failed" = 0 ] && echo true || echo false),\"checks\":["
    for i in "${!names[@]}"; do
        [ "$i" = 0 ] || json+=","
        json+="{\"name\":\"${names[$i]}\",\"ok\":${oks[$i]},\"detail\":$(json_string "${details[$i]}")}"
    done
    printf '%s]}\n' "$json" >"$dir/status.json.tmp"
    mv -f "$dir/status.json.tmp" "$dir/status.json"
}

check_certificate
check_backup
check_disk
check_synapse
if [ -n "${STATUS_WORKERS:-}" ]; then
    check_redis
    check_workers
fi
write_status
if [ "$failed" != 0 ]; then
    echo "<3>$failed of ${#names[@]} checks failed" >&2
    exit 1
fi
echo "all ${#names[@]} checks ok"
