"""Installed as /usr/local/sbin/phillymesh-chat-media-trim (mediaStorage spaces). Run by Synapse's own
Python (/opt/synapse/current/bin/python, where synapse-s3-storage-provider and boto3 are installed),
as the synapse user, whose home holds the Spaces keys (.aws/credentials, 0600).

  phillymesh-chat-media-trim --move   the media step, once: every local file uploaded to the bucket
                                      and verified there; nothing is removed. Writes the state
                                      file that lets the daily trim remove anything at all.
  phillymesh-chat-media-trim          daily (its timer): local copies not read for cacheDays, then
                                      the least recently read ones while the cache is above
                                      cacheMaxMb (never one read within the last hour), are
                                      uploaded if missing, verified, and only then removed.

The provider's own tool does the finding and the uploading (s3_media_upload `update`: the media
Synapse's database says were not read since a date, into a fresh cache.db; `upload` without
--delete: each file not yet in the bucket). Removing is done here, one file at a time, and only
for a file whose object in the bucket has its size and its MD5 (the ETag, also for boto3's 8 MiB
multipart uploads): the tool's own --delete trusts a bare HEAD, which says nothing of the bytes.
Settings: /etc/phillymesh-chat/media-storage.json (bucket, endpoint, region, mediaStore, cacheDays,
cacheMaxMb, homeserverConfig).
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile

import boto3
import botocore.config
import botocore.exceptions

# The unit sets neither variable; a check of this program off the server may.
SETTINGS = os.environ.get("MEDIA_STORAGE_SETTINGS", "/etc/phillymesh-chat/media-storage.json")
STATE_DIR = os.environ.get("STATE_DIRECTORY", "/var/lib/phillymesh-chat-media")
MOVED = os.path.join(STATE_DIR, "moved.json")
TRIMMED = os.path.join(STATE_DIR, "trimmed.json")
# boto3's TransferConfig defaults (multipart_threshold, multipart_chunksize), which both the storage
# provider and s3_media_upload upload with.
PART_SIZE = 8 * 1024 * 1024
TOOL = os.path.join(os.path.dirname(sys.executable), "s3_media_upload")


def log(*args):
    print(*args, flush=True)


def load_settings():
    with open(SETTINGS) as f:
        return json.load(f)


def s3_client(s):
    # when_required: the checksum trailers botocore sends by default since 1.36 are an AWS feature
    # other S3 services (Spaces among them) have refused; the storage provider sets the same.
    return boto3.client(
        "s3",
        endpoint_url=s["endpoint"],
        region_name=s["region"],
        config=botocore.config.Config(request_checksum_calculation="when_required", response_checksum_validation="when_required"),
    )


def tool(workdir, *args):
    """Runs s3_media_upload in workdir (its cache.db lives in the working directory)."""
    subprocess.run([TOOL, "--no-progress", *args], cwd=workdir, check=True)


def expected_etag(path, etag):
    """The ETag the bucket would give this file: its MD5, or for a multipart upload the MD5 of the
    parts' MD5s, '-', the number of parts."""
    if "-" not in etag:
        h = hashlib.md5()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    digests = []
    with open(path, "rb") as f:
        for part in iter(lambda: f.read(PART_SIZE), b""):
            digests.append(hashlib.md5(part).digest())
    return "%s-%d" % (hashlib.md5(b"".join(digests)).hexdigest(), len(digests))


def verified(s3, bucket, key, path):
    """True only when the bucket holds this file's bytes under key (size and MD5 equal)."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    if head.get("ContentLength") != os.path.getsize(path):
        return False
    etag = head.get("ETag", "").strip('"')
    return etag != "" and etag == expected_etag(path, etag)


def candidates(workdir, media):
    """The files (relative to media) the tool's cache lists: each media's file and its thumbnails."""
    listing = os.path.join(workdir, "files.txt")
    tool(workdir, "write", listing)
    files = []
    with open(listing) as f:
        for line in f:
            rel = line.rstrip("\n")
            if not rel:
                continue
            full = os.path.join(media, rel)
            if rel.endswith("/"):
                if os.path.isdir(full):
                    files.extend(os.path.join(rel, n) for n in sorted(os.listdir(full)) if os.path.isfile(os.path.join(full, n)))
            elif os.path.isfile(full):
                files.append(rel)
    return files


def remove_empty_dirs(media, rel):
    """Removes the directories a removed file leaves empty, never the store's top-level ones."""
    parts = os.path.dirname(rel).split("/")
    while len(parts) > 1:
        try:
            os.rmdir(os.path.join(media, *parts))
        except OSError:
            return
        parts.pop()


def cache_bytes(media):
    total = 0
    for root, _dirs, names in os.walk(media):
        for n in names:
            try:
                total += os.lstat(os.path.join(root, n)).st_size
            except FileNotFoundError:
                pass
    return total


def one_pass(s, s3, workdir, since, remove):
    """update (media not read since `since`) and upload with the tool, then verify each file; with
    `remove`, remove the verified ones. Returns (checked, verified, removed bytes, unverified list)."""
    media = s["mediaStore"]
    tool(workdir, "update", media, since, "--homeserver-config-path", s["homeserverConfig"])
    tool(workdir, "upload", media, s["bucket"], "--endpoint-url", s["endpoint"])
    checked = good = freed = 0
    bad = []
    for rel in candidates(workdir, media):
        path = os.path.join(media, rel)
        checked += 1
        if not verified(s3, s["bucket"], rel, path):
            bad.append(rel)
            continue
        good += 1
        if remove:
            size = os.path.getsize(path)
            os.remove(path)
            freed += size
            remove_empty_dirs(media, rel)
    return checked, good, freed, bad


def write_state(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def move(s, s3):
    with tempfile.TemporaryDirectory(dir=STATE_DIR) as workdir:
        # 0s: every media Synapse knows of that was last read before now.
        checked, good, _, bad = one_pass(s, s3, workdir, "0s", remove=False)
    log("move: %d local files, %d verified in the bucket %s" % (checked, good, s["bucket"]))
    if bad:
        for rel in bad[:20]:
            log("not in the bucket with the same bytes: %s" % rel)
        log("ERROR: %d files are not verified in the bucket; nothing was removed, and the daily trim stays off until a move is verified" % len(bad))
        return 1
    write_state(MOVED, {"files": checked, "bucket": s["bucket"]})
    return 0


def trim(s, s3):
    if not os.path.exists(MOVED):
        log("ERROR: the media already on this server has not been verified in the bucket yet (phillymesh-chat-media-trim --move); nothing removed")
        return 1
    media, cap = s["mediaStore"], s["cacheMaxMb"] * 1024 * 1024
    hours = s["cacheDays"] * 24
    removed = 0
    unverified = set()
    with tempfile.TemporaryDirectory(dir=STATE_DIR) as workdir:
        since = "%dd" % s["cacheDays"]
        while True:
            _, good, freed, bad = one_pass(s, s3, workdir, since, remove=True)
            removed += freed
            unverified.update(bad)
            size = cache_bytes(media)
            log("not read for %s: %d copies removed (%d MB); the cache holds %d MB (at most %d MB)" % (since, good, freed >> 20, size >> 20, cap >> 20))
            if size <= cap or hours <= 1:
                break
            # Above the ceiling: the least recently read next, halving the age down to one hour.
            hours = max(1, hours // 2)
            since = "%dh" % hours
    write_state(TRIMMED, {"removedBytes": removed + (_previous_removed())})
    if size > cap:
        log("WARNING: the cache is still above mediaCacheMaxMb: the rest was read within the last hour or is not verified in the bucket")
    if unverified:
        for rel in sorted(unverified)[:20]:
            log("kept (not verified in the bucket): %s" % rel)
        log("ERROR: %d local files are not verified in the bucket and were kept" % len(unverified))
        return 1
    return 0


def _previous_removed():
    try:
        with open(TRIMMED) as f:
            return int(json.load(f).get("removedBytes", 0))
    except (FileNotFoundError, ValueError):
        return 0


def main():
    s = load_settings()
    s3 = s3_client(s)
    if sys.argv[1:] == ["--move"]:
        return move(s, s3)
    if sys.argv[1:] == []:
        return trim(s, s3)
    log("usage: phillymesh-chat-media-trim [--move]")
    return 2


if __name__ == "__main__":
    sys.exit(main())
