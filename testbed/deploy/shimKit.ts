// What the stand-ins (commandShim.ts, digitalocean/, cloudflare/) share: a lock around
// their registry files on disk, the runner of the testbed's scripts, and the swap of a provider
// package in the module cache.
//
// withDirLock and testbedScript (the one way a stand-in runs a testbed script) run inside the dynamic
// providers: Pulumi serializes them with the provider's code into the state, so they capture nothing
// and require what they need themselves.

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */

/**
 * Runs fn while holding the lock directory `lock` (mkdir is atomic; a lock whose owner process died
 * is taken over). Waits up to 10 minutes; `what` names the locked thing in the time-out error.
 */
export async function withDirLock<T>(lock: string, what: string, fn: () => Promise<T> | T): Promise<T> {
    const fs = require("fs");
    const path = require("path");
    fs.mkdirSync(path.dirname(lock), { recursive: true });
    const deadline = Date.now() + 600000;
    for (;;) {
        try {
            fs.mkdirSync(lock);
            fs.writeFileSync(path.join(lock, "pid"), String(process.pid));
            break;
        } catch (e: any) {
            if (e.code !== "EEXIST") throw e;
            let owner = NaN;
            try {
                owner = Number(fs.readFileSync(path.join(lock, "pid"), "utf8"));
            } catch {
                // being created right now
            }
            let alive = true;
            if (owner > 0) {
                try {
                    process.kill(owner, 0);
                } catch (k: any) {
                    alive = k.code === "EPERM";
                }
            }
            if (!alive) {
                fs.rmSync(lock, { recursive: true, force: true });
                continue;
            }
            if (Date.now() > deadline) throw new Error(`${what} is locked by pid ${owner} (${lock})`);
            await new Promise((r) => setTimeout(r, 50));
        }
    }
    try {
        return await fn();
    } finally {
        fs.rmSync(lock, { recursive: true, force: true });
    }
}

/**
 * Makes `require(pkg)`, resolved from `fromDir` (the program's directory), return `exports`. Call
 * before the program's modules are loaded. Returns the resolved path.
 */
export function installModule(pkg: string, fromDir: string, exports: unknown): string {
    const resolved = require.resolve(pkg, { paths: [fromDir] });
    const Module = require("module") as { new (id: string): NodeJS.Module };
    const m = new Module(resolved);
    m.filename = resolved;
    m.loaded = true;
    m.exports = exports;
    require.cache[resolved] = m;
    return resolved;
}

/** What the engine hands a provider for a value that is not known yet (a preview, a pending output). */
const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/** Whether v is, or holds, a value not known yet. */
export function isUnknown(v: unknown): boolean {
    if (v === UNKNOWN) return true;
    if (Array.isArray(v)) return v.some(isUnknown);
    if (v && typeof v === "object") return Object.values(v as object).some(isUnknown);
    return false;
}

/** Outputs as the engine can store them (undefined dropped: a Struct cannot hold it). */
export function plain(v: unknown): any {
    return JSON.parse(JSON.stringify(v ?? {}));
}

/** Order-independent JSON (object keys sorted; undefined and null dropped), for diffs. */
export function canon(v: unknown): string {
    if (Array.isArray(v)) return `[${v.map(canon).join(",")}]`;
    if (v && typeof v === "object") {
        return `{${Object.keys(v as object)
            .filter((k) => (v as any)[k] !== undefined && (v as any)[k] !== null)
            .sort()
            .map((k) => `${JSON.stringify(k)}:${canon((v as any)[k])}`)
            .join(",")}}`;
    }
    return JSON.stringify(v ?? null);
}

/**
 * A stand-in package whose members beyond `members` throw a clear error naming the stand-in's file,
 * so the program cannot quietly use a part of the real provider that nothing here mirrors.
 */
export function strictModule(name: string, file: string, members: Record<string, unknown>): Record<string, unknown> {
    const passThrough = new Set(["__esModule", "default", "then", "toJSON", "inspect", "constructor", "prototype", "nodeType", "asymmetricMatch", "$$typeof"]);
    return new Proxy(members, {
        get(target, prop) {
            if (prop === "__esModule") return true;
            if (typeof prop === "symbol" || passThrough.has(prop)) return (target as Record<string | symbol, unknown>)[prop];
            if (prop in target) return target[prop];
            throw new Error(`${name}.${String(prop)} is not in the testbed stand-in (${file}); it provides ${Object.keys(target).join(", ")}`);
        },
    });
}

/**
 * Runs the repository's bash script REL (e.g. testbed/cloud/do-host.sh) with ARGS and STDIN, the one
 * way the stand-ins reach the testbed. The repository is $TESTBED_REPO, else the resource's __repo
 * input (`who` names the stand-in when neither is there). Resolves with stdout; rejects with the last
 * lines of stderr and the exit code.
 */
export function testbedScript(props: any, who: string, rel: string, args: string[], stdin = ""): Promise<string> {
    const cp = require("child_process");
    const path = require("path");
    return new Promise((resolve, reject) => {
        const repo = process.env.TESTBED_REPO || props?.__repo;
        if (!repo) throw new Error(`${who} does not know the repository (set TESTBED_REPO)`);
        const p = cp.spawn("bash", [path.join(repo, rel), ...args], { stdio: ["pipe", "pipe", "pipe"] });
        let out = "";
        let err = "";
        p.stdout.on("data", (d: Buffer) => (out += d.toString()));
        p.stderr.on("data", (d: Buffer) => (err += d.toString()));
        p.on("error", (e: Error) => reject(e));
        p.on("close", (code: number | null) => {
            if (code === 0) resolve(out);
            else reject(new Error(`${err.trim().split("\n").slice(-15).join("\n")}\n(${rel} ${args[0]}: exit ${code})`));
        });
        p.stdin.on("error", () => undefined);
        p.stdin.end(stdin);
    });
}

/* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */
