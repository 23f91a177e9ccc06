"""Caching PyPI proxy for the testbed guests (run by host.sh inside $B/pypi/venv).

proxpi serves a PEP 503/691 simple index at /index/ and keeps every file it hands out in
PROXPI_CACHE_DIR, fetching it from the real index on first use. This wrapper:
  - also answers at /simple/, the path pip users expect;
  - serves with threads (pip downloads in parallel), over HTTP and, given a certificate, HTTPS too
    (pip ignores a plain-http index unless told --trusted-host; the HTTPS one behaves like pypi.org
    for a guest that trusts the testbed CA);
  - serialises requests for the same file. proxpi 1.3.1 races when two clients ask for one uncached
    file at once (the second joins the download thread before it is started, gets
    "cannot join thread before it is started" and is redirected to files.pythonhosted.org, which
    the guests cannot reach). Two guests provisioned side by side hit that at once.

Usage: python pypi-proxy.py HOST PORT [TLS_PORT CERT KEY]
"""

import collections
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


def simple_alias(environ, start_response):
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
