// The steps drills 1-10 repeat on their guest: a new machine in place of the old one, a config file
// written, and "deploy, wait until it answers, note whether it does".
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import * as L from "./lib.ts";

/** A stack config file as testbed.sh writes it (and the drills copy and edit it). */
export interface StackFile {
    config: Record<string, unknown>;
    secrets?: Record<string, unknown>;
}

/** Writes a stack config (it holds the secrets: 0600); returns the path. */
export function writeConfig(file: string, sf: object): string {
    writeFileSync(file, JSON.stringify(sf, null, 2), { mode: 0o600 });
    return file;
}

/** The config the stack is deployed with from now on (later drills deploy and read it). */
export function recordCurrent(sf: object | string): void {
    if (typeof sf === "string") writeFileSync(L.CURRENT_CONFIG, readFileSync(sf), { mode: 0o600 });
    else writeConfig(L.CURRENT_CONFIG, sf);
}

/**
 * The guest replaced by a new machine: destroyed (its data disk kept, or wiped and the stack's state
 * forgotten, as for a machine that never ran the program), booted again, the HTTP connections and
 * the admin session dropped. Returns the new machine-id.
 */
export async function newMachine(opts: { keepData: boolean }): Promise<string> {
    await L.destroyGuest(!opts.keepData);
    if (!opts.keepData) await L.forgetState();
    await L.bootGuest();
    await L.resetHttp();
    L.forgetAdmin();
    return (await L.tsshOk("cat /etc/machine-id")).trim();
}

export interface Up extends L.RunResult {
    /** The up exited 0 and then Synapse answered on 443 and 8448 within the wait. */
    answers: boolean;
    /** Why it does not answer, when the up succeeded (waitFor's error). */
    waitError?: string;
}

/**
 * `deploy.ts up` of the guest with a config file; when it succeeds, wait up to waitMs until Synapse
 * answers. It never throws for a failed up or a silent server: the drill's check judges code and
 * answers (use mustConverge where converging is a step, not what is proved).
 */
export async function upAndWait(configFile: string, label: string, opts: { what: string; waitMs?: number; extra?: string[] }): Promise<Up> {
    const r = await L.deployUp(configFile, label, opts.extra ?? []);
    if (r.code !== 0) return { ...r, answers: false };
    try {
        await L.waitFor(opts.what, opts.waitMs ?? 60_000, L.healthy);
        return { ...r, answers: true };
    } catch (e) {
        return { ...r, answers: false, waitError: String(e) };
    }
}

/** upAndWait that must succeed and answer: throws with the output's tail or the wait's error. */
export async function mustConverge(configFile: string, label: string, what: string, waitMs = 60_000): Promise<Up> {
    const r = await upAndWait(configFile, label, { what, waitMs });
    assert.equal(r.code, 0, `deploy.ts up (${label}) failed:\n${L.tail(r.out)}`);
    if (!r.answers) throw new Error(r.waitError);
    return r;
}
