#!/bin/bash
# Drill 9's "server that has run for years": run on the guest as root (over ssh, script on stdin).
#   bash -s -- VERSION INDEX_URL DOMAIN
# Synapse VERSION on SQLite, laid out as Debian's old matrix-synapse package left it: config and
# signing key in /etc/matrix-synapse (plus conf.d/server_name.yaml), database and media in
# /var/lib/matrix-synapse, run as user matrix-synapse. Started as the transient unit old-synapse
# (the runbook started it with synctl), listening on 0.0.0.0:8008 so the drill can fill it.
# Prints the signing key path, database path and media store path, one per line.
set -euo pipefail
version=$1
index=$2
domain=$3
export DEBIAN_FRONTEND=noninteractive

apt-get -q update >/dev/null
apt-get -qy install python3-venv >/dev/null
id matrix-synapse >/dev/null 2>&1 || useradd --system --home-dir /var/lib/matrix-synapse --shell /usr/sbin/nologin matrix-synapse
install -d -o matrix-synapse -g matrix-synapse /var/lib/matrix-synapse /etc/matrix-synapse /etc/matrix-synapse/conf.d
if [ ! -x /opt/old-synapse/bin/synctl ]; then
    python3 -m venv /opt/old-synapse
    /opt/old-synapse/bin/pip install --quiet --disable-pip-version-check --index-url "$index" "matrix-synapse==$version"
fi

cd /var/lib/matrix-synapse
runuser -u matrix-synapse -- /opt/old-synapse/bin/python -m synapse.app.homeserver \
    --server-name "$domain" --config-path /etc/matrix-synapse/homeserver.yaml \
    --data-directory /var/lib/matrix-synapse --generate-config --report-stats=no >/dev/null
# Reachable from the testbed host (the drill fills it over HTTP); no registration, as the runbook had.
runuser -u matrix-synapse -- /opt/old-synapse/bin/python - <<'PY'
import yaml
path = "/etc/matrix-synapse/homeserver.yaml"
c = yaml.safe_load(open(path))
c["listeners"] = [{"port": 8008, "type": "http", "tls": False, "bind_addresses": ["0.0.0.0"],
                   "x_forwarded": False, "resources": [{"names": ["client", "federation"], "compress": False}]}]
c["enable_registration"] = False
c["trusted_key_servers"] = []
c["rc_login"] = {"address": {"per_second": 10, "burst_count": 100}, "account": {"per_second": 10, "burst_count": 100}}
c["rc_message"] = {"per_second": 100, "burst_count": 1000}
yaml.safe_dump(c, open(path, "w"))
PY
echo "server_name: $domain" >/etc/matrix-synapse/conf.d/server_name.yaml

systemctl stop old-synapse 2>/dev/null || true
systemctl reset-failed old-synapse 2>/dev/null || true
systemd-run --quiet --unit=old-synapse --uid=matrix-synapse --gid=matrix-synapse \
    --property=WorkingDirectory=/var/lib/matrix-synapse \
    /opt/old-synapse/bin/python -m synapse.app.homeserver \
    --config-path /etc/matrix-synapse/homeserver.yaml --config-path /etc/matrix-synapse/conf.d/
for _ in $(seq 120); do
    curl -fsS -o /dev/null http://127.0.0.1:8008/health && break
    sleep 1
done
curl -fsS -o /dev/null http://127.0.0.1:8008/health || { journalctl -u old-synapse -n 40 --no-pager >&2; exit 1; }

echo "/etc/matrix-synapse/$domain.signing.key"
echo /var/lib/matrix-synapse/homeserver.db
echo /var/lib/matrix-synapse/media_store
