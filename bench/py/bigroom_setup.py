# The big room on the partner, made on the partner itself by bench/lib/bigroom.ts (python3 as root, in
# one ssh session; Synapse's admin and client APIs on 127.0.0.1:8008). stdin: {"token": the admin's,
# "alias": localpart, "members": N, "history": state events, "concurrency": threads, "sample": users
# made by each method before the faster one makes the rest}. Idempotent: an existing room keeps its
# members and history, only what is missing is added. stdout: one JSON object.
#
# Users are made two ways, and timed: the admin API (PUT /_synapse/admin/v2/users, no password) and
# registration with the shared secret (/_synapse/admin/v1/register, HMAC; a password, so a bcrypt
# hash each). Members join with the admin API's join (POST /_synapse/admin/v1/join/<room>), which
# Synapse does not rate-limit, as it would the client API's joins into one room (rc_joins_per_room).
import hashlib, hmac, json, re, sys, time, urllib.error, urllib.parse, urllib.request
from concurrent.futures import ThreadPoolExecutor

BASE = "http://127.0.0.1:8008"
req = json.load(sys.stdin)
TOKEN = req["token"]


def call(method, path, body=None, token=TOKEN):
    data = None if body is None else json.dumps(body).encode()
    for attempt in range(60):
        r = urllib.request.Request(BASE + path, data=data, method=method)
        r.add_header("Content-Type", "application/json")
        if token:
            r.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(r, timeout=300) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                b = json.loads(raw or b"{}")
            except Exception:
                b = {"raw": raw.decode(errors="replace")[:300]}
            if e.code == 429 and attempt < 59:
                time.sleep(min(max(b.get("retry_after_ms", 1000), 100), 30000) / 1000)
                continue
            return e.code, b
    return 599, {}


st, who = call("GET", "/_matrix/client/v3/account/whoami")
if st != 200:
    print(json.dumps({"error": "admin token refused", "status": st, "body": who}))
    sys.exit(1)
domain = who["user_id"].split(":", 1)[1]
alias = "#%s:%s" % (req["alias"], domain)
t0 = time.time()
st, r = call("GET", "/_matrix/client/v3/directory/room/" + urllib.parse.quote(alias))
reused = st == 200
if reused:
    room = r["room_id"]
else:
    st, r = call("POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat", "visibility": "private", "room_alias_name": req["alias"], "name": "Big room (%d members)" % req["members"]})
    if st != 200:
        print(json.dumps({"error": "createRoom", "status": st, "body": r}))
        sys.exit(1)
    room = r["room_id"]
qroom = urllib.parse.quote(room)


def details():
    st, d = call("GET", "/_synapse/admin/v1/rooms/" + qroom)
    return d


d0 = details()
have = d0.get("joined_members", 0)
missing = max(0, req["members"] - have)
# Names not used yet: continue after the highest existing bigNNNNN.
st, lst = call("GET", "/_synapse/admin/v2/users?name=big&limit=1&order_by=name&dir=b")
start = 0
for u in lst.get("users", []):
    m = re.match(r"@big(\d+):", u["name"])
    if m:
        start = int(m.group(1)) + 1
secret_path = None
for line in open("/etc/matrix-synapse/homeserver.yaml"):
    if line.startswith("registration_shared_secret_path:"):
        secret_path = line.split(":", 1)[1].strip().strip("\"'")
secret = open(secret_path).read().strip() if secret_path else None


def make_admin(i):
    uid = "@big%05d:%s" % (i, domain)
    st, b = call("PUT", "/_synapse/admin/v2/users/" + urllib.parse.quote(uid), {"displayname": "Big %d" % i})
    return uid if st in (200, 201) else None


def make_shared(i):
    st, n = call("GET", "/_synapse/admin/v1/register", token=None)
    user = "big%05d" % i
    pw = "big-room-%d" % i
    mac = hmac.new(secret.encode(), b"\x00".join([n["nonce"].encode(), user.encode(), pw.encode(), b"notadmin"]), hashlib.sha1).hexdigest()
    st, b = call("POST", "/_synapse/admin/v1/register", {"nonce": n["nonce"], "username": user, "password": pw, "displayname": "Big %d" % i, "admin": False, "mac": mac}, token=None)
    return b.get("user_id") if st == 200 else None


def join(uid):
    st, b = call("POST", "/_synapse/admin/v1/join/" + qroom, {"user_id": uid})
    return st == 200


def timed(fn, ids, pool):
    t = time.time()
    out = list(pool.map(fn, ids))
    return out, time.time() - t


methods = {}
made = []
n = start
with ThreadPoolExecutor(req["concurrency"]) as pool:
    if missing > 0:
        sample = min(req["sample"], missing // 2) if secret else 0
        if sample > 0:
            a, ta = timed(make_admin, range(n, n + sample), pool)
            n += sample
            s, ts = timed(make_shared, range(n, n + sample), pool)
            n += sample
            made += [u for u in a + s if u]
            methods = {"adminApiUsersPerSecond": round(sample / ta, 1), "sharedSecretUsersPerSecond": round(sample / ts, 1), "sample": sample}
        rest = missing - len(made)
        fast = make_shared if methods and methods["sharedSecretUsersPerSecond"] > methods["adminApiUsersPerSecond"] else make_admin
        b, tb = timed(fast, range(n, n + rest), pool)
        made += [u for u in b if u]
        methods["bulkMethod"] = fast.__name__
        methods["bulkUsersPerSecond"] = round(rest / tb, 1) if tb > 0 else None
        tj = time.time()
        joined = list(pool.map(join, made))
        methods["joinsPerSecond"] = round(len(made) / (time.time() - tj), 1) if made else None
        methods["joinFailures"] = joined.count(False)
# The state history: topic changes and power-level edits by the admin (one after another: each is
# a new state of the room). The admin's own message rate limit (rc_message) is lifted for it.
call("POST", "/_synapse/admin/v1/users/%s/override_ratelimit" % urllib.parse.quote(who["user_id"]), {"messages_per_second": 0, "burst_count": 0})
hist_done = 0
st, hs = call("GET", "/_matrix/client/v3/rooms/%s/state/org.phillymesh.bench.history/" % qroom)
already = hs.get("count", 0) if st == 200 else 0
th = time.time()
st, pl = call("GET", "/_matrix/client/v3/rooms/%s/state/m.room.power_levels/" % qroom)
for i in range(already, req["history"]):
    if i % 2 == 0:
        st, b = call("PUT", "/_matrix/client/v3/rooms/%s/state/m.room.topic/" % qroom, {"topic": "Topic %d of a long history" % i})
    else:
        plc = dict(pl)
        plc["users"] = dict(pl.get("users", {}))
        plc["users"]["@big%05d:%s" % (i % max(1, req["members"]), domain)] = 10 + i % 40
        st, b = call("PUT", "/_matrix/client/v3/rooms/%s/state/m.room.power_levels/" % qroom, plc)
    if st == 200:
        hist_done += 1
call("PUT", "/_matrix/client/v3/rooms/%s/state/org.phillymesh.bench.history/" % qroom, {"count": max(already, req["history"])})
d1 = details()
print(json.dumps({
    "roomId": room, "alias": alias, "reused": reused, "joinedMembers": d1.get("joined_members"), "stateEvents": d1.get("state_events"),
    "complexity": round((d1.get("state_events") or 0) / 500, 2), "usersMade": len(made), "historyAdded": hist_done,
    "historySeconds": round(time.time() - th, 1), "methods": methods, "seconds": round(time.time() - t0, 1),
}))
