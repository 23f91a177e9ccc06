// node portscan.ts HOST FIRST LAST [PARALLEL] [TIMEOUT_MS]: a TCP connect scan of one address,
// bounded (PARALLEL connections at once, each given up after TIMEOUT_MS). Prints JSON:
// {"host", "open": [...], "filtered": [...], "closed": N, "errors": {...}, "ms"}.
// Run by drill 3 inside its own network namespace on the testbed bridge (ip netns exec).
import net from "node:net";

const [host, first = "1", last = "10000", parallel = "400", timeoutMs = "2000"] = process.argv.slice(2);
if (!host || net.isIP(host) === 0) {
    console.error("usage: node portscan.ts IP FIRST LAST [PARALLEL] [TIMEOUT_MS]");
    process.exit(64);
}
const t0 = Date.now();
const open: number[] = [];
const filtered: number[] = [];
const errors: Record<string, number[]> = {};
let closed = 0;

function probe(port: number): Promise<void> {
    return new Promise((resolve) => {
        const s = net.connect({ host, port });
        const done = (kind: "open" | "filtered" | "error", code?: string): void => {
            s.removeAllListeners();
            s.destroy();
            if (kind === "open") open.push(port);
            else if (kind === "filtered") filtered.push(port);
            else if (code === "ECONNREFUSED") closed++;
            else (errors[code ?? "unknown"] ??= []).push(port);
            resolve();
        };
        s.setTimeout(Number(timeoutMs), () => done("filtered"));
        s.once("connect", () => done("open"));
        s.once("error", (e: NodeJS.ErrnoException) => done("error", e.code ?? String(e)));
    });
}

let next = Number(first);
const end = Number(last);
async function worker(): Promise<void> {
    while (next <= end) await probe(next++);
}
await Promise.all(Array.from({ length: Number(parallel) }, worker));
open.sort((a, b) => a - b);
filtered.sort((a, b) => a - b);
console.log(JSON.stringify({ host, first: Number(first), last: end, open, filtered, closed, errors, ms: Date.now() - t0 }));
