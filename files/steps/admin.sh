#!/bin/bash
# Step "admin": the admin account, created once (an existing account is left as it is).
# Variables: ADMIN_USER, ADMIN_PASSWORD (secret), DOMAIN.
# shellcheck source=files/lib/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/lib.sh"
: "${ADMIN_USER:?}" "${ADMIN_PASSWORD:?}" "${DOMAIN:?}"

wait_http http://127.0.0.1:8008/health 120 || die "Synapse is not answering on 127.0.0.1:8008"
pwfile=$(mktemp)
cleanup_later "$pwfile"
printf '%s' "$ADMIN_PASSWORD" >"$pwfile"
# The password goes through a 0600 file, never argv; the shared secret comes from the config's file.
/opt/synapse/current/bin/register_new_matrix_user -c /etc/matrix-synapse/homeserver.yaml \
    --exists-ok --admin --user "$ADMIN_USER" --password-file "$pwfile" http://127.0.0.1:8008 >/dev/null
log "admin account @$ADMIN_USER:$DOMAIN is in place"
