// Where the testbed keeps things, for every TypeScript helper that drives it (the end-to-end checks,
// the drills, the benchmark, testbed.sh's small CLIs). Plain Node ES module (type stripping).
import * as path from "node:path";

/** The checkout this file is in. */
export const REPO = path.resolve(import.meta.dirname, "..", "..");
/** The testbed's state: $TESTBED_DIR, else /var/tmp/phillymesh-testbed (as testbed/lib.sh). */
export const B = process.env.TESTBED_DIR || "/var/tmp/phillymesh-testbed";
/** The ACME roots (root + intermediate) that signed every testbed certificate. */
export const ROOTS = path.join(B, "pebble", "roots.pem");
/** Every root the testbed's ACME server ever used (present once it was restarted with new roots). */
export const ROOTS_ALL = path.join(B, "pebble", "roots-all.pem");
/** The testbed's DNS server (dnsmasq on the host's bridge address). */
export const DNS_SERVER = "10.250.0.1";
/** The testbed's ssh key (the guests' authorized key; the stand-ins' deploy key). */
export const SSH_KEY = path.join(B, "id_ed25519");
/** ssh with the testbed key and no host-key bookkeeping. */
export const TSSH = path.join(REPO, "testbed", "tssh");
/** Python programs the testbed runs on a guest (guest.ts's guestPython). */
export const PY = path.join(REPO, "testbed", "py");

/** The stack config testbed.sh writes for a stack ($B/stacks/NAME.json, 0600). */
export const stackFile = (name: string, dir = B): string => path.join(dir, "stacks", `${name}.json`);
/** A stack's secrets, made once ($B/secrets/NAME.json, 0600). */
export const secretsFile = (name: string, dir = B): string => path.join(dir, "secrets", `${name}.json`);

/**
 * The environment of a child that runs the repository's tools: this process's, with
 * node_modules/.bin first on PATH (ts-node, the Node 24 binary) and TESTBED_DIR set.
 */
export function childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    return {
        ...process.env,
        PATH: `${path.join(REPO, "node_modules", ".bin")}:${process.env.PATH ?? "/usr/bin:/bin"}`,
        TESTBED_DIR: B,
        ...extra,
    };
}
