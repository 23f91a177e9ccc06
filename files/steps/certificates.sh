#!/bin/bash
# Step "certificates": nginx answering ACME challenges on port 80, and one certificate from the ACME
# server for every name we serve, including the server name itself (federation over SRV checks the
# certificate against it). Renewal runs from certbot's timer and reloads nginx; the daily status check
# (phillymesh-chat-status) makes an expiring certificate, an old backup, a full disk or a silent
# Synapse a failed unit, since Let's Encrypt no longer e-mails about expiry.
# Variables: CERT_NAME (the certbot lineage), CERT_NAMES (space-separated, first is the primary), ACME_SERVER, ACME_EMAIL, CHALLENGE
# (http | dns-cloudflare), NGINX_WORKERS, DATA_DIR.
# Files (install_files): the port-80 site, the status check with its unit and timer, and for
# dns-cloudflare /etc/letsencrypt/cloudflare.ini with the token (webServer.ts).
# shellcheck source=files/lib/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/lib.sh"
: "${CERT_NAME:?}" "${CERT_NAMES:?}" "${ACME_SERVER:?}" "${ACME_EMAIL:?}" "${CHALLENGE:?}" "${DATA_DIR:?}" "${NGINX_WORKERS:?}"

# Certificates and the ACME account live on the data volume: a replaced server keeps them.
refuse_symlink "$DATA_DIR/letsencrypt"
install -d -m 755 "$DATA_DIR/letsencrypt"
if [ ! -L /etc/letsencrypt ]; then
    if [ -d /etc/letsencrypt ]; then
        cp -a /etc/letsencrypt/. "$DATA_DIR/letsencrypt/"
        rm -rf /etc/letsencrypt
    fi
    ln -s "$DATA_DIR/letsencrypt" /etc/letsencrypt
fi

packages=(nginx certbot)
[ "$CHALLENGE" != dns-cloudflare ] || packages+=(python3-certbot-dns-cloudflare)
apt_install "${packages[@]}"

# One worker is plenty on one vCPU; each extra worker costs a few MB.
if ! grep -qx "worker_processes $NGINX_WORKERS;" /etc/nginx/nginx.conf; then
    sed -i "s/^worker_processes .*/worker_processes $NGINX_WORKERS;/" /etc/nginx/nginx.conf
    log "nginx: $NGINX_WORKERS worker process(es)"
fi
install -d -m 755 /var/www/acme
rm -f /etc/nginx/sites-enabled/default
install_files
ln -sfn /etc/nginx/sites-available/phillymesh-chat-acme.conf /etc/nginx/sites-enabled/phillymesh-chat-acme.conf
nginx -t -q || die "nginx rejected the port-80 site"
systemctl enable --quiet nginx
if systemctl is-active --quiet nginx; then systemctl reload nginx; else systemctl start nginx; fi

read -r -a names <<<"$CERT_NAMES"
domain_args=()
for n in "${names[@]}"; do domain_args+=(-d "$n"); done
certbot_args=(certonly --non-interactive --agree-tos --email "$ACME_EMAIL" --server "$ACME_SERVER"
    --cert-name "$CERT_NAME" --expand --keep-until-expiring --key-type ecdsa
    --deploy-hook "systemctl reload nginx" "${domain_args[@]}")
case $CHALLENGE in
    http)
        certbot_args+=(--webroot --webroot-path /var/www/acme)
        ;;
    dns-cloudflare)
        file_declared /etc/letsencrypt/cloudflare.ini || die "CHALLENGE is dns-cloudflare but no Cloudflare token was given"
        certbot_args+=(--dns-cloudflare --dns-cloudflare-credentials /etc/letsencrypt/cloudflare.ini --dns-cloudflare-propagation-seconds 30)
        ;;
    *) die "unknown CHALLENGE $CHALLENGE" ;;
esac
log "asking $ACME_SERVER for a certificate for ${names[*]} ($CHALLENGE)"
# certbot's output goes to a private temporary file (a fixed name in /tmp could be planted by anyone).
certbot_log=$(mktemp)
cleanup_later "$certbot_log"
for attempt in 1 2 3; do
    if certbot "${certbot_args[@]}" >"$certbot_log" 2>&1; then break; fi
    [ "$attempt" -lt 3 ] || { tail -n 30 "$certbot_log" >&2; die "certbot could not obtain the certificate"; }
    log "certbot failed (attempt $attempt/3); retrying in 15s"
    sleep 15
done
openssl x509 -in "/etc/letsencrypt/live/$CERT_NAME/fullchain.pem" -noout -enddate | sed "s/^/[$STEP_NAME] certificate valid until /" | sed 's/notAfter=//'

# The certificate expiry check became part of the status check: its unit goes from older servers.
if [ -e /etc/systemd/system/phillymesh-chat-cert-check.timer ] || [ -e /etc/systemd/system/phillymesh-chat-cert-check.service ]; then
    systemctl disable --quiet --now phillymesh-chat-cert-check.timer 2>/dev/null || true
    rm -f /etc/systemd/system/phillymesh-chat-cert-check.timer /etc/systemd/system/phillymesh-chat-cert-check.service \
        /usr/local/sbin/phillymesh-chat-cert-check /var/lib/systemd/timers/stamp-phillymesh-chat-cert-check.timer
    systemctl reset-failed phillymesh-chat-cert-check.service phillymesh-chat-cert-check.timer 2>/dev/null || true
    log "the certificate check is now part of the daily status check (phillymesh-chat-status)"
fi
systemctl daemon-reload
systemctl enable --quiet --now phillymesh-chat-status.timer
systemctl enable --quiet --now certbot.timer 2>/dev/null || true
log "certificates ready"
