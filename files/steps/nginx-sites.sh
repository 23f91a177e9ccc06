#!/bin/bash
# Step "sites": the TLS sites (homeserver on 443 and 8448, Element on 443, and the apex when it is on
# this server) and the /.well-known/matrix files. A configuration nginx rejects is rolled back, so a
# bad edit never takes the running sites down.
# Variables: TLS_SNIPPET, MATRIX_SITE_CONF, CHAT_SITE_CONF, APEX_SITE_CONF (may be empty),
# WELL_KNOWN_CLIENT, WELL_KNOWN_SERVER.
# shellcheck source=files/scripts/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${TLS_SNIPPET:?}" "${MATRIX_SITE_CONF:?}" "${CHAT_SITE_CONF:?}" "${WELL_KNOWN_CLIENT:?}" "${WELL_KNOWN_SERVER:?}"
APEX_SITE_CONF=${APEX_SITE_CONF:-}

put_file /var/www/well-known/.well-known/matrix/client 644 root:root "$WELL_KNOWN_CLIENT"
put_file /var/www/well-known/.well-known/matrix/server 644 root:root "$WELL_KNOWN_SERVER"

backup=$(mktemp -d)
cleanup_later "$backup"
cp -a /etc/nginx/sites-available /etc/nginx/sites-enabled /etc/nginx/snippets "$backup/" 2>/dev/null || true

put_file /etc/nginx/snippets/phillymesh-chat-tls.conf 644 root:root "$TLS_SNIPPET"
put_file /etc/nginx/sites-available/phillymesh-chat-matrix.conf 644 root:root "$MATRIX_SITE_CONF"
put_file /etc/nginx/sites-available/phillymesh-chat-chat.conf 644 root:root "$CHAT_SITE_CONF"
sites=(matrix chat)
if [ -n "$APEX_SITE_CONF" ]; then
    put_file /etc/nginx/sites-available/phillymesh-chat-apex.conf 644 root:root "$APEX_SITE_CONF"
    sites+=(apex)
else
    rm -f /etc/nginx/sites-enabled/phillymesh-chat-apex.conf /etc/nginx/sites-available/phillymesh-chat-apex.conf
fi
for s in "${sites[@]}"; do
    ln -sfn "/etc/nginx/sites-available/phillymesh-chat-$s.conf" "/etc/nginx/sites-enabled/phillymesh-chat-$s.conf"
done

if ! nginx -t 2>"$backup/nginx-t.log"; then
    cat "$backup/nginx-t.log" >&2
    log "nginx rejected the new sites; restoring the previous configuration"
    rm -rf /etc/nginx/sites-available /etc/nginx/sites-enabled /etc/nginx/snippets
    cp -a "$backup/sites-available" "$backup/sites-enabled" "$backup/snippets" /etc/nginx/
    die "nginx -t failed; the running sites were left as they were"
fi
systemctl reload nginx
log "sites live: ${sites[*]}"
