#!/bin/bash
# Step "backups": the daily backup (database dump, keys, media) with its timer, and the restore
# command. Variables: DATA_DIR, BACKUP_KEEP, BACKUP_RSYNC_TARGET (may be empty).
# Files (install_files): backup.env, the backup and restore programs, their unit and timer (backups.ts).
# shellcheck source=files/lib/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/lib.sh"
: "${DATA_DIR:?}" "${BACKUP_KEEP:?}"
BACKUP_RSYNC_TARGET=${BACKUP_RSYNC_TARGET:-}

apt_install rsync
install_files
# No off-site target any more: its pinned key goes too.
file_declared /etc/phillymesh-chat/backup_known_hosts || rm -f /etc/phillymesh-chat/backup_known_hosts
# backupPassphrase emptied: later backups are plain; the passphrase goes (older encrypted backups
# then need it back in config to be restored).
file_declared /etc/phillymesh-chat/backup.passphrase || rm -f /etc/phillymesh-chat/backup.passphrase
# The unit's sandbox lets the backup write here only; it must exist before the unit starts.
refuse_symlink "$DATA_DIR/backups"
install -d -m 700 -o root -g root "$DATA_DIR/backups"
systemctl daemon-reload
systemctl enable --quiet --now phillymesh-chat-backup.timer
if [ -z "$(find "$DATA_DIR/backups" -mindepth 1 -maxdepth 1 -type d -name '20*' 2>/dev/null)" ]; then
    # Through its unit, as the timer runs it: a sandbox that stops the backup fails here, not at 4am.
    log "taking the first backup now"
    since=$(date '+%Y-%m-%d %H:%M:%S')
    systemctl start phillymesh-chat-backup.service ||
        die "the first backup failed: $(journalctl -u phillymesh-chat-backup.service --since "$since" -o cat --no-pager | tail -n 5)"
    journalctl -u phillymesh-chat-backup.service --since "$since" -o cat --no-pager | grep '^backup ' | sed "s/^/[$STEP_NAME] /" || true
fi
log "daily backups to $DATA_DIR/backups (keeping $BACKUP_KEEP)${BACKUP_RSYNC_TARGET:+, copied to $BACKUP_RSYNC_TARGET}; restore with phillymesh-chat-restore DIR"
