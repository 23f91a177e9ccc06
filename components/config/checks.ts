// The value checks. Each returns what was expected (an error text) or undefined. They are
// deliberately strict: a value that passes contains no shell or YAML metacharacter unless the check
// says otherwise, so nothing a user typed is ever interpreted on a server.
import * as net from "net";

const DNS_LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
const DOMAIN_RE = new RegExp(`^(?:${DNS_LABEL}\\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$`);

export type Check = (v: string) => string | undefined;

export function checkDomain(v: string): string | undefined {
    if (v.length > 200 || !DOMAIN_RE.test(v)) {
        return "a lower-case DNS name such as phillymesh.net (letters, digits, '-' and dots; no scheme, no trailing dot)";
    }
    return undefined;
}

export function checkVersion(v: string): string | undefined {
    return /^\d{1,4}\.\d{1,4}\.\d{1,4}(?:rc\d{1,3})?$/.test(v) ? undefined : "an exact release such as 1.163.2 (digits and dots only)";
}

export function checkEmail(v: string): string | undefined {
    return /^[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}$/.test(v) ? undefined : "an e-mail address such as admin@example.org";
}

export function checkCidr(v: string): string | undefined {
    const m = /^([0-9a-fA-F.:]+)\/(\d{1,3})$/.exec(v);
    const family = m ? net.isIP(m[1]) : 0;
    if (!m || family === 0 || Number(m[2]) > (family === 4 ? 32 : 128)) {
        return "CIDRs such as 203.0.113.0/24 or 2001:db8::/32";
    }
    return undefined;
}

export function checkHost(v: string): string | undefined {
    if (net.isIP(v) !== 0) return undefined;
    return checkDomain(v) === undefined || /^[a-z0-9-]{1,63}$/.test(v) ? undefined : "an IP address or host name";
}

export function checkUnixUser(v: string): string | undefined {
    return /^[a-z_][a-z0-9_-]{0,31}$/.test(v) ? undefined : "a Unix user name";
}

export function checkUrl(v: string, allowPlaceholder = false): string | undefined {
    const expected = "an http(s) URL without spaces, quotes or shell characters";
    if (!/^https?:\/\/[A-Za-z0-9._~:/?#\[\]@!&'()*+,;=%{}-]+$/.test(v) || /['`$\\]/.test(v)) return expected;
    try {
        new URL(allowPlaceholder ? v.split("{version}").join("0") : v);
    } catch {
        return expected;
    }
    if (!allowPlaceholder && v.includes("{")) return expected;
    return undefined;
}

/**
 * The package index Synapse is installed from: https only. What pip downloads becomes the code the
 * homeserver runs, so an index over plain HTTP (which pip would take only with --trusted-host) lets
 * anyone on the path between the server and the index swap it.
 */
export function checkPipIndexUrl(v: string): string | undefined {
    if (!/^https:\/\//.test(v)) {
        return "an https:// URL such as https://pypi.org/simple/: a package index over plain HTTP lets anyone on the path between the server and the index swap Synapse's code";
    }
    return checkUrl(v);
}

export function checkAdvisoryFeedUrl(v: string): string | undefined {
    if (!/^https:\/\//.test(v)) {
        return "an https:// PyPI JSON API such as https://pypi.org/pypi, or empty to turn the daily advisory audit off: over plain HTTP anyone on the path could hide an advisory";
    }
    return checkUrl(v);
}

export function checkLocalpart(v: string): string | undefined {
    return /^[a-z0-9._=-]{1,64}$/.test(v) ? undefined : "a Matrix user name: lower-case letters, digits and . _ = - only";
}

export function checkSlug(v: string): string | undefined {
    return /^[a-z0-9][a-z0-9-]{0,62}$/.test(v) ? undefined : "a slug of lower-case letters, digits and '-'";
}

export function checkFingerprint(v: string): string | undefined {
    return /^[0-9A-F]{40}$/.test(v) ? undefined : "a 40-digit upper-case hexadecimal OpenPGP fingerprint without spaces";
}

export function checkAbsolutePath(v: string): string | undefined {
    return /^\/[A-Za-z0-9._/-]{1,200}$/.test(v) && !v.includes("..") && v !== "/" ? undefined : "an absolute path of letters, digits, '.', '_', '-' and '/'";
}

export function checkSshPublicKey(v: string): string | undefined {
    return /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/=]{40,}( [^\n]*)?$/.test(v.trim())
        ? undefined
        : "one OpenSSH public key line, e.g. 'ssh-ed25519 AAAA... you@laptop'";
}

/** A key already in the DigitalOcean account: its MD5 fingerprint (as the control panel shows it) or its numeric id. */
export function checkDoSshKey(v: string): string | undefined {
    return /^(?:[0-9a-f]{2}:){15}[0-9a-f]{2}$/.test(v) || /^\d{1,12}$/.test(v)
        ? undefined
        : "the fingerprint (aa:bb:...:ff, 16 pairs, as DigitalOcean's Settings > Security shows it) or the numeric id of an SSH key already in the DigitalOcean account";
}

/**
 * Whether a PEM/OpenSSH private key is protected by a passphrase. @pulumi/command parses the key
 * itself and would need privateKeyPassword, which this program never sets: an encrypted key must
 * fail at preview, not on the first SSH dial. Covers the OpenSSH format (ciphername in the binary
 * header), PKCS#8 (BEGIN ENCRYPTED PRIVATE KEY) and the traditional PEM header (Proc-Type 4,ENCRYPTED).
 */
function isEncryptedPrivateKey(pem: string): boolean {
    if (/-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(pem) || /Proc-Type:\s*4,ENCRYPTED/.test(pem)) return true;
    const m = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]+?)-----END OPENSSH PRIVATE KEY-----/.exec(pem);
    if (!m) return false;
    const blob = Buffer.from(m[1].replace(/\s+/g, ""), "base64");
    const magic = "openssh-key-v1\0";
    if (blob.length < magic.length + 4 || blob.subarray(0, magic.length).toString("latin1") !== magic) return false;
    const len = blob.readUInt32BE(magic.length);
    const cipher = blob.subarray(magic.length + 4, magic.length + 4 + len).toString("latin1");
    return cipher !== "none";
}

export function checkSshPrivateKey(v: string): string | undefined {
    if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+-----END [A-Z ]*PRIVATE KEY-----/.test(v)) {
        return "a PEM private key (-----BEGIN OPENSSH PRIVATE KEY----- ...); set it with `pulumi config set --secret sshPrivateKey < deploy_key`";
    }
    if (isEncryptedPrivateKey(v)) {
        return (
            "a private key without a passphrase: this one is encrypted, and Pulumi's SSH client cannot ask for the passphrase. " +
            "Make a dedicated deploy key: `ssh-keygen -t ed25519 -N '' -C phillymesh-chat-deploy -f deploy_key` (README: SSH keys)"
        );
    }
    return undefined;
}
