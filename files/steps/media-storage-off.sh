#!/bin/bash
# Teardown of step "media-storage": mediaStorage went back to local (the step left the program) or the
# stack is destroyed. Runs after the synapse step has taken the storage provider out of Synapse.
# Stops the trim. If the trim has removed local copies, those files now live only in the bucket: the
# teardown then stops here and removes nothing (the keys stay, the unit stays off), saying how to bring
# them back, because a Synapse without the provider cannot serve them.
# Variables: DATA_DIR, BUCKET.
# shellcheck source=files/lib/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/lib.sh"
: "${DATA_DIR:?}" "${BUCKET:?}"

UNIT=phillymesh-chat-media-trim
STATE=/var/lib/phillymesh-chat-media
systemctl disable --quiet --now "$UNIT.timer" 2>/dev/null || true
if [ -s "$STATE/trimmed.json" ] && ! grep -q '"removedBytes": 0}' "$STATE/trimmed.json"; then
    die "local copies of media were removed after they were verified in the bucket $BUCKET: they live only there, and Synapse without the storage provider cannot serve them. Set mediaStorage back to spaces and run pulumi up (nothing is lost), or first copy the bucket back into $DATA_DIR/synapse/media (e.g. rclone copy) and then delete $STATE/trimmed.json"
fi
rm -f "/etc/systemd/system/$UNIT.service" "/etc/systemd/system/$UNIT.timer" "/usr/local/sbin/$UNIT" /etc/phillymesh-chat/media-storage.json
rm -rf "$DATA_DIR/synapse/.aws" "$STATE"
systemctl daemon-reload
log "media storage back to local: the trim and the Spaces keys are removed from the server (the bucket and its objects stay)"
