// Where a request's time goes, from Synapse's own access log: every process writes one "Processed
// request" line per request (INFO, in /var/log/matrix-synapse/<process>.log), with the wall time and
// what Synapse accounts to the request:
//
//   Processed request: 0.141sec/0.001sec ru=(0.020sec, 0.003sec) db=(0.011sec/0.041sec/30) 58B 200 "POST /path HTTP/1.1"
//                      wall     send-out   CPU user, system          pool wait/in transactions/count
//
// (synapse/http/site.py, SynapseRequest._finished_processing). The rest of the wall time is time the
// request spent waiting on something that is not its own CPU or its own database work: a lock, the
// event persister, another process over replication, a reactor busy with other requests. For a
// ramp step, that split per endpoint tells what limits the rate (bench/README.md, "The community").
import { median, percentile, round1 } from "./figures.ts";
import { ssh, sshTarget } from "../../testbed/lib/guest.ts";

export interface RequestLine {
    /** the log file's process: homeserver, generic_worker1, media_worker1, ... */
    process: string;
    /** epoch ms of the line (the request's end) */
    at: number;
    method: string;
    path: string;
    status: number;
    wallS: number;
    cpuS: number;
    dbWaitS: number;
    dbTxnS: number;
    dbTxns: number;
}

const LINE =
    /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*? Processed request: ([\d.]+)sec\/[\d.]+sec ru=\(([\d.]+)sec, ([\d.]+)sec\) db=\(([\d.]+)sec\/([\d.]+)sec\/(\d+)\) \S+ (\d{3}) "(\S+) (\S+)/;

/** One access-log line (the guest logs in UTC, as the host), or null when it is not one. */
export function parseRequestLine(process: string, line: string): RequestLine | null {
    const m = LINE.exec(line);
    if (!m) return null;
    return {
        process,
        at: Date.parse(`${m[1].replace(" ", "T")}.${m[2]}Z`),
        wallS: Number(m[3]),
        cpuS: Number(m[4]) + Number(m[5]),
        dbWaitS: Number(m[6]),
        dbTxnS: Number(m[7]),
        dbTxns: Number(m[8]),
        status: Number(m[9]),
        method: m[10],
        path: m[11],
    };
}

/** The endpoints a community step is made of; everything else is "other". */
export function endpointOf(r: Pick<RequestLine, "method" | "path">): "send" | "sync" | "other" {
    if (r.method === "PUT" && /\/rooms\/[^/]+\/send\//.test(r.path)) return "send";
    if (r.method === "GET" && /\/client\/(v3|r0)\/sync\b/.test(r.path)) return "sync";
    return "other";
}

/** Per endpoint: how many, the wall time, and the mean of what Synapse accounts to one request (ms). */
export interface EndpointTime {
    requests: number;
    wallP50Ms: number | null;
    wallP95Ms: number | null;
    meanWallMs: number | null;
    meanCpuMs: number | null;
    meanDbWaitMs: number | null;
    meanDbTxnMs: number | null;
    meanDbTxns: number | null;
    /** mean of wall - CPU - pool wait - transactions, never below 0: waiting on something else */
    meanOtherWaitMs: number | null;
    /** the CPU this endpoint cost per second of the window, in cores */
    cpuCores: number | null;
    /** which processes served it, and how many each */
    byProcess: Record<string, number>;
}

const ms = (s: number | null) => (s === null ? null : Math.round(s * 1000));
const mean = (v: number[]) => (v.length ? v.reduce((a, x) => a + x, 0) / v.length : null);

/** The breakdown of lines in [fromMs, toMs) per endpoint. sync's wall time is a long-poll's: only its CPU and DB mean anything. */
export function breakdown(lines: RequestLine[], fromMs: number, toMs: number): Record<"send" | "sync" | "other", EndpointTime> {
    const win = lines.filter((l) => l.at >= fromMs && l.at < toMs);
    const seconds = Math.max(1, (toMs - fromMs) / 1000);
    const of = (kind: "send" | "sync" | "other"): EndpointTime => {
        const ls = win.filter((l) => endpointOf(l) === kind);
        const byProcess: Record<string, number> = {};
        for (const l of ls) byProcess[l.process] = (byProcess[l.process] ?? 0) + 1;
        const wall = ls.map((l) => l.wallS);
        return {
            requests: ls.length,
            wallP50Ms: ms(median(wall)),
            wallP95Ms: ms(percentile(wall, 95)),
            meanWallMs: ms(mean(wall)),
            meanCpuMs: ms(mean(ls.map((l) => l.cpuS))),
            meanDbWaitMs: ms(mean(ls.map((l) => l.dbWaitS))),
            meanDbTxnMs: ms(mean(ls.map((l) => l.dbTxnS))),
            meanDbTxns: round1(mean(ls.map((l) => l.dbTxns))),
            meanOtherWaitMs: ms(mean(ls.map((l) => Math.max(0, l.wallS - l.cpuS - l.dbWaitS - l.dbTxnS)))),
            cpuCores: ls.length ? Math.round((ls.reduce((a, l) => a + l.cpuS, 0) / seconds) * 100) / 100 : null,
            byProcess,
        };
    };
    return { send: of("send"), sync: of("sync"), other: of("other") };
}

/**
 * Every access-log line written at or after sinceMs in the server's Synapse logs (each process's
 * file, today's part only: the bench never runs across midnight's rotation without saying so in the
 * figures, as a window with no lines).
 */
export async function readRequestLines(ip: string, sinceMs: number): Promise<RequestLine[]> {
    // The minute before, as the log's own timestamp prefix: grep keeps only lines at or after it.
    const since = new Date(sinceMs - 60_000).toISOString().slice(0, 16).replace("T", " ");
    // Not tssh: its every line would go to the bench log.
    const r = await ssh(
        sshTarget(ip),
        `cd /var/log/matrix-synapse && for f in *.log; do awk -v since='${since}' -v f="\${f%.log}" 'substr($0, 1, 16) >= since && /Processed request/ { print f "\\t" $0 }' "$f"; done`,
        { timeoutMs: 120_000 },
    );
    if (r.code !== 0) throw new Error(`reading Synapse's access logs on ${ip}: exit ${r.code}: ${r.stderr.trim()}`);
    const out: RequestLine[] = [];
    for (const line of r.stdout.split("\n")) {
        const tab = line.indexOf("\t");
        if (tab < 0) continue;
        const parsed = parseRequestLine(line.slice(0, tab), line.slice(tab + 1));
        if (parsed && parsed.at >= sinceMs) out.push(parsed);
    }
    return out;
}

/** One line for the console: where a send's time went. */
export function describeSend(e: EndpointTime): string {
    if (!e.requests) return "send: no access-log lines";
    return `send wall p50 ${e.wallP50Ms} ms p95 ${e.wallP95Ms} ms; mean ${e.meanWallMs} = CPU ${e.meanCpuMs} + pool wait ${e.meanDbWaitMs} + transactions ${e.meanDbTxnMs} (${e.meanDbTxns}) + other wait ${e.meanOtherWaitMs}`;
}
