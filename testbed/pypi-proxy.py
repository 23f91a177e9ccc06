"""Caching PyPI proxy for the testbed guests (run by host.sh inside $B/pypi/venv).

proxpi serves a PEP 503/691 simple index at /index/ and keeps every file it hands out in
PROXPI_CACHE_DIR, fetching it from the real index on first use. This wrapper:
  - also answers at /simple/, the path pip users expect;
  - serves with threads (pip downloads in parallel), over HTTP and, given a certificate, HTTPS too
    (pip ignores a plain-http index unless told --trusted-host; the HTTPS one behaves like pypi.org
    for a guest that trusts the testbed CA);
  - stands in for PyPI's JSON API at /pypi/<name>/<version>/json, which the guests' advisory
    audit reads (files/lib/advisories.py) and which this machine cannot reach (advisory_feed below);
  - serialises requests for the same file. proxpi 1.3.1 races when two clients ask for one uncached
    file at once (the second joins the download thread before it is started, gets
    "cannot join thread before it is started" and is redirected to files.pythonhosted.org, which
    the guests cannot reach). Two guests provisioned side by side hit that at once.

Usage: python pypi-proxy.py HOST PORT [TLS_PORT CERT KEY]
"""

import collections
import json
import os
import re
import ssl
import sys
import threading

from werkzeug.serving import make_server

from proxpi import _cache
from proxpi.server import app

_get_file = _cache._FileCache.get
_file_locks = collections.defaultdict(threading.RLock)
_file_locks_guard = threading.Lock()


def _get_file_serialised(self, url):
    # RLock: proxpi's get() calls itself once the download has started.
    with _file_locks_guard:
        lock = _file_locks[self._get_key(url)]
    with lock:
        return _get_file(self, url)


_cache._FileCache.get = _get_file_serialised


# The advisories the drills plant: {"<canonical name>": {"<version>": [advisory, ...]}}, read on
# every request (a drill writes the file; nothing restarts).
ADVISORIES = os.environ.get("PYPI_ADVISORIES", "")
_RELEASE_JSON = re.compile(r"^/pypi/([^/]+)/([^/]+)/json$")


def advisory_feed(environ, start_response, name, version):
    """PyPI's release JSON (warehouse docs/dev/api-reference/json.rst), reduced to what an advisory
    audit reads: "info" (name, version) and "vulnerabilities", objects with id, aliases, summary,
    details, fixed_in, link, source and withdrawn (null, or the time the report was retracted).

    Enforced as PyPI does: the release must be named by its canonical (PEP 503) project name
    (PyPI redirects the others; this answers 404, which is stricter); only GET.
    Not covered: the real advisory database (this serves the planted advisories and nothing else,
    so a verdict never depends on the day's advisories), releases that do not exist (PyPI answers
    404; this answers every well-formed name and version), the other fields of the answer.
    """
    def answer(status, body):
        data = json.dumps(body).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    if environ.get("REQUEST_METHOD") != "GET":
        return answer("405 Method Not Allowed", {"message": "Method Not Allowed"})
    if name != re.sub(r"[-_.]+", "-", name).lower():
        return answer("404 Not Found", {"message": "Not Found"})
    planted = {}
    if ADVISORIES and os.path.exists(ADVISORIES):
        with open(ADVISORIES) as f:
            planted = json.load(f)
    found = planted.get(name, {}).get(version, [])
    return answer("200 OK", {"info": {"name": name, "version": version}, "urls": [], "vulnerabilities": found})


def simple_alias(environ, start_response):
    release = _RELEASE_JSON.match(environ.get("PATH_INFO", ""))
    if release:
        return advisory_feed(environ, start_response, *release.groups())
    # File links in proxpi's pages are relative, so rewriting the prefix is all it takes.
    path = environ.get("PATH_INFO", "")
    if path == "/simple" or path.startswith("/simple/"):
        environ["PATH_INFO"] = "/index" + path[len("/simple"):]
    return app(environ, start_response)


if __name__ == "__main__":
    host, port = sys.argv[1], int(sys.argv[2])
    servers = [make_server(host, port, simple_alias, threaded=True)]
    if len(sys.argv) == 6:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[4], sys.argv[5])
        servers.append(make_server(host, int(sys.argv[3]), simple_alias, threaded=True, ssl_context=context))
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()
