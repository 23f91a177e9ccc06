// The Synapse admin API of the server the drills act on now (re-exported by lib.ts): the admin's
// session, made once per server, and requests to the admin API, which listens on the server's
// localhost:8008 only (curl over ssh, testbed/lib/matrix.ts).
import type * as M from "../../testbed/lib/matrix.ts";
import { adminApi as adminApiOverSsh, createRegistrationToken } from "../../testbed/lib/matrix.ts";
import { sshTarget } from "../../testbed/lib/guest.ts";
import { CHILD_ENV, IP, NAME, SSH_USER, login, secrets, type Session } from "./lib.ts";

/** The admin's session on each server (by name), made once: logins are rate-limited. */
const adminSessions = new Map<string, Session>();
export async function adminLogin(): Promise<Session> {
    let s = adminSessions.get(NAME);
    if (!s) {
        s = await login("admin", secrets().adminPassword);
        adminSessions.set(NAME, s);
    }
    return s;
}
export function forgetAdmin(): void {
    adminSessions.delete(NAME);
}

/** The access token goes in on stdin (curl -H @-), never in a process list. */
export async function adminApi(method: string, path: string, body?: unknown, retried = false): Promise<M.AdminResult> {
    const s = await adminLogin();
    const r = await adminApiOverSsh(sshTarget(IP, SSH_USER), s.token, method, path, body, { env: CHILD_ENV });
    if (r.status === 401 && r.json?.errcode === "M_UNKNOWN_TOKEN" && !retried) {
        // The database was replaced under us (a fresh server, a restore): log in again.
        forgetAdmin();
        return adminApi(method, path, body, true);
    }
    return r;
}

export async function newRegistrationToken(usesAllowed: number): Promise<string> {
    return createRegistrationToken((method, path, body) => adminApi(method, path, body), usesAllowed);
}
