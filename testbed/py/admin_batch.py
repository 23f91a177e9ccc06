# Synapse admin API requests run on the server itself (the admin API listens on 127.0.0.1:8008
# only), in one ssh session: testbed/lib/guest.ts's guestPython runs this with python3 on the guest.
# stdin: {"user", "password", "token" (optional: reused while whoami accepts it), "requests":
# [[method, path, body or null], ...]}. stdout: {"token", "results": [[status, body], ...]}, or
# {"error", "status", "body"} and exit 1 when the admin cannot log in. 429s are waited out.
import json
import sys
import time
import urllib.error
import urllib.request

BASE = "http://127.0.0.1:8008"


def call(method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    r = urllib.request.Request(BASE + path, data=data, method=method)
    r.add_header("Content-Type", "application/json")
    if token:
        r.add_header("Authorization", "Bearer " + token)
    for attempt in range(30):
        try:
            with urllib.request.urlopen(r, timeout=120) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                b = json.loads(raw or b"{}")
            except Exception:
                b = {"raw": raw.decode(errors="replace")[:300]}
            if e.code == 429 and attempt < 29:
                time.sleep(min(max(b.get("retry_after_ms", 1000), 100), 30000) / 1000)
                continue
            return e.code, b


req = json.load(sys.stdin)
token = req.get("token")
if token:
    st, _ = call("GET", "/_matrix/client/v3/account/whoami", token=token)
    if st != 200:
        token = None
if not token:
    login = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": req["user"]}, "password": req["password"]}
    st, b = call("POST", "/_matrix/client/v3/login", login)
    if st != 200:
        print(json.dumps({"error": "admin login failed", "status": st, "body": b}))
        sys.exit(1)
    token = b["access_token"]
out = [call(m, p, b, token) for (m, p, b) in req["requests"]]
print(json.dumps({"token": token, "results": out}))
