#!/bin/bash
# element-standin.sh VERSION...: build signed stand-ins for Element Web release tarballs.
# The real release cannot be downloaded here, so this makes one with the real layout and the real
# publishing shape, which is what the program's download/verify/unpack/configure steps depend on:
#   $B/element/www/v<V>/element-v<V>.tar.gz      unpacks to element-v<V>/ (index.html,
#   $B/element/www/v<V>/element-v<V>.tar.gz.asc  config.sample.json, version, i18n/en_EN.json,
#   $B/element/www/element-release-key.asc       bundles/<hash>/app.js), detached armored signature
#   $B/element/release-key.asc, $B/element/fingerprint (40 upper-case hex digits)
# The page loads config.json, shows `brand`, then calls
# <default_server_config."m.homeserver".base_url>/_matrix/client/versions and writes
# "ok: <versions>" or "error: <reason>" into #hs-status, so a headless browser can prove the
# deployed client reaches its homeserver (TLS, CORS, config). Existing releases are kept as they are
# (rebuilding would change the bytes a test may have pinned); --force rebuilds.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$HERE/lib.sh"

E=$B/element
GNUPGHOME=$E/gnupg
export GNUPGHOME
force=0
versions=()
for a in "$@"; do
    case $a in
        --force) force=1 ;;
        *)
            [[ $a =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "bad version '$a'" >&2; exit 2; }
            versions+=("$a")
            ;;
    esac
done
[ ${#versions[@]} -gt 0 ] || { echo "usage: $0 [--force] VERSION..." >&2; exit 2; }

# One test signing key for the life of $B: tests pin its fingerprint, as the program pins Element's.
if [ ! -s "$E/fingerprint" ]; then
    rm -rf "$GNUPGHOME"
    install -d -m 700 "$GNUPGHOME"
    gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
        --quick-gen-key 'Testbed Element Releases <releases@element.test>' ed25519 sign never
    gpg --batch --quiet --with-colons --list-keys 2>/dev/null | awk -F: '/^fpr/ {print $10; exit}' > "$E/fingerprint"
    gpg --batch --armor --export "$(cat "$E/fingerprint")" > "$E/release-key.asc"
fi
FPR=$(cat "$E/fingerprint")
mkdir -p "$E/www"
cp "$E/release-key.asc" "$E/www/element-release-key.asc"

build() {
    local v=$1 out="$E/www/v$1" work top hash
    local tarball="$out/element-v$v.tar.gz"
    if [ -s "$tarball" ] && [ -s "$tarball.asc" ] && [ "$force" = 0 ]; then
        return 0
    fi
    work=$(mktemp -d)
    top=$work/element-v$v
    mkdir -p "$top/i18n" "$top/bundles"

    cat > "$work/app.js" <<'JS'
// Stand-in for Element Web's bundle: proves config.json is served and the homeserver answers.
(async () => {
  const status = document.getElementById("hs-status");
  try {
    const res = await fetch("config.json", { cache: "no-store" });
    if (!res.ok) throw new Error(`config.json: HTTP ${res.status}`);
    const config = await res.json();
    // Element refuses to start with both of these set; so does the stand-in.
    if (config.default_server_name && config.default_server_config) {
      throw new Error("config.json sets both default_server_name and default_server_config");
    }
    document.getElementById("brand").textContent = config.brand ?? "Element";
    document.title = config.brand ?? "Element";
    const hs = config.default_server_config?.["m.homeserver"];
    if (!hs?.base_url) throw new Error('config.json lacks default_server_config["m.homeserver"].base_url');
    document.getElementById("server-name").textContent = hs.server_name ?? "";
    const base = hs.base_url.replace(/\/+$/, "");
    const versions = await fetch(`${base}/_matrix/client/versions`);
    if (!versions.ok) throw new Error(`${base}/_matrix/client/versions: HTTP ${versions.status}`);
    const body = await versions.json();
    status.textContent = `ok: ${(body.versions ?? []).join(" ")}`;
  } catch (e) {
    status.textContent = `error: ${e && e.message ? e.message : e}`;
  }
})();
JS
    # Like the real bundles/<hash>/: a content hash, so every release has its own path.
    hash=$(sha256sum "$work/app.js" | cut -c1-20)
    mkdir -p "$top/bundles/$hash"
    mv "$work/app.js" "$top/bundles/$hash/app.js"

    cat > "$top/index.html" <<HTML
<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Element</title>
  <meta name="element-version" content="$v">
</head>
<body>
  <h1 id="brand">Element</h1>
  <p>Homeserver <span id="server-name"></span>: <span id="hs-status">loading</span></p>
  <p>Testbed stand-in for Element Web v$v.</p>
  <script src="bundles/$hash/app.js"></script>
</body>
</html>
HTML
    cat > "$top/config.sample.json" <<'JSON'
{
    "default_server_config": {
        "m.homeserver": {
            "base_url": "https://matrix-client.matrix.org",
            "server_name": "matrix.org"
        },
        "m.identity_server": {
            "base_url": "https://vector.im"
        }
    },
    "disable_custom_urls": false,
    "disable_guests": false,
    "disable_login_language_selector": false,
    "disable_3pid_login": false,
    "brand": "Element",
    "integrations_ui_url": "https://scalar.vector.im/",
    "default_country_code": "GB",
    "show_labs_settings": false,
    "room_directory": {
        "servers": ["matrix.org"]
    },
    "enable_presence_by_hs_url": {
        "https://matrix.org": false,
        "https://matrix-client.matrix.org": false
    },
    "setting_defaults": {
        "RustCrypto.staged_rollout_percent": 100
    }
}
JSON
    printf '{\n    "Welcome": "Welcome",\n    "testbed_version": "%s"\n}\n' "$v" > "$top/i18n/en_EN.json"
    # The real file holds the version without the leading "v" (element-web scripts/package.sh).
    echo "$v" > "$top/version"

    mkdir -p "$out"
    # Reproducible bytes: fixed order, owner and mtime, no name/time in the gzip header.
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work" -cf - "element-v$v" \
        | gzip -n -9 > "$tarball.tmp"
    mv "$tarball.tmp" "$tarball"
    rm -f "$tarball.asc"
    gpg --batch --quiet --pinentry-mode loopback --passphrase '' --local-user "$FPR" \
        --armor --detach-sign --output "$tarball.asc" "$tarball"
    rm -rf "$work"
    echo "element stand-in v$v: $tarball (+ .asc)"
}

for v in "${versions[@]}"; do
    build "$v"
done
