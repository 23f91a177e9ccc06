#!/bin/bash
# Installed as /usr/local/sbin/phillymesh-chat-cert-check (rendered: {{...}} is filled in by webServer.ts). Let's Encrypt no longer e-mails before a
# certificate expires, so a renewal that keeps failing must show somewhere: this check fails (a
# failed unit, an error in the journal) once fewer than 14 days remain.
set -euo pipefail
name='{{certificate_dir}}/fullchain.pem'
# Run by its unit, the certificate comes as a credential (the unit has no access to /etc/letsencrypt);
# run by hand as root, from where certbot keeps it.
cert=${CREDENTIALS_DIRECTORY:+$CREDENTIALS_DIRECTORY/fullchain.pem}
cert=${cert:-$name}
if ! openssl x509 -in "$cert" -noout -checkend $((14 * 24 * 3600)) >/dev/null; then
    echo "<3>TLS certificate $name expires $(openssl x509 -in "$cert" -noout -enddate | cut -d= -f2): renewal is failing, see 'journalctl -u certbot'" >&2
    exit 1
fi
echo "certificate $name valid until $(openssl x509 -in "$cert" -noout -enddate | cut -d= -f2)"
