#!/usr/bin/python3 -I
# Installed as /usr/local/sbin/phillymesh-chat-db-housekeeping and run nightly by
# phillymesh-chat-db-housekeeping.timer (or `systemctl start phillymesh-chat-db-housekeeping`).
# What an ageing homeserver's database needs on a small disk (issue 12):
#   1. a report, to the journal and to $STATE_DIRECTORY/report.json: the database's size, its largest
#      tables (with their dead rows and last autovacuum, so a vacuum that does not keep up shows),
#      the state-group rows and how far the compressor has got;
#   2. with INDEX_REBUILD=on, the indexes of Synapse's churning tables (INDEX_REBUILD_TABLES) rebuilt
#      online (REINDEX TABLE CONCURRENTLY) once they have grown to twice their size after the last
#      rebuild: rows that come and go all day leave index pages half empty, which autovacuum does not
#      give back (the benchmark's year of chat: event_push_actions' indexes 325 MB on a 48 MB table,
#      80 MB once rebuilt, the database 32 % smaller). Skipped when the data volume has less room free
#      than twice the indexes (a rebuild writes a new copy beside the old); a rebuild that fails leaves
#      an invalid copy (*_ccnew), which the run drops at once (and any later run, if that failed too).
#      The rebuild's work is done by PostgreSQL's backend, not at this unit's low priority: 2 s for
#      the benchmark's 325 MB, at night;
#   3. with COMPRESSOR=on, synapse_auto_compressor on COMPRESSOR_CHUNKS chunks of
#      COMPRESSOR_CHUNK_SIZE state groups, picking up where the last run stopped (its own tables
#      state_compressor_*), then the state-group rows again.
# The compressor runs in a child process of its own virtualenv: a Python error, a Rust panic, a crash
# or the unit's memory limit ends that child only, and is logged here at error priority (journalctl
# -p err -u phillymesh-chat-db-housekeeping) with what to do; the unit then fails (systemctl --failed).
# Synapse, deploys and backups do not depend on this unit.
# It connects as the database role synapse over PostgreSQL's Unix socket (peer authentication: the
# unit runs as the synapse user), so no password is involved: the compressor echoes its connection
# string into its error messages, which a password would then reach.
# With HOUSEKEEPING_DATABASE=managed (database: managed) the database is the DigitalOcean cluster:
# psql reaches it through libpq's service file (PGSERVICEFILE, service synapse: TLS verify-full
# against the cluster's CA) with the synapse user's passfile, which systemd hands over as the
# credential `pgpass`; and the compressor is skipped (COMPRESSOR_SKIPPED_MANAGED below), the unit
# still succeeding.
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

DB = os.environ.get("HOUSEKEEPING_DB", "host=/var/run/postgresql port=5432 user=synapse dbname=synapse")
DATABASE = os.environ.get("HOUSEKEEPING_DATABASE", "local")
COMPRESSOR = os.environ.get("COMPRESSOR", "off")
COMPRESSOR_PYTHON = os.environ.get("COMPRESSOR_PYTHON", "/opt/synapse-auto-compressor/current/bin/python")
CHUNK_SIZE = os.environ.get("COMPRESSOR_CHUNK_SIZE", "500")
CHUNKS = os.environ.get("COMPRESSOR_CHUNKS", "100")
LEVELS = os.environ.get("COMPRESSOR_LEVELS", "100,50,25")
# The unit stops the run after an hour (TimeoutStartSec); the child gets a little less, so that its
# end is logged here rather than by a kill.
CHILD_TIMEOUT = int(os.environ.get("COMPRESSOR_TIMEOUT_SECONDS", "3300"))
LARGEST_TABLES = 10
INDEX_REBUILD = os.environ.get("INDEX_REBUILD", "off")
INDEX_TABLES = [t for t in os.environ.get("INDEX_REBUILD_TABLES", "").split(",") if t]
# A table's indexes are rebuilt once they pass this size and twice their size after the last rebuild
# (or, never rebuilt here yet, once they pass it): small indexes are not worth the work.
INDEX_REBUILD_MIN_BYTES = int(float(os.environ.get("INDEX_REBUILD_MIN_MB", "32")) * 1048576)
INDEX_REBUILD_GROWTH = 2
# The data volume, whose free space a local rebuild needs (PostgreSQL's files are on it).
DATA_DIR = os.environ.get("INDEX_REBUILD_DATA_DIR", "")
# One table's rebuild ends within this, leaving time for the compressor.
REINDEX_TIMEOUT_SECONDS = 900
# Why the compressor does not run against a managed cluster: rust-synapse-compress-state's
# connect_to_database (src/database.rs) sets SslVerifyMode::NONE, so its TLS checks no certificate.
COMPRESSOR_SKIPPED_MANAGED = (
    "state compression skipped: the database is the managed cluster, and synapse_auto_compressor connects to it "
    "without verifying its TLS certificate, which could hand the synapse user's password to an impostor "
    "(set stateCompressor false to stop this line)"
)

# The child: the compressor's own log lines (through Python's logging, pyo3-log) go to the journal
# with their priority; any exception, a Rust panic included (pyo3's PanicException is a
# BaseException), is one error line and exit 2.
CHILD = r"""
import logging, sys
class JournalFormat(logging.Formatter):
    def format(self, record):
        prio = 3 if record.levelno >= logging.ERROR else 4 if record.levelno >= logging.WARNING else 6
        return "<%d>%s: %s" % (prio, record.name, record.getMessage().replace("\n", " | "))
handler = logging.StreamHandler(sys.stderr)
handler.setFormatter(JournalFormat())
logging.basicConfig(level=logging.INFO, handlers=[handler])
try:
    import synapse_auto_compressor
    synapse_auto_compressor.compress_state_events_table(
        db_url=sys.argv[1], chunk_size=int(sys.argv[2]), default_levels=sys.argv[3], number_of_chunks=int(sys.argv[4]))
except BaseException as e:
    print("<3>compressor: %s: %s" % (type(e).__name__, str(e).replace("\n", " | ")), file=sys.stderr, flush=True)
    sys.exit(2)
"""


def say(priority, text):
    """One journal line: <N> is its syslog priority (3 error, 4 warning, 6 info)."""
    print("<%d>%s" % (priority, text), file=sys.stderr if priority <= 4 else sys.stdout, flush=True)


def psql(*sql, timeout=300):
    """Rows of a query as lists of text, through psql (locally peer authentication; never a password prompt).
    Several statements run one after the other, each in a transaction of its own (psql's -c each), as
    REINDEX CONCURRENTLY needs."""
    commands = [arg for statement in sql for arg in ("-c", statement)]
    out = subprocess.run(
        ["psql", "-X", "-w", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", DB, *commands],
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    ).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def scanned(figures):
    n = figures["scannedUpTo"]
    return "the compressor has scanned up to group %d" % n if n else "the compressor has not run yet"


def mb(n):
    return "%.1f MB" % (int(n) / 1048576)


def state_figures():
    """State-group rows (PostgreSQL's estimate, refreshed by a sampling ANALYZE: an exact count reads the
    whole table) and the compressor's progress."""
    psql("DO $$ BEGIN IF to_regclass('state_groups_state') IS NOT NULL THEN ANALYZE state_groups_state; END IF; END $$")
    rows = psql("SELECT coalesce((SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass('state_groups_state')), 0),"
                " coalesce((SELECT max(id) FROM state_groups), 0),"
                " (SELECT count(*) FROM pg_tables WHERE tablename = 'state_compressor_total_progress')")[0]
    figures = {"stateGroupsStateRows": max(int(rows[0]), 0), "lastStateGroup": int(rows[1]), "scannedUpTo": None}
    if rows[2] == "1":
        done = psql("SELECT lowest_uncompressed_group FROM state_compressor_total_progress LIMIT 1")
        figures["scannedUpTo"] = int(done[0][0]) if done else None
    return figures


def conninfo_value(value):
    """A libpq conninfo value, single-quoted with its quotes and backslashes escaped."""
    return "'%s'" % value.replace("\\", "\\\\").replace("'", "\\'")


def use_credential_passfile():
    """database managed: the synapse user's passfile, from the unit's credential `pgpass`, copied to a
    0600 file of this run (libpq ignores a passfile that its group may read, and systemd may grant the
    credential by an ACL, which shows as group read), named in the connection string, which overrides
    the service file's passfile. Returns the copy's path (removed at the end), or None without one."""
    global DB
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    source = os.path.join(credentials, "pgpass") if credentials else None
    if not source or not os.path.isfile(source):
        return None
    fd, copy = tempfile.mkstemp(prefix="pgpass-")  # 0600, in the unit's private /tmp
    with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out)
    DB = "%s passfile=%s" % (DB, conninfo_value(copy))
    return copy


def report():
    size = int(psql("SELECT pg_database_size(current_database())")[0][0])
    tables = psql(
        "SELECT c.relname, pg_total_relation_size(c.oid), coalesce(s.n_live_tup, 0), coalesce(s.n_dead_tup, 0),"
        " coalesce(to_char(greatest(s.last_autovacuum, s.last_vacuum) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), 'never')"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid"
        " WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 2 DESC LIMIT %d" % LARGEST_TABLES
    )
    if DATABASE == "managed":
        # Where the figures come from: the cluster's address as the server sees it (a stale local copy never answers here).
        where = psql("SELECT coalesce(host(inet_server_addr()), 'socket') || ':' || coalesce(inet_server_port()::text, '')")[0][0]
        say(6, "database %s on the managed cluster (%s): %s" % ("synapse", where, mb(size)))
    else:
        say(6, "database %s: %s" % ("synapse", mb(size)))
    listed = []
    for name, total, live, dead, vacuumed in tables:
        say(6, "  table %s: %s, %s rows, %s dead, last vacuum %s" % (name, mb(total), live, dead, vacuumed))
        listed.append({"name": name, "bytes": int(total), "rows": int(live), "deadRows": int(dead), "lastVacuum": vacuumed})
    figures = state_figures()
    say(6, "state groups: %d rows in state_groups_state (estimate), newest group %d, %s"
        % (figures["stateGroupsStateRows"], figures["lastStateGroup"], scanned(figures)))
    return {"databaseBytes": size, "largestTables": listed, **figures}


def failure(e):
    """What a failed psql said, on one line."""
    return str(getattr(e, "stderr", None) or e).strip().replace("\n", " | ")


def index_sizes(table):
    """(indexes' bytes, table's own bytes) of a public table, or None when Synapse has not made it."""
    rows = psql("SELECT pg_indexes_size(oid), pg_relation_size(oid) FROM pg_class WHERE oid = to_regclass('public.%s')" % table)
    return (int(rows[0][0]), int(rows[0][1])) if rows else None


def drop_leftovers(table):
    """Drops the invalid copies a failed REINDEX CONCURRENTLY leaves (named <index>_ccnew or _ccold, with a
    number when taken): PostgreSQL keeps updating them on every write although no query uses them.
    Never an index Synapse is building (its background updates' names have no such suffix)."""
    names = psql(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = to_regclass('public.%s') AND NOT i.indisvalid AND c.relname ~ '_cc(new|old)[0-9]*$' ORDER BY 1" % table
    )
    for (name,) in names:
        psql("DROP INDEX CONCURRENTLY IF EXISTS public.\"%s\"" % name.replace('"', '""'), timeout=REINDEX_TIMEOUT_SECONDS)
        say(4, "dropped %s, an invalid index left by a rebuild that did not finish" % name)


def read_baselines(path):
    try:
        with open(path) as f:
            data = json.load(f)
        return {k: int(v) for k, v in data.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def rebuild_indexes():
    """Rebuilds the indexes of INDEX_TABLES that have grown (see the top of this file).
    Returns (ok, figures per table)."""
    directory = os.environ.get("STATE_DIRECTORY")
    baseline_path = os.path.join(directory, "index-baselines.json") if directory else None
    baselines = read_baselines(baseline_path) if baseline_path else {}
    ok, figures = True, []
    for table in INDEX_TABLES:
        entry = {"table": table}
        figures.append(entry)
        try:
            drop_leftovers(table)
            sizes = index_sizes(table)
            if sizes is None:
                entry["rebuilt"] = False
                continue
            before, heap = sizes
            entry.update(indexBytes=before, tableBytes=heap)
            baseline = baselines.get(table)
            if before < INDEX_REBUILD_MIN_BYTES or (baseline and before < INDEX_REBUILD_GROWTH * baseline):
                since = ", %s after the last rebuild" % mb(baseline) if baseline else ""
                say(6, "indexes of %s: %s (table %s%s), no rebuild needed" % (table, mb(before), mb(heap), since))
                entry["rebuilt"] = False
                continue
            if DATABASE != "managed" and DATA_DIR:
                fs = os.statvfs(DATA_DIR)
                free = fs.f_bavail * fs.f_frsize
                if free < 2 * before:
                    say(4, "indexes of %s: %s, not rebuilt: a rebuild needs twice that free on %s, which has %s"
                        % (table, mb(before), DATA_DIR, mb(free)))
                    entry.update(rebuilt=False, skipped="disk")
                    continue
            started = time.monotonic()
            psql("SET statement_timeout = '%ds'" % REINDEX_TIMEOUT_SECONDS, "REINDEX TABLE CONCURRENTLY public.%s" % table,
                 timeout=REINDEX_TIMEOUT_SECONDS + 60)
            after = index_sizes(table)[0]
            seconds = time.monotonic() - started
            say(6, "indexes of %s rebuilt: %s -> %s in %.0f s (table %s)" % (table, mb(before), mb(after), seconds, mb(heap)))
            entry.update(rebuilt=True, indexBytesAfter=after, seconds=round(seconds, 1))
            baselines[table] = after
        except (subprocess.SubprocessError, OSError, ValueError, IndexError, TypeError) as e:
            ok = False
            entry.update(rebuilt=False, error=failure(e))
            say(3, "rebuilding the indexes of %s failed: %s. Synapse is not affected (the old indexes stay in use until a "
                   "new copy is complete)." % (table, failure(e)))
            try:
                drop_leftovers(table)
            except (subprocess.SubprocessError, OSError) as again:
                say(4, "could not drop the invalid copy left by the failed rebuild (the next run tries again): %s" % failure(again))
    if baseline_path:
        tmp = baseline_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(baselines, f, indent=1, sort_keys=True)
        os.replace(tmp, baseline_path)
    return ok, figures


def compress(deadline):
    """Runs the compressor's child; returns (ok, detail)."""
    if not os.access(COMPRESSOR_PYTHON, os.X_OK):
        return False, "its virtualenv is missing (%s): run pulumi up to install it again" % COMPRESSOR_PYTHON
    say(6, "compressing: %s chunks of %s state groups (levels %s)" % (CHUNKS, CHUNK_SIZE, LEVELS))
    started = time.monotonic()
    # What is left of the run's time once the indexes are rebuilt.
    limit = max(60, int(deadline - started))
    try:
        child = subprocess.run([COMPRESSOR_PYTHON, "-I", "-c", CHILD, DB, CHUNK_SIZE, LEVELS, CHUNKS], timeout=limit)
    except subprocess.TimeoutExpired:
        return False, "it did not finish within %d s and was stopped; the next run carries on from its last chunk" % limit
    seconds = time.monotonic() - started
    if child.returncode == 0:
        return True, "finished in %.0f s" % seconds
    if child.returncode < 0:
        how = "was killed by signal %d" % -child.returncode
        if child.returncode == -9:
            how += " (most likely the memory limit, stateCompressorMemoryMb: lower stateCompressorChunkSize or raise the limit)"
    else:
        how = "failed with exit code %d (its error is above)" % child.returncode
    return False, "it %s after %.0f s" % (how, seconds)


def write_report(data):
    directory = os.environ.get("STATE_DIRECTORY")
    if not directory:
        return
    tmp = os.path.join(directory, "report.json.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, os.path.join(directory, "report.json"))


def main():
    passfile = use_credential_passfile() if DATABASE == "managed" else None
    try:
        return housekeeping()
    finally:
        if passfile:
            os.unlink(passfile)


def housekeeping():
    deadline = time.monotonic() + CHILD_TIMEOUT
    data = {"checkedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "compressor": COMPRESSOR, "database": DATABASE}
    try:
        data["before"] = report()
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as e:
        if DATABASE == "managed":
            hint = "is the cluster up, and this droplet in its firewall? try: PGSERVICEFILE=%s psql service=synapse" % os.environ.get("PGSERVICEFILE", "")
        else:
            hint = "is PostgreSQL running? systemctl status 'postgresql@*'"
        say(3, "database report failed: %s (%s)" % (failure(e), hint))
        data["ok"] = False
        write_report(data)
        return 1
    ok = True
    if INDEX_REBUILD == "on":
        ok, data["indexes"] = rebuild_indexes()
    else:
        say(6, "index rebuilds are off (indexRebuild: false)")
    if COMPRESSOR == "on" and DATABASE == "managed":
        say(6, COMPRESSOR_SKIPPED_MANAGED)
        data["compression"] = {"ok": True, "skipped": COMPRESSOR_SKIPPED_MANAGED}
    elif COMPRESSOR == "on":
        compressed, detail = compress(deadline)
        ok = ok and compressed
        data["compression"] = {"ok": compressed, "detail": detail}
        if compressed:
            say(6, "state compression %s" % detail)
        else:
            say(3, "state compression failed: %s. Synapse is not affected (the compressor only rewrites state groups in "
                   "transactions it commits whole); the next night tries again. See README 'Housekeeping' if it keeps failing."
                % detail)
        try:
            after = state_figures()
            data["after"] = after
            say(6, "after compression: %d rows in state_groups_state (estimate), %s" % (after["stateGroupsStateRows"], scanned(after)))
        except (subprocess.SubprocessError, OSError, ValueError, IndexError) as e:
            say(4, "could not read the state figures after compression: %s" % e)
    else:
        say(6, "state compression is off (stateCompressor: false)")
    data["ok"] = ok
    write_report(data)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
