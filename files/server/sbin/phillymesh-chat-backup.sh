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
mkdir "$dest.partial"
trap 'rm -rf "$dest.partial"' EXIT

# As postgres (peer authentication), by setpriv: runuser would open a PAM session, which the unit's
# sandbox refuses (and a dump needs none).
dump() {
    setpriv --reuid=postgres --regid=postgres --init-groups env HOME=/var/lib/postgresql \
        pg_dump -Fc --exclude-table-data e2e_one_time_keys_json synapse
}
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
