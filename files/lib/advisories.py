"""The published advisories in force against the Python packages of the environment this runs in.

Installed on the server as /usr/local/lib/phillymesh-chat/advisories.py and run by
phillymesh-chat-synapse-refresh as `VENV/bin/python advisories.py FEED` (as synapse-build, so that
it reads VENV's own package metadata and reaches the network without any privilege).

FEED is a PyPI JSON API base, https://pypi.org/pypi by default. For each installed distribution it
asks FEED/<name>/<version>/json and reads that release's "vulnerabilities": PyPI's copy of the PyPA
advisory database (OSV), the source pip-audit uses by default. The format is PyPI's ("Known
vulnerabilities" in warehouse's docs/dev/api-reference/json.rst): a list of objects with "id",
"aliases", "fixed_in" (versions), "link" and "withdrawn" (an RFC 3339 time once the report was
retracted; such entries are ignored).

Standard library only: pip-audit does this and more, but it is one more environment to build and
keep on the server, and it cannot be pointed at a mirror of the feed.

Prints one tab-separated line per advisory in force: NAME VERSION ID FIXED_IN LINK, where FIXED_IN
is the comma-separated list of fixed releases ("-" when none is published yet).
Exit status: 0 when there is none, 3 when there are some, 1 when the feed could not be read.
A release the feed does not know (404: a build of our own, say) is named on stderr and skipped.
"""

import concurrent.futures
import importlib.metadata
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

FOUND = 3


def canonical(name: str) -> str:
    """A project name as PyPI keys it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> list[tuple[str, str]]:
    packages = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[canonical(name)] = dist.version
    return sorted(packages.items())


def advisories(feed: str, name: str, version: str) -> list[dict] | None:
    """The advisories in force against NAME VERSION; None when the feed does not know the release."""
    url = f"{feed.rstrip('/')}/{urllib.parse.quote(name)}/{urllib.parse.quote(version)}/json"
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "phillymesh-chat-advisories"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            release = json.load(response)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
    found = release.get("vulnerabilities")
    if not isinstance(found, list):
        raise ValueError(f"{url}: no \"vulnerabilities\" list in the answer (is {feed} a PyPI JSON API?)")
    return [a for a in found if not a.get("withdrawn")]


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: VENV/bin/python advisories.py FEED_URL", file=sys.stderr)
        return 2
    feed = sys.argv[1]
    packages = installed()
    lines = []
    # A few at a time: one request per package (about 90 for Synapse), each a short TLS exchange.
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        answers = pool.map(lambda p: (p, advisories(feed, *p)), packages)
        try:
            for (name, version), found in answers:
                if found is None:
                    print(f"{name} {version}: not known to {feed}; not checked", file=sys.stderr)
                    continue
                for a in found:
                    fixed = ",".join(a.get("fixed_in") or []) or "-"
                    lines.append("\t".join([name, version, str(a.get("id", "?")), fixed, str(a.get("link") or "-")]))
        except (OSError, ValueError) as e:
            print(f"the advisory feed {feed} could not be read: {e}", file=sys.stderr)
            return 1
    if lines:
        print("\n".join(lines))
    print(f"checked {len(packages)} packages against {feed}", file=sys.stderr)
    return FOUND if lines else 0


if __name__ == "__main__":
    sys.exit(main())
