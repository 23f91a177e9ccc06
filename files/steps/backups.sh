#!/bin/bash
# Step "backups": the daily backup (database dump, keys, media) with its timer, and the restore
# command. Variables: DATA_DIR, BACKUP_KEEP, BACKUP_RSYNC_TARGET (may be empty), BACKUP_SCRIPT,
# RESTORE_SCRIPT, BACKUP_SERVICE, BACKUP_TIMER.
# shellcheck source=files/scripts/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${DATA_DIR:?}" "${BACKUP_KEEP:?}" "${BACKUP_SCRIPT:?}" "${RESTORE_SCRIPT:?}" "${BACKUP_SERVICE:?}" "${BACKUP_TIMER:?}"
BACKUP_RSYNC_TARGET=${BACKUP_RSYNC_TARGET:-}

apt_install rsync
put_file /etc/phillymesh-chat/backup.env 600 root:root "DATA_DIR=$DATA_DIR
BACKUP_KEEP=$BACKUP_KEEP
BACKUP_RSYNC_TARGET=$BACKUP_RSYNC_TARGET"
put_file /usr/local/sbin/phillymesh-chat-backup 755 root:root "$BACKUP_SCRIPT"
put_file /usr/local/sbin/phillymesh-chat-restore 755 root:root "$RESTORE_SCRIPT"
put_file /etc/systemd/system/phillymesh-chat-backup.service 644 root:root "$BACKUP_SERVICE"
put_file /etc/systemd/system/phillymesh-chat-backup.timer 644 root:root "$BACKUP_TIMER"
systemctl daemon-reload
systemctl enable --quiet --now phillymesh-chat-backup.timer
if [ -z "$(find "$DATA_DIR/backups" -mindepth 1 -maxdepth 1 -type d -name '20*' 2>/dev/null)" ]; then
    log "taking the first backup now"
    /usr/local/sbin/phillymesh-chat-backup | sed "s/^/[$STEP_NAME] /"
fi
log "daily backups to $DATA_DIR/backups (keeping $BACKUP_KEEP)${BACKUP_RSYNC_TARGET:+, copied to $BACKUP_RSYNC_TARGET}; restore with phillymesh-chat-restore DIR"
