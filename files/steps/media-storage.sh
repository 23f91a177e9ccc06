#!/bin/bash
# Step "media-storage" (mediaStorage spaces; runs after the synapse step, whose Synapse already writes
# every new file to the bucket): the media that was on the server before is uploaded with the storage
# provider's own tool and verified in the bucket (phillymesh-chat-media-trim --move: size and MD5 of
# every file); only once every file is verified is the daily trim of the local cache turned on. Until
# then nothing local is removed, and a failed move fails this step (pulumi up again retries it).
# Variables: DATA_DIR, BUCKET. Files (install_files): the trim program, its settings, unit and timer
# (mediaStorage.ts: mediaStepFiles). Undone by media-storage-off.sh.
# shellcheck source=files/lib/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/lib.sh"
: "${DATA_DIR:?}" "${BUCKET:?}"

UNIT=phillymesh-chat-media-trim
STATE=/var/lib/phillymesh-chat-media
PYTHON=/opt/synapse/current/bin/python

[ -x /opt/synapse/current/bin/s3_media_upload ] ||
    die "the storage provider is not in Synapse's virtualenv (/opt/synapse/current/bin/s3_media_upload is missing): the synapse step installs it with mediaStorage spaces"
install_files
systemctl daemon-reload

# The state directory is the unit's (StateDirectory=); made here the same way for the move.
refuse_symlink "$STATE"
install -d -m 750 -o synapse -g synapse "$STATE"
if [ -e "$STATE/moved.json" ]; then
    log "the media already on this server was verified in the bucket $BUCKET before"
else
    log "uploading the media already on this server to the bucket $BUCKET with the storage provider's tool, then verifying every file"
    # As synapse, with its home (where boto3 finds the keys) and the trim's state directory; the
    # keys are never on a command line.
    if ! (cd / && runuser -u synapse -- env -i PATH=/usr/bin:/bin HOME="$DATA_DIR/synapse" LANG=C.UTF-8 STATE_DIRECTORY="$STATE" \
        "$PYTHON" -I /usr/local/sbin/$UNIT --move); then
        die "the media on this server is not all verified in the bucket $BUCKET (above); nothing local was removed and the trim stays off. Run pulumi up again once the cause is fixed"
    fi
fi
systemctl enable --quiet --now "$UNIT.timer"
log "daily trim of the local media cache on ($UNIT.timer): only copies verified in the bucket are removed"
