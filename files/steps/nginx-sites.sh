#!/bin/bash
# Step "sites": the TLS sites (homeserver on 443 and 8448, Element on 443, and the apex when it is on
# this server) and the /.well-known/matrix files. A configuration nginx rejects is rolled back, so a
# bad edit never takes the running sites down.
# Files (install_files): the TLS snippet, the sites (the apex one only when the apex is on this
# server) and the /.well-known/matrix answers (webServer.ts).
# shellcheck source=files/lib/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/lib.sh"

backup=$(mktemp -d)
cleanup_later "$backup"
cp -a /etc/nginx/sites-available /etc/nginx/sites-enabled /etc/nginx/snippets "$backup/" 2>/dev/null || true

install_files
sites=(matrix chat)
if file_declared /etc/nginx/sites-available/phillymesh-chat-apex.conf; then
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
