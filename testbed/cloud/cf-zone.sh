#!/bin/bash
# cf-zone.sh: the zones of the testbed's Cloudflare "account" (the stand-in in
# testbed/deploy/cloudflare/). $B/cloud/cf-zones.json maps zone id -> zone name; the records of
# each zone are in $B/cloud/cf-records.json and are served by the testbed DNS as set cf-<zone>.
#
#   cf-zone.sh ensure ZONE            add ZONE (e.g. phillymesh.test) if missing; prints its zone id
#                                     (32 hex, derived from the name: the same on every testbed)
#   cf-zone.sh id ZONE                print the zone id (exit 1 if ZONE is not in the account)
#   cf-zone.sh add-record ZONE JSON   a record made outside any stack, as by hand in the dashboard:
#                                     JSON like {"name":"matrix.phillymesh.test","type":"A","content":"10.250.0.9"}
#                                     or {"name":"x.test","type":"CAA","data":{"flags":0,"tag":"issue","value":"ca.test"}};
#                                     prints the record id
#   cf-zone.sh delete-record ZONE ID
#   cf-zone.sh list [ZONE]            the records (all zones, or one)
#   cf-zone.sh remove ZONE            drop the zone, its records and its DNS set
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TB=$(dirname "$HERE")
# shellcheck source=../lib.sh source-path=SCRIPTDIR
. "$TB/lib.sh"

CLOUD=$B/cloud
ZONES=$CLOUD/cf-zones.json
RECORDS=$CLOUD/cf-records.json
LOCK=$CLOUD/.cf.lock

die() { echo "cf-zone.sh: $*" >&2; exit 1; }

# The lock the stand-in's provider takes (a directory holding the owner's pid).
lock() {
    local i owner
    mkdir -p "$CLOUD"
    for i in $(seq 600); do
        if mkdir "$LOCK" 2>/dev/null; then
            echo $$ > "$LOCK/pid"
            trap 'rm -rf "$LOCK"' EXIT
            return 0
        fi
        owner=$(cat "$LOCK/pid" 2>/dev/null || true)
        if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then rm -rf "$LOCK"; continue; fi
        sleep 0.1
        : "$i"
    done
    die "$LOCK is held by pid ${owner:-?}"
}

zone_ok() { [[ $1 =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$ ]] || die "bad zone name '$1'"; }
zone_id() { printf '%s' "$1" | md5sum | cut -c1-32; }
json_or_empty() { if [ -s "$1" ]; then cat "$1"; else echo '{}'; fi; }

write_json() {
    local file=$1 tmp
    tmp=$(mktemp "$file.XXXXXX")
    cat > "$tmp"
    mv "$tmp" "$file"
}

# serve ZONE ID: the zone's records into the testbed DNS (what the provider does after each change).
serve() {
    local zone=$1 id=$2 set
    set=$(json_or_empty "$RECORDS" | jq --arg id "$id" '[(.[$id] // [])[] |
        if .type == "SRV" or .type == "CAA" then {name, type, data}
        elif .type == "MX" then {name, type, content, priority}
        else {name, type, content} end]')
    if [ "$set" = "[]" ]; then
        bash "$TB/dns-load.sh" --remove "cf-$zone" >/dev/null
    else
        bash "$TB/dns-load.sh" - "cf-$zone" <<<"$set" >/dev/null
    fi
}

known_id() {
    local id
    id=$(json_or_empty "$ZONES" | jq -r --arg z "$1" 'to_entries[] | select(.value == $z) | .key' | head -1)
    [ -n "$id" ] || die "zone $1 is not in the testbed's Cloudflare account (cf-zone.sh ensure $1)"
    echo "$id"
}

[ $# -ge 1 ] || { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
op=$1
shift
case $op in
    ensure)
        [ $# -eq 1 ] || die "usage: ensure ZONE"
        zone_ok "$1"
        lock
        id=$(zone_id "$1")
        json_or_empty "$ZONES" | jq --arg id "$id" --arg z "$1" '.[$id] = $z' | write_json "$ZONES"
        echo "$id"
        ;;
    id)
        [ $# -eq 1 ] || die "usage: id ZONE"
        known_id "$1"
        ;;
    add-record)
        [ $# -eq 2 ] || die "usage: add-record ZONE JSON"
        lock
        id=$(known_id "$1")
        rid=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
        now=$(date -u +%FT%T.000Z)
        rec=$(jq -c --arg rid "$rid" --arg zid "$id" --arg zone "$1" --arg now "$now" '
            (.name | ascii_downcase | rtrimstr(".")) as $n
            | (if $n == "@" or $n == $zone then $zone elif ($n | endswith("." + $zone)) then $n else $n + "." + $zone end) as $fqdn
            | . + {id: $rid, zoneId: $zid, zoneName: $zone, name: $fqdn, type: (.type | ascii_upcase), ttl: (.ttl // 1),
                   proxied: (.proxied // false), proxiable: ((.type | ascii_upcase) | IN("A", "AAAA", "CNAME")),
                   comment: (.comment // null), tags: [], createdOn: $now, modifiedOn: $now}
            | if .type == "SRV" then .content = "\(.data.weight) \(.data.port) \(.data.target)" | .priority = .data.priority
              elif .type == "CAA" then .content = "\(.data.flags) \(.data.tag) \"\(.data.value)\""
              else . end' <<<"$2") || die "bad record JSON"
        json_or_empty "$RECORDS" | jq --arg id "$id" --argjson r "$rec" '.[$id] = ((.[$id] // []) + [$r])' | write_json "$RECORDS"
        serve "$1" "$id" || { json_or_empty "$RECORDS" | jq --arg id "$id" --arg rid "$rid" '.[$id] |= map(select(.id != $rid))' | write_json "$RECORDS"; die "the testbed DNS refused the record"; }
        echo "$rid"
        ;;
    delete-record)
        [ $# -eq 2 ] || die "usage: delete-record ZONE ID"
        lock
        id=$(known_id "$1")
        json_or_empty "$RECORDS" | jq --arg id "$id" --arg rid "$2" '.[$id] |= map(select(.id != $rid))' | write_json "$RECORDS"
        serve "$1" "$id"
        ;;
    list)
        if [ $# -eq 1 ]; then
            id=$(known_id "$1")
            json_or_empty "$RECORDS" | jq -r --arg id "$id" '(.[$id] // [])[] | "\(.id) \(.type) \(.name) \(.content) ttl=\(.ttl) \(.comment // "")"'
        else
            json_or_empty "$ZONES" | jq -r 'to_entries[] | "\(.key) \(.value)"'
        fi
        ;;
    remove)
        [ $# -eq 1 ] || die "usage: remove ZONE"
        lock
        id=$(known_id "$1")
        json_or_empty "$RECORDS" | jq --arg id "$id" 'del(.[$id])' | write_json "$RECORDS"
        json_or_empty "$ZONES" | jq --arg id "$id" 'del(.[$id])' | write_json "$ZONES"
        bash "$TB/dns-load.sh" --remove "cf-$1" >/dev/null
        ;;
    *) die "unknown operation '$op'" ;;
esac
