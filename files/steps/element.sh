#!/bin/bash
# Step "element": the Element Web release ELEMENT_VERSION, downloaded, checked against the pinned
# release key BEFORE it is unpacked, given our config.json, and switched live in one rename.
# Variables: ELEMENT_VERSION, ELEMENT_URL, ELEMENT_KEY_URL, ELEMENT_KEY_FINGERPRINT, ELEMENT_ROOT (the
# web root; nginx serves ELEMENT_ROOT/current). Files (install_files): the release's config.json.
# shellcheck source=files/lib/lib.sh
declare -F log >/dev/null || . "$(dirname "${BASH_SOURCE[0]}")/../lib/lib.sh"
: "${ELEMENT_ROOT:?}" "${ELEMENT_VERSION:?}" "${ELEMENT_URL:?}" "${ELEMENT_KEY_URL:?}" "${ELEMENT_KEY_FINGERPRINT:?}"

apt_install curl gnupg gpgv ca-certificates
WEB=$ELEMENT_ROOT
RELEASE=$WEB/releases/$ELEMENT_VERSION
install -d -m 755 "$WEB/releases"

if [ ! -f "$RELEASE/.verified" ]; then
    work=$(mktemp -d)
    cleanup_later "$work"
    log "downloading Element $ELEMENT_VERSION"
    curl -fsSL --retry 3 -o "$work/element.tar.gz" "$ELEMENT_URL"
    curl -fsSL --retry 3 -o "$work/element.tar.gz.asc" "$ELEMENT_URL.asc"
    curl -fsSL --retry 3 -o "$work/key.asc" "$ELEMENT_KEY_URL"

    # Trust exactly the pinned key: import what was fetched into a throwaway keyring, then verify
    # against the pinned key alone (an empty keyring if the fetched file lacks it), reading gpgv's
    # status lines: VALIDSIG names the key that signed, ERRSIG the one it could not check.
    export GNUPGHOME=$work/gnupg
    install -d -m 700 "$GNUPGHOME"
    gpg --batch --quiet --import "$work/key.asc" 2>/dev/null || die "$ELEMENT_KEY_URL is not an OpenPGP key"
    held=$(gpg --batch --with-colons --fingerprint | awk -F: '$1 == "fpr" {print $10}')
    : >"$work/pinned.gpg"
    if grep -qx "$ELEMENT_KEY_FINGERPRINT" <<<"$held"; then
        gpg --batch --export "$ELEMENT_KEY_FINGERPRINT" >"$work/pinned.gpg"
    fi
    if ! gpgv --quiet --status-fd 3 --keyring "$work/pinned.gpg" "$work/element.tar.gz.asc" "$work/element.tar.gz" \
        3>"$work/gpgv.status" 2>"$work/gpgv.log" ||
        ! awk -v fpr="$ELEMENT_KEY_FINGERPRINT" '$2 == "VALIDSIG" && ($3 == fpr || $NF == fpr) {ok = 1} END {exit !ok}' "$work/gpgv.status"; then
        cat "$work/gpgv.log" >&2
        # The key that made the signature: its fingerprint (ERRSIG's last field, from the signature's
        # issuer fingerprint), else its 64-bit key id.
        signer=$(awk '$2 == "ERRSIG" {print ($9 != "" && $9 != "-") ? $9 : $3; exit}' "$work/gpgv.status")
        if [ -n "$signer" ] && [ "${ELEMENT_KEY_FINGERPRINT%"$signer"}" = "$ELEMENT_KEY_FINGERPRINT" ]; then
            # Signed by another key: Element may have rotated its release key, or the download was replaced.
            where="the key at $ELEMENT_KEY_URL does not hold it"
            if primary=$(gpg --batch --with-colons --list-keys "$signer" 2>/dev/null | awk -F: '$1 == "fpr" {print $10; exit}') && [ -n "$primary" ]; then
                where="the key at $ELEMENT_KEY_URL holds it: $primary, $(gpg --batch --with-colons --list-keys "$signer" | awk -F: '$1 == "uid" {print $10; exit}')"
            fi
            die "Element $ELEMENT_VERSION is signed by key $signer, not by the pinned key $ELEMENT_KEY_FINGERPRINT; nothing was unpacked ($where). If Element has rotated its release key, check $signer against Element's own announcement, then set elementSigningKeyFingerprint to the new key's fingerprint (pulumi config set elementSigningKeyFingerprint <fingerprint>; and elementSigningKeyUrl if the new key is published elsewhere) and run pulumi up again"
        fi
        grep -qx "$ELEMENT_KEY_FINGERPRINT" <<<"$held" ||
            die "the key at $ELEMENT_KEY_URL is not the pinned key $ELEMENT_KEY_FINGERPRINT (it holds: $(echo "$held" | paste -sd ' ')); nothing was unpacked"
        die "the signature of $ELEMENT_URL does not verify against $ELEMENT_KEY_FINGERPRINT; nothing was unpacked"
    fi
    log "signature good (key $ELEMENT_KEY_FINGERPRINT)"

    rm -rf "$RELEASE.tmp"
    install -d "$RELEASE.tmp"
    tar -xzf "$work/element.tar.gz" -C "$RELEASE.tmp" --strip-components=1 --no-same-owner
    [ -f "$RELEASE.tmp/index.html" ] || die "the release has no index.html: not an Element Web tarball"
    chmod 755 "$RELEASE.tmp"
    touch "$RELEASE.tmp/.verified"
    rm -rf "$RELEASE"
    mv "$RELEASE.tmp" "$RELEASE"
fi

refuse_symlink "$RELEASE"
chmod go-w "$RELEASE"
install_files
previous=$(readlink "$WEB/current" 2>/dev/null || true)
switch_symlink "$RELEASE" "$WEB/current"
[ "$previous" = "$RELEASE" ] || log "Element ${previous:+${previous##*/} -> }$ELEMENT_VERSION is live"

for old in "$WEB"/releases/*; do
    [ "$old" = "$RELEASE" ] || [ "$old" = "$previous" ] || rm -rf "$old"
done
log "Element $ELEMENT_VERSION ready"
