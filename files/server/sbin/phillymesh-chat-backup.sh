#!/bin/bash
# Installed as /usr/local/sbin/phillymesh-chat-backup and run daily by its timer (or by hand).
# A backup is a directory under $DATA_DIR/backups/<UTC time>/ holding:
#   synapse.dump   pg_dump -Fc of the database, without the one-time keys (Synapse's documented exclusion)
#   keys.tar       the signing key and the secrets files
#   media/         the media store, hard-linked to the previous backup where unchanged (cheap on the volume)
# The newest BACKUP_KEEP backups are kept. With BACKUP_RSYNC_TARGET set (user@host:path) the new
# backup is also copied off the server.
set -euo pipefail
umask 077
CONF=/etc/phillymesh-chat/backup.env
# shellcheck source=/dev/null
[ -f "$CONF" ] && . "$CONF"
: "${DATA_DIR:?}" "${BACKUP_KEEP:?}"
BACKUP_RSYNC_TARGET=${BACKUP_RSYNC_TARGET:-}

root=$DATA_DIR/backups
stamp=$(date -u +%Y%m%dT%H%M%SZ)
dest=$root/$stamp
install -d -m 700 "$root"
previous=$(find "$root" -mindepth 1 -maxdepth 1 -type d -name '20*' | sort | tail -n 1)
# (Two runs in one second would otherwise move the second into the first's directory.)
[ ! -e "$dest" ] || { echo "backup NOT made: $dest already exists (another backup started this same second)" >&2; exit 1; }

# As postgres (peer authentication), by setpriv: runuser would open a PAM session, which the unit's
# sandbox refuses (and a dump needs none).
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups env HOME=/var/lib/postgresql "$@"; }
dump() { as_postgres pg_dump -Fc --exclude-table-data e2e_one_time_keys_json synapse; }

# Room first. This runs as root, and root may write into the blocks the volume keeps back for
# PostgreSQL (postgresDiskReserveMb), which must stay free for logins and messages when media has
# filled the volume. So a backup starts only when the space left to everyone else holds it:
# the last dump (or, the first time, the database) and a half again, the media added since the last
# backup (the rest is hard-linked), and a MiB for the keys.
room_for_backup() {
    local last_dump="" need avail bsize
    [ -z "$previous" ] || last_dump=$(find "$previous" -maxdepth 1 -name 'synapse.dump*' -printf '%s\n' | head -n 1)
    [ -n "$last_dump" ] || last_dump=$(as_postgres psql -X -A -t -c 'SELECT pg_database_size(current_database())' synapse)
    need=$((last_dump * 3 / 2 + 1048576))
    if [ -n "$previous" ] && [ -d "$previous/media" ]; then
        need=$((need + $(find "$DATA_DIR/synapse/media" -type f -newer "$previous" -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')))
    else
        need=$((need + $(du -s -B1 "$DATA_DIR/synapse/media" | cut -f1)))
    fi
    read -r avail bsize < <(stat -f -c '%a %S' "$root")
    avail=$((avail * bsize))
    if [ "$avail" -lt "$need" ]; then
        echo "backup NOT made: it needs about $((need / 1048576)) MiB and $root has $((avail / 1048576)) MiB left outside the room kept back for PostgreSQL (postgresDiskReserveMb). Free space (old backups in $root, remote media) or raise volumeSizeGb, then: systemctl start phillymesh-chat-backup" >&2
        exit 1
    fi
}
room_for_backup

mkdir "$dest.partial"
trap 'rm -rf "$dest.partial"' EXIT
gnupg=""
if [ "${BACKUP_ENCRYPT:-0}" = 1 ]; then
    # backupPassphrase: the dump (every message) and keys.tar (signing key, secrets) are written
    # encrypted as they are made, never in plain on the disk. Media is copied as it is (rsync's
    # --link-dest sharing between days needs that).
    gnupg=$(mktemp -d)
    trap 'rm -rf "$dest.partial" "$gnupg"' EXIT
    encrypt() {
        gpg --batch --quiet --no-secmem-warning --homedir "$gnupg" --pinentry-mode loopback \
            --passphrase-file /etc/phillymesh-chat/backup.passphrase --symmetric --cipher-algo AES256 --output - -
    }
    dump | encrypt >"$dest.partial/synapse.dump.gpg"
    tar -C "$DATA_DIR/synapse" -cf - keys secrets | encrypt >"$dest.partial/keys.tar.gpg"
else
    dump >"$dest.partial/synapse.dump"
    tar -C "$DATA_DIR/synapse" -cf "$dest.partial/keys.tar" keys secrets
fi
if [ -n "$previous" ] && [ -d "$previous/media" ]; then
    rsync -a --link-dest="$previous/media" "$DATA_DIR/synapse/media/" "$dest.partial/media/"
else
    rsync -a "$DATA_DIR/synapse/media/" "$dest.partial/media/"
fi
mv "$dest.partial" "$dest"
trap - EXIT
[ -z "$gnupg" ] || rm -rf "$gnupg"
echo "backup $dest: database $(du -h "$dest"/synapse.dump* | cut -f1)${gnupg:+ (encrypted)}, media $(find "$dest/media" -type f | wc -l) files"

find "$root" -mindepth 1 -maxdepth 1 -type d -name '20*' | sort -r | tail -n +$((BACKUP_KEEP + 1)) | while read -r old; do
    rm -rf "$old"
done
if [ -n "$BACKUP_RSYNC_TARGET" ]; then
    # The target is the host whose key is pinned in stack config (backupRsyncHostKey), never one that
    # merely answers at its address; and a copy only adds a new dated directory: it never replaces a
    # file already there (--ignore-existing), nor deletes one.
    rsync -a --ignore-existing -e "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/etc/phillymesh-chat/backup_known_hosts -o GlobalKnownHostsFile=/dev/null" \
        "$dest" "$BACKUP_RSYNC_TARGET/"
    echo "copied to $BACKUP_RSYNC_TARGET"
fi
