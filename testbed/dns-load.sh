#!/bin/bash
# dns-load.sh: the testbed's DNS (dnsmasq on 10.250.0.1:53), the stand-in for the Cloudflare zone.
# It answers only the records in $B/dns/*.json, in the shape the Pulumi program outputs as
# `dnsRecords` (a JSON list, or an object holding it under "dnsRecords"):
#   [{"name":"matrix.phillymesh.test","type":"A","content":"10.250.0.10"},
#    {"name":"_matrix-fed._tcp.phillymesh.test","type":"SRV","priority":10,"weight":5,"port":8448,
#     "target":"matrix.phillymesh.test"}, ...]
# Types: A, AAAA, CNAME (target must itself be a record here), SRV (fields at top level or in
# Cloudflare's `data`), CAA (flags/tag/value at top level or in `data`; served as a raw type-257
# record), TXT, MX. Anything else is refused, so a test never passes on a record that was silently
# dropped. The Cloudflare stand-in (testbed/deploy/cloudflare/) keeps each zone as set cf-ZONE.
#
# Usage:
#   dns-load.sh FILE.json [SET]   store FILE as $B/dns/SET.json (SET: FILE's base name), reload
#   dns-load.sh - SET             the same, records read from stdin
#   dns-load.sh --remove SET      drop one set, reload
#   dns-load.sh --clear           drop every set, reload
#   dns-load.sh --reload          re-render from $B/dns/*.json and (re)start dnsmasq
#   dns-load.sh --show            print the rendered dnsmasq records
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$HERE/lib.sh"

D=$B/dns
CONF=$D/conf   # rendered files live apart from *.json so the glob sees only record sets

usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }

# render JSON...: dnsmasq lines for every record, or exit non-zero naming the bad record.
render() {
    jq -r --slurp '
      def bad(r; why): error("record \(r | tojson): \(why)");
      def fqdn(r): (. // "" | tostring | rtrimstr(".") | ascii_downcase) as $n
        | if ($n | test("^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$"))
          then $n else bad(r; "bad name \(. | tojson)") end;
      def hex2: "0123456789abcdef"[(. / 16 | floor):(. / 16 | floor) + 1] + "0123456789abcdef"[(. % 16):(. % 16) + 1];
      def num(r; what): if (. | type) == "number" and . >= 0 and . <= 65535 and (. | floor) == .
          then . else bad(r; "\(what) must be an integer 0-65535") end;
      [ .[] | if type == "object" then .dnsRecords else . end | .[] ] | .[] | . as $r
      | ($r.name | fqdn($r)) as $name
      | if $r.type == "A" then
          if ($r.content | tostring | test("^([0-9]{1,3}\\.){3}[0-9]{1,3}$")) then "host-record=\($name),\($r.content)"
          else bad($r; "content is not an IPv4 address") end
        elif $r.type == "AAAA" then
          if ($r.content | tostring | test("^[0-9a-fA-F:.]+$") and contains(":")) then "host-record=\($name),\($r.content)"
          else bad($r; "content is not an IPv6 address") end
        elif $r.type == "CNAME" then "cname=\($name),\($r.content | fqdn($r))"
        elif $r.type == "SRV" then
          ($r.data // $r) as $d
          | "srv-host=\($name),\($d.target | fqdn($r)),\($d.port | num($r; "port")),\(($d.priority // $r.priority // 0) | num($r; "priority")),\(($d.weight // 0) | num($r; "weight"))"
        elif $r.type == "TXT" then
          if ($r.content | tostring | test("[\n\r]")) then bad($r; "newline in TXT")
          else "txt-record=\($name),\($r.content | tostring | tojson)" end
        elif $r.type == "MX" then "mx-host=\($name),\($r.content | fqdn($r)),\(($r.priority // 10) | num($r; "priority"))"
        elif $r.type == "CAA" then
          # RFC 8659: flags (0-255), tag (letters and digits), value; as dnsmasq dns-rr type 257 hex.
          ($r.data // $r) as $d
          | ($d.flags // 0 | if type == "string" then tonumber? // -1 else . end) as $flags
          | ($d.tag // "" | tostring) as $tag
          | ($d.value // "" | tostring) as $value
          | if ($flags | type) != "number" or $flags < 0 or $flags > 255 or ($flags | floor) != $flags then bad($r; "CAA flags must be an integer 0-255")
            elif ($tag | test("^[A-Za-z0-9]{1,15}$") | not) then bad($r; "CAA tag must be 1-15 letters or digits")
            elif ($value | test("^[ -~]*$") | not) then bad($r; "CAA value must be printable ASCII")
            else "dns-rr=\($name),257,\([$flags, ($tag | length)] + ($tag | explode) + ($value | explode) | map(hex2) | join(""))"
            end
        else bad($r; "type \($r.type | tojson) is not supported by the testbed DNS")
        end' "$@"
}

# The fixed part: listen only on the bridge address, never forward anything anywhere.
write_base_conf() {
    mkdir -p "$CONF"
    cat > "$CONF/dnsmasq.conf" <<EOF
# Written by testbed/dns-load.sh. Authoritative-only stand-in for the public zone.
listen-address=$HOST_IP
bind-interfaces
port=53
# No upstream at all: the guests have no route out, and a name the tests did not declare must fail.
no-resolv
no-hosts
no-poll
# Answer NXDOMAIN (not REFUSED) for unknown names, as a real zone does. Synapse treats REFUSED for
# the fallback _matrix._tcp SRV lookup as a hard error, where NXDOMAIN means "no such record".
local=/#/
# TTL 0: a test that edits records sees the change at once (nothing caches the old answer).
local-ttl=0
no-negcache
pid-file=
log-queries
log-facility=-
# The host's own services: pebble's HTTPS listener (also in the guests' /etc/hosts) and the PyPI
# proxy's TLS name.
host-record=acme.test,$HOST_IP
host-record=pypi.test,$HOST_IP
conf-file=$CONF/records.conf
EOF
}

restart_dnsmasq() {
    # No "ip | grep -q" anywhere: under pipefail, grep quitting early makes ip die of SIGPIPE.
    [[ $(ip -o addr show dev "$BRIDGE" 2>/dev/null) == *"inet $HOST_IP/"* ]] \
        || { echo "bridge $BRIDGE with $HOST_IP is missing: run testbed/host.sh up" >&2; exit 1; }
    stop_bg dnsmasq dnsmasq >/dev/null
    # One whose pid file was lost (an interrupted restart) would keep port 53 and answer with old
    # records while the new one fails to bind: ours are found by their config file.
    if pkill -f -- "--conf-file=$CONF/dnsmasq.conf" 2>/dev/null; then sleep 0.5; fi
    # (fd 9 is the lock below: the daemon must not inherit it, or it would hold the lock for good)
    (exec 9>&-; start_bg dnsmasq dnsmasq --keep-in-foreground --conf-file="$CONF/dnsmasq.conf")
    if ! wait_for 5 dig +short +time=1 +tries=1 "@$HOST_IP" acme.test A; then
        tail -5 "$LOG/dnsmasq.log" >&2
        echo "dnsmasq did not start" >&2
        exit 1
    fi
}

# reload: render every set into a temporary file, check it with dnsmasq itself, then swap it in.
reload() {
    local tmp
    shopt -s nullglob
    local sets=("$D"/*.json)
    write_base_conf
    tmp=$(mktemp "$CONF/records.XXXXXX")
    if [ ${#sets[@]} -gt 0 ]; then
        if ! render "${sets[@]}" > "$tmp"; then
            rm -f "$tmp"
            exit 1
        fi
    fi
    if ! dnsmasq --test --conf-file=<(sed "s|^conf-file=.*|conf-file=$tmp|" "$CONF/dnsmasq.conf") >/dev/null 2>&1; then
        dnsmasq --test --conf-file=<(sed "s|^conf-file=.*|conf-file=$tmp|" "$CONF/dnsmasq.conf") >&2 || true
        rm -f "$tmp"
        exit 1
    fi
    mv "$tmp" "$CONF/records.conf"
    # dnsmasq rereads only hosts files on SIGHUP, not srv-host/cname/host-record: restart it.
    restart_dnsmasq
    echo "dns: $(grep -c . "$CONF/records.conf" || true) records from ${#sets[@]} set(s) served on $HOST_IP:53"
}

check_set_name() {
    [[ $1 =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "bad set name '$1' (letters, digits, . _ -)" >&2; exit 2; }
}

[ $# -ge 1 ] || usage
mkdir -p "$D"
# Deploys run in parallel (testbed.sh up, the drills, the benchmark) and each loads its records:
# one change at a time, or two restarts interleave and leave dnsmasq's pid file wrong.
exec 9>"$D/.lock"
flock -w 60 9 || { echo "dns-load.sh: another load holds $D/.lock" >&2; exit 1; }
case $1 in
    --reload) reload ;;
    --show) cat "$CONF/records.conf" ;;
    --clear)
        rm -f "$D"/*.json
        reload
        ;;
    --remove)
        [ $# -eq 2 ] || usage
        check_set_name "$2"
        rm -f "$D/$2.json"
        reload
        ;;
    -h|--help) usage ;;
    *)
        src=$1
        if [ "$src" = - ]; then
            [ $# -eq 2 ] || { echo "reading stdin needs a SET name" >&2; exit 2; }
            set_name=$2
        else
            [ -f "$src" ] || { echo "no such file: $src" >&2; exit 2; }
            set_name=${2:-$(basename "$src" .json)}
        fi
        check_set_name "$set_name"
        new=$(mktemp)
        trap 'rm -f "$new"' EXIT
        cat "$src" > "$new"
        # Check this set alone first, so an error names the file being loaded.
        render "$new" > /dev/null
        cp "$new" "$D/$set_name.json"
        reload
        ;;
esac
