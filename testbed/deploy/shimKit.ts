// What the stand-ins (commandShim.ts, digitaloceanShim.ts, cloudflareShim.ts) share: a lock around
// their registry files on disk, and the swap of a provider package in the module cache.
//
// withDirLock runs inside the dynamic providers: Pulumi serializes it with the provider's code into
// the state, so it captures nothing and requires what it needs itself.

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

/* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */
