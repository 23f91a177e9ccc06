#!/bin/bash
# Installed as /usr/local/sbin/phillymesh-chat-restore. Restores a backup made by
# phillymesh-chat-backup onto this server: database, signing key, secrets and media.
#   phillymesh-chat-restore /mnt/matrix_data/backups/20261127T020000Z
# Synapse is stopped while it runs and started again after. The current database is kept as
# synapse_before_restore_<time> until you drop it.
set -euo pipefail
CONF=/etc/phillymesh-chat/backup.env
# shellcheck source=/dev/null
[ -f "$CONF" ] && . "$CONF"
: "${DATA_DIR:?}"
src=${1:?usage: phillymesh-chat-restore BACKUP_DIR}
dump=$src/synapse.dump
keys=$src/keys.tar
if [ -f "$src/synapse.dump.gpg" ] && [ -f "$src/keys.tar.gpg" ]; then
    # An encrypted backup (backupPassphrase): decrypted into a directory only root can read, removed
    # however this ends.
    pass=/etc/phillymesh-chat/backup.passphrase
    [ -r "$pass" ] || { echo "$src is encrypted and $pass is missing: set backupPassphrase (the one it was made with) and run pulumi up" >&2; exit 1; }
    plain=$(mktemp -d)
    trap 'rm -rf "$plain"' EXIT
    for f in synapse.dump keys.tar; do
        gpg --batch --quiet --no-secmem-warning --homedir "$plain" --pinentry-mode loopback --passphrase-file "$pass" \
            --decrypt --output "$plain/$f" "$src/$f.gpg" ||
            { echo "$src/$f.gpg could not be decrypted with the backupPassphrase on this server" >&2; exit 1; }
    done
    dump=$plain/synapse.dump
    keys=$plain/keys.tar
fi
if [ ! -f "$dump" ] || [ ! -f "$keys" ]; then
    echo "$src is not a phillymesh-chat backup" >&2
    exit 1
fi

# Check the dump is readable before anything is stopped or renamed.
pg_restore --list <"$dump" >/dev/null || { echo "$dump is not a readable pg_dump archive" >&2; exit 1; }

systemctl stop matrix-synapse
keep=synapse_before_restore_$(date -u +%Y%m%d%H%M%S)
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -d postgres \
    -c "ALTER DATABASE synapse RENAME TO $keep" \
    -c "CREATE DATABASE synapse ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 OWNER synapse"
# The dump is root's (backups are 0600): it reaches pg_restore on stdin. pg_restore reports
# harmless errors too (comments on extensions it does not own), so success is judged by the result.
runuser -u postgres -- pg_restore --no-owner --role=synapse -d synapse <"$dump" ||
    echo "pg_restore reported errors (above); checking the result" >&2
if ! runuser -u postgres -- psql -tAq -v ON_ERROR_STOP=1 -d synapse -c "SELECT count(*) FROM events" >/dev/null 2>&1; then
    echo "the restored database has no events table: putting the database back as it was" >&2
    runuser -u postgres -- psql -q -d postgres -c "DROP DATABASE synapse" -c "ALTER DATABASE $keep RENAME TO synapse"
    systemctl start matrix-synapse
    exit 1
fi
tar -C "$DATA_DIR/synapse" -xf "$keys"
rsync -a "$src/media/" "$DATA_DIR/synapse/media/"
chown -R synapse:synapse "$DATA_DIR/synapse"
# The synapse step's layout: root writes below synapse/ and secrets/, synapse only reads there.
chown root:synapse "$DATA_DIR/synapse"
[ ! -d "$DATA_DIR/synapse/secrets" ] || chown root:synapse "$DATA_DIR/synapse/secrets"
systemctl start matrix-synapse
echo "restored $src; the database as it was before is kept as $keep"
