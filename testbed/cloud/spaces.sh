#!/bin/bash
# spaces.sh: the machine side of the DigitalOcean Spaces stand-in (testbed/deploy/digitalocean/spaces.ts).
# A real S3 server (SeaweedFS, Apache-2.0, built from its Go module) answers https://<region>.digitaloceanspaces.com
# and https://<bucket>.<region>.digitaloceanspaces.com on 10.250.0.1:443 (names served by the testbed
# DNS as set `spaces`: the regions' endpoints and each bucket the stand-in made), with a certificate from
# the testbed CA the guests already trust ($B/pebble/ca.pem), so the program's boto3 on a guest talks
# to it exactly as it would talk to Spaces (same names, TLS, SigV4 keys, virtual-hosted addressing).
# It is NOT started by host.sh up: only when asked (the stand-in's SpacesBucket, the spaces drill),
# because the first build of SeaweedFS takes minutes. host.sh down stops it.
#
#   spaces.sh ensure        build weed if missing (cached in $WEED_DIR), make keys and certificate,
#                           start the filer stack and the S3 gateway, serve the names in the testbed DNS
#   spaces.sh stop          stop both, stop serving the names
#   spaces.sh status
#   spaces.sh dns-bucket NAME REGION   serve NAME.REGION.digitaloceanspaces.com too (the stand-in, per bucket)
#   spaces.sh keys [WHO]    the Spaces keys of WHO (account: the testbed's DigitalOcean account, what
#                           a stack sets as spacesAccessKeyId/spacesSecretKey; other: another customer
#                           of Spaces, who owns names this account cannot have) as JSON
#   spaces.sh s3-anonymous REGION METHOD PATH   the same without keys
#   spaces.sh keypair [WHO] the same as ACCESS_KEY:SECRET (what `s3` reads on stdin)
#   spaces.sh s3 REGION METHOD PATH [CURL ARGS...]
#                           one SigV4-signed request to https://REGION.digitaloceanspaces.com/PATH (path
#                           style) with the keys ACCESS_KEY:SECRET read from stdin; prints the body, then
#                           a last line "HTTP <code>". The keys reach curl through a config on its stdin,
#                           never its command line.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TB=$(dirname "$HERE")
# shellcheck source=../lib.sh source-path=SCRIPTDIR
. "$TB/lib.sh"

S=$B/spaces
# The SeaweedFS build: the module from the Go module proxy (go's ordinary client), built with
# `go build ./weed` in a writable copy (`go install pkg@version` refuses: the module has replace
# directives). Kept outside $B so a wiped testbed does not rebuild it (about 7 minutes on 2 cores).
WEED_DIR=${WEED_DIR:-/var/tmp/weed-build}
WEED_MODULE=github.com/seaweedfs/seaweedfs
WEED_VERSION=v0.0.0-20261109003541-7506e5f91cd6
WEED=$WEED_DIR/bin/weed
# The regions terraform-provider-digitalocean accepts (digitalocean/spaces/spaces_entities.go SpacesRegions).
REGIONS=(ams3 atl1 blr1 fra1 lon1 nyc3 sfo2 sfo3 sgp1 syd1 tor1)
# The filer stack listens on loopback only; only the S3 gateway is on the testbed network.
MASTER_PORT=29333
VOLUME_PORT=28080
FILER_PORT=28888
S3_GRPC_PORT=28433

die() { echo "spaces.sh: $*" >&2; exit 1; }

build_weed() {
    [ -x "$WEED" ] && return 0
    command -v go >/dev/null || die "go is needed to build SeaweedFS ($WEED is missing)"
    echo "building SeaweedFS $WEED_VERSION into $WEED (once; several minutes)"
    mkdir -p "$WEED_DIR/gopath" "$WEED_DIR/bin"
    local src=$WEED_DIR/gopath/pkg/mod/$WEED_MODULE@$WEED_VERSION
    (
        set -e
        # Everything under WEED_DIR, whatever the caller's Go environment says (a GOMODCACHE set
        # elsewhere would otherwise put the download where $src does not look).
        export GOPATH=$WEED_DIR/gopath GOMODCACHE=$WEED_DIR/gopath/pkg/mod GOFLAGS=-modcacherw
        cd "$WEED_DIR"
        [ -d "$src" ] || go mod download "$WEED_MODULE@$WEED_VERSION"
        rm -rf "$WEED_DIR/src.tmp"
        cp -a "$src" "$WEED_DIR/src.tmp"
        chmod -R u+w "$WEED_DIR/src.tmp"
        rm -rf "$WEED_DIR/src"
        mv "$WEED_DIR/src.tmp" "$WEED_DIR/src"
        cd "$WEED_DIR/src"
        go build -o "$WEED.tmp" ./weed
    ) > "$WEED_DIR/build.log" 2>&1 || { tail -20 "$WEED_DIR/build.log" >&2; die "the SeaweedFS build failed (log: $WEED_DIR/build.log)"; }
    mv "$WEED.tmp" "$WEED"
}

# Two key pairs: the testbed account's and another customer's (for a name already taken).
make_keys() {
    [ -s "$S/keys.json" ] && return 0
    local id1 id2 k1 k2
    id1=DO$(openssl rand -hex 9 | tr a-f A-F)
    id2=DO$(openssl rand -hex 9 | tr a-f A-F)
    k1=$(openssl rand -base64 30 | tr -d '/+=')
    k2=$(openssl rand -base64 30 | tr -d '/+=')
    (umask 077
     jq -n --arg id1 "$id1" --arg k1 "$k1" --arg id2 "$id2" --arg k2 "$k2" \
        '{account: {accessKeyId: $id1, secretKey: $k1}, other: {accessKeyId: $id2, secretKey: $k2}}' > "$S/keys.json")
    # SeaweedFS's identities: each may do everything to its own buckets (Spaces keys with full access).
    (umask 077
     jq '{identities: [to_entries[] | {name: .key, credentials: [{accessKey: .value.accessKeyId, secretKey: .value.secretKey}],
                                       actions: ["Admin", "Read", "Write", "List", "Tagging"]}]}' "$S/keys.json" > "$S/s3.json")
}

# One certificate for every region's endpoint and its virtual-hosted bucket names.
make_cert() {
    [ -s "$S/tls/cert.pem" ] && return 0
    local d=$S/tls p=$B/pebble r san=""
    [ -s "$p/ca.pem" ] || die "no testbed CA ($p/ca.pem): run testbed/host.sh up first"
    mkdir -p "$d"
    for r in "${REGIONS[@]}"; do san+="DNS:$r.digitaloceanspaces.com,DNS:*.$r.digitaloceanspaces.com,"; done
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/key.pem" -out "$d/srv.csr" \
        -subj "/CN=digitaloceanspaces.com" 2>/dev/null
    printf '%s\n' "subjectAltName=${san%,}" 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
        'extendedKeyUsage=serverAuth' 'authorityKeyIdentifier=keyid' 'subjectKeyIdentifier=hash' > "$d/ext.cnf"
    openssl x509 -req -in "$d/srv.csr" -CA "$p/ca.pem" -CAkey "$p/ca.key" -CAcreateserial -out "$d/cert.pem" \
        -days 3650 -extfile "$d/ext.cnf" 2>/dev/null
}

domains() {
    local r out=""
    for r in "${REGIONS[@]}"; do out+="$r.digitaloceanspaces.com,"; done
    echo "${out%,}"
}

# The names, as the testbed DNS set `spaces`: every region's endpoint, and each bucket's
# virtual-hosted name (Spaces has a wildcard; the set holds the buckets made here, in $S/buckets).
serve_names() {
    local want
    touch "$S/buckets"
    want=$(jq -Rn --arg ip "$HOST_IP" --args '[$ARGS.positional[], (inputs | select(length > 0))]
        | map({name: "\(.).digitaloceanspaces.com", type: "A", content: $ip})' "${REGIONS[@]}" < "$S/buckets")
    if [ ! -e "$B/dns/spaces.json" ] || [ "$(jq -c . "$B/dns/spaces.json")" != "$(jq -c . <<<"$want")" ]; then
        "$TB/dns-load.sh" - spaces <<<"$want" >/dev/null
    fi
}

ensure() {
    [ "$(id -u)" = 0 ] || die "needs root"
    [[ $(ip -o addr show dev "$BRIDGE" 2>/dev/null) == *"inet $HOST_IP/"* ]] || die "bridge $BRIDGE is missing: run testbed/host.sh up"
    mkdir -p "$S/data"
    build_weed
    make_keys
    make_cert
    if ! pid_alive spaces-filer "$WEED server"; then
        # Volumes of 64 MB (the default 30 GB is sized for real disks); deleting a non-empty bucket
        # refused, as Spaces does (BucketNotEmpty).
        start_bg spaces-filer "$WEED" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$S/data" \
            -master.port="$MASTER_PORT" -master.volumeSizeLimitMB=64 -volume.port="$VOLUME_PORT" -volume.max=0 \
            -filer -filer.port="$FILER_PORT"
        wait_for 60 curl -fsS -o /dev/null "http://127.0.0.1:$FILER_PORT/" \
            || { tail "$LOG/spaces-filer.log" >&2; die "the SeaweedFS filer did not start"; }
    fi
    if ! pid_alive spaces-s3 "$WEED s3"; then
        # TLS on 443 only (with a certificate, -port serves HTTPS); -domainName: <bucket>.<region>...
        # is virtual-hosted addressing, what boto3 uses for https://<region>.digitaloceanspaces.com.
        start_bg spaces-s3 "$WEED" s3 -filer="127.0.0.1:$FILER_PORT" -ip.bind="$HOST_IP" -port=443 \
            -port.grpc="$S3_GRPC_PORT" -cert.file="$S/tls/cert.pem" -key.file="$S/tls/key.pem" \
            -config="$S/s3.json" -domainName="$(domains)" -allowDeleteBucketNotEmpty=false
        wait_for 60 curl -sS -o /dev/null --cacert "$B/pebble/ca.pem" --resolve "nyc3.digitaloceanspaces.com:443:$HOST_IP" \
            https://nyc3.digitaloceanspaces.com/ \
            || { tail "$LOG/spaces-s3.log" >&2; die "the SeaweedFS S3 gateway did not start"; }
    fi
    serve_names
    echo "spaces: https://<region>.digitaloceanspaces.com on $HOST_IP:443 (SeaweedFS, data $S/data)"
}

stop() {
    stop_bg spaces-s3 "$WEED s3"
    stop_bg spaces-filer "$WEED server"
    if [ -e "$B/dns/spaces.json" ]; then
        # (host.sh down calls this before it stops dnsmasq: no reload when there is none to reload)
        if pid_alive dnsmasq dnsmasq; then "$TB/dns-load.sh" --remove spaces >/dev/null; else rm -f "$B/dns/spaces.json"; fi
    fi
}

status() {
    local n
    for n in spaces-filer:server spaces-s3:s3; do
        if pid_alive "${n%%:*}" "$WEED ${n#*:}"; then echo "  up    ${n%%:*} pid $(cat "$RUN/${n%%:*}.pid")"; else echo "  DOWN  ${n%%:*}"; fi
    done
    if [ -e "$B/dns/spaces.json" ]; then echo "  DNS   $(jq -r '[.[].name] | join(" ")' "$B/dns/spaces.json") -> $HOST_IP"; fi
}

s3() {
    [ $# -ge 3 ] || die "usage: spaces.sh s3 REGION METHOD PATH [CURL ARGS...] (ACCESS_KEY:SECRET on stdin)"
    local region=$1 method=$2 path=$3 keys
    shift 3
    [[ " ${REGIONS[*]} " == *" $region "* ]] || die "unknown region '$region'"
    IFS= read -r keys || true
    [[ $keys =~ ^[A-Za-z0-9]+:[A-Za-z0-9/+=]+$ ]] || die "expected ACCESS_KEY:SECRET on stdin"
    local host=$region.digitaloceanspaces.com
    # UNSIGNED-PAYLOAD: curl signs the request, not the body (S3 accepts it over TLS).
    printf 'user = "%s"\n' "$keys" \
        | curl -sS -K - -X "$method" --aws-sigv4 "aws:amz:$region:s3" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
            --cacert "$B/pebble/ca.pem" --resolve "$host:443:$HOST_IP" -w '\nHTTP %{http_code}\n' "$@" "https://$host/$path"
}

case ${1:-} in
    ensure) ensure ;;
    stop) stop ;;
    status) status ;;
    keys)
        [ -s "$S/keys.json" ] || die "no keys: spaces.sh ensure first"
        jq --arg w "${2:-account}" '.[$w] // error("no such key set")' "$S/keys.json"
        ;;
    keypair)  # ACCESS_KEY:SECRET of WHO, for `s3` on stdin
        [ -s "$S/keys.json" ] || die "no keys: spaces.sh ensure first"
        jq -r --arg w "${2:-account}" '.[$w] // error("no such key set") | "\(.accessKeyId):\(.secretKey)"' "$S/keys.json"
        ;;
    s3) shift; s3 "$@" ;;
    dns-bucket)  # NAME REGION: serve NAME.REGION.digitaloceanspaces.com (a bucket made by the stand-in)
        if [ $# -ne 3 ] || ! [[ $2 =~ ^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$ ]]; then die "usage: spaces.sh dns-bucket NAME REGION"; fi
        [[ " ${REGIONS[*]} " == *" $3 "* ]] || die "unknown region '$3'"
        touch "$S/buckets"
        grep -qxF "$2.$3" "$S/buckets" || echo "$2.$3" >> "$S/buckets"
        serve_names
        ;;
    s3-anonymous)  # REGION METHOD PATH: the same request without keys (is a bucket private?)
        [ $# -eq 4 ] || die "usage: spaces.sh s3-anonymous REGION METHOD PATH"
        [[ " ${REGIONS[*]} " == *" $2 "* ]] || die "unknown region '$2'"
        curl -sS -X "$3" --cacert "$B/pebble/ca.pem" --resolve "$2.digitaloceanspaces.com:443:$HOST_IP" \
            -w '\nHTTP %{http_code}\n' "https://$2.digitaloceanspaces.com/$4"
        ;;
    *) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
