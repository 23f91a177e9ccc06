#!/bin/bash
# Installed as /usr/local/sbin/phillymesh-chat-restore with database managed (components/backups.ts),
# in place of the local restore, which would restore into the local PostgreSQL that Synapse no longer
# uses (and, reading the cluster's settings, could reach the cluster with a restore meant for a local
# database). A restore into the cluster is done by hand, on purpose: README, "Growing: managed
# PostgreSQL".
set -euo pipefail
cat >&2 <<'TEXT'
phillymesh-chat-restore: this server's database is the managed PostgreSQL cluster (database: managed);
the automatic restore only knows the local PostgreSQL and does nothing here. By hand, for a backup
directory B (decrypt B/synapse.dump.gpg and B/keys.tar.gpg first if they are encrypted):
  systemctl stop matrix-synapse
  # in DigitalOcean's control panel (or from a fork of the cluster): restore the cluster, or make its
  # database synapse empty, then:
  PGSERVICEFILE=/etc/phillymesh-chat/managed-database.service.conf pg_restore --no-owner --no-privileges -d service=synapse B/synapse.dump
  tar -C <dataDir>/synapse -xf B/keys.tar; rsync -a B/media/ <dataDir>/synapse/media/
  systemctl start matrix-synapse
DigitalOcean also keeps daily backups of the cluster with 7 days of point-in-time recovery.
TEXT
exit 1
