// Runs a child process and always comes back with an answer, never with an unhandled error event:
// for the benchmark (bench/lib/testbed.ts) and, later, the end-to-end checks and the drills.
//
//   const r = await runProcess("bash", ["testbed/boot.sh", "bench1", "10.250.0.50"], { timeoutMs: 600_000 });
//   if (r.code !== 0) throw runFailure(r);          // or: await mustRunProcess(...)
//
// - stdin: `input` is written and closed; a child that exits without reading it (EPIPE) is not an
//   error here (`stdinError` says so). Without `input`, stdin is /dev/null.
// - A command that cannot start (ENOENT, EACCES, a missing cwd) rejects with a RunError naming it.
// - Any exit resolves: `code` is the exit status, or 128 + the signal's number when a signal ended
//   it (as a shell reports it), with `signal` set.
// - `timeoutMs`: SIGTERM to the child's whole process group, SIGKILL `killGraceMs` later; `signal`
//   (an AbortSignal) does the same when it aborts (`aborted` is then set).
// - stdout and stderr are captured up to `maxOutputBytes` each (the last bytes are kept); `tail`
//   holds the last lines of both, in the order they came, for error messages.
//
// The child runs in its own process group (its own session, so without a controlling terminal):
// that is what lets a timeout kill its children too. While children run, SIGINT, SIGTERM and SIGHUP
// sent to this process are passed on to their groups, and children still running when this process
// exits get SIGTERM. Plain Node ES module with erasable types only (Node runs it by stripping types).
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import { StringDecoder } from "node:string_decoder";

export interface RunOptions {
    /** Written to the child's stdin, which is then closed. Without it, stdin is /dev/null. */
    input?: string | Buffer;
    cwd?: string;
    /** The child's whole environment (default: this process's). */
    env?: NodeJS.ProcessEnv;
    /** Kill the process group (SIGTERM, then SIGKILL after killGraceMs) after this long. */
    timeoutMs?: number;
    /** Default 5000. */
    killGraceMs?: number;
    /** Aborting it ends the child as a timeout does (SIGTERM to its group, SIGKILL killGraceMs later). */
    signal?: AbortSignal;
    /** Per stream; beyond it the oldest output is dropped (default 16 MiB). */
    maxOutputBytes?: number;
    /** Lines of output (both streams) kept for error messages (default 40). */
    tailLines?: number;
    /** Every complete line of output as it comes (a last line without a newline at the end). */
    onLine?: (line: string, stream: "stdout" | "stderr") => void;
    /** Every chunk of output as it comes, whole (onLine cuts very long lines). */
    onChunk?: (chunk: Buffer, stream: "stdout" | "stderr") => void;
    /** false: stay in this process's process group (a timeout then kills only the child). Default true. */
    processGroup?: boolean;
}

export interface RunResult {
    /** The command line, quoted for a shell, for messages. */
    command: string;
    /** Exit status; 128 + signal number when a signal ended the process. */
    code: number;
    signal: NodeJS.Signals | null;
    timedOut: boolean;
    /** Set when opts.signal aborted the run. */
    aborted?: true;
    stdout: string;
    stderr: string;
    /** Bytes dropped from the start of stdout/stderr by maxOutputBytes. */
    stdoutDroppedBytes: number;
    stderrDroppedBytes: number;
    /** The last lines of output, both streams in arrival order. */
    tail: string[];
    /** Set when writing `input` failed, e.g. "EPIPE" when the child exited without reading it all. */
    stdinError?: string;
    seconds: number;
}

export class RunError extends Error {
    /** The finished run, when it ran at all. */
    result: RunResult | undefined;
    /** The system error code when it could not start (ENOENT, EACCES, ...). */
    code: string | undefined;
    constructor(message: string, result?: RunResult, code?: string) {
        super(message);
        this.name = "RunError";
        this.result = result;
        this.code = code;
    }
}

const DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024;
const MAX_TAIL_LINE = 1000;
// Longer lines reach onLine cut to this length (the captured stdout/stderr keep them whole).
const MAX_LINE = 64 * 1024;
// After the child exits, how long its stdout/stderr may stay quiet before we stop waiting for them
// to close: a daemon it started can hold them open for ever.
const CLOSE_GRACE_MS = 2000;

/**
 * `cmd args...` quoted for a POSIX shell, for messages; an argument longer than 200 characters (a
 * base64 program, say) is shortened to its start and its length.
 */
export function commandLine(cmd: string, args: readonly string[]): string {
    const q = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
    const short = (s: string) => (s.length > 200 ? `${q(s.slice(0, 60))}...[${s.length} characters]` : q(s));
    return [cmd, ...args].map(short).join(" ");
}

/** "exited 1", "killed by SIGKILL", "timed out: killed with SIGTERM", "cancelled: killed with SIGTERM". */
export function outcome(r: RunResult): string {
    if (r.aborted) return `cancelled: killed with SIGTERM${r.signal === "SIGKILL" ? ", then SIGKILL" : ""}`;
    if (r.timedOut) return `timed out: killed with SIGTERM${r.signal === "SIGKILL" ? ", then SIGKILL" : ""}`;
    if (r.signal) return `killed by ${r.signal}`;
    return `exited ${r.code}`;
}

/** An Error for a run that did not succeed: the command, how it ended, and the tail of its output. */
export function runFailure(r: RunResult, lines = 30): RunError {
    const tail = r.tail.slice(-lines);
    const out = tail.length ? `; last ${tail.length} line(s) of output:\n${tail.map((l) => `  ${l}`).join("\n")}` : "; no output";
    const stdin = r.stdinError ? ` (its stdin: ${r.stdinError})` : "";
    return new RunError(`\`${r.command}\` ${outcome(r)} after ${round(r.seconds)} s${stdin}${out}`, r);
}

/** runProcess, then a RunError (runFailure) unless it exited 0. */
export async function mustRunProcess(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const r = await runProcess(cmd, args, opts);
    if (r.code !== 0) throw runFailure(r);
    return r;
}

/**
 * Runs `cmd` with `args` (no shell). Resolves whenever the process ran, whatever its exit; rejects
 * (RunError) only when it could not be started.
 */
export function runProcess(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const command = commandLine(cmd, args);
    const maxBytes = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
    const tailMax = opts.tailLines ?? 40;
    const group = opts.processGroup ?? true;
    const t0 = performance.now();
    return new Promise((resolve, reject) => {
        const child = spawn(cmd, [...args], {
            cwd: opts.cwd,
            env: opts.env ?? process.env,
            stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
            detached: group,
        });
        let settled = false;
        let timedOut = false;
        let aborted = false;
        let stdinError: string | undefined;
        let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
        let killTimer: NodeJS.Timeout | undefined;
        let graceTimer: NodeJS.Timeout | undefined;
        let closeTimer: NodeJS.Timeout | undefined;
        const tail: string[] = [];
        const streams = {
            stdout: new Capture("stdout", maxBytes, tail, tailMax, opts.onLine),
            stderr: new Capture("stderr", maxBytes, tail, tailMax, opts.onLine),
        };

        function onAbort(): void {
            if (exit || timedOut || aborted) return;
            aborted = true;
            kill("SIGTERM");
            graceTimer = setTimeout(() => kill("SIGKILL"), opts.killGraceMs ?? 5000);
        }
        const kill = (sig: NodeJS.Signals) => {
            if (child.pid === undefined) return;
            try {
                if (group) process.kill(-child.pid, sig);
                else child.kill(sig);
            } catch {
                /* already gone */
            }
        };

        const finish = () => {
            if (settled) return;
            settled = true;
            clearTimeout(killTimer);
            clearTimeout(graceTimer);
            clearTimeout(closeTimer);
            opts.signal?.removeEventListener("abort", onAbort);
            if (child.pid !== undefined) untrack(child.pid);
            child.stdout?.destroy();
            child.stderr?.destroy();
            const e = exit ?? { code: null, signal: null };
            const sigNum = e.signal ? (os.constants.signals[e.signal] ?? 0) : 0;
            resolve({
                command,
                code: e.code ?? (e.signal ? 128 + sigNum : -1),
                signal: e.signal,
                timedOut,
                ...(aborted ? { aborted: true as const } : {}),
                stdout: streams.stdout.text(),
                stderr: streams.stderr.text(),
                stdoutDroppedBytes: streams.stdout.dropped,
                stderrDroppedBytes: streams.stderr.dropped,
                tail,
                ...(stdinError ? { stdinError } : {}),
                seconds: (performance.now() - t0) / 1000,
            });
        };

        child.on("error", (err: NodeJS.ErrnoException) => {
            if (child.pid !== undefined) return; // a failed kill(); the process itself ran
            if (settled) return;
            settled = true;
            reject(startError(cmd, command, opts.cwd, err));
        });
        if (child.pid === undefined) return; // spawn failed; "error" follows

        track(child.pid, group, child);
        // After the exit, stop waiting for the pipes once they have been quiet for CLOSE_GRACE_MS
        // (setImmediate: output already in the pipes is read before giving up on them).
        const armCloseTimer = () => {
            clearTimeout(closeTimer);
            closeTimer = setTimeout(
                () =>
                    setImmediate(() => {
                        streams.stdout.flush();
                        streams.stderr.flush();
                        finish();
                    }),
                CLOSE_GRACE_MS,
            );
        };
        child.stdout?.on("data", (b: Buffer) => {
            streams.stdout.push(b);
            opts.onChunk?.(b, "stdout");
            if (exit) armCloseTimer();
        });
        child.stderr?.on("data", (b: Buffer) => {
            streams.stderr.push(b);
            opts.onChunk?.(b, "stderr");
            if (exit) armCloseTimer();
        });
        child.stdout?.on("end", () => streams.stdout.flush());
        child.stderr?.on("end", () => streams.stderr.flush());
        child.on("exit", (code, signal) => {
            exit = { code, signal };
            armCloseTimer();
        });
        child.on("close", () => {
            streams.stdout.flush();
            streams.stderr.flush();
            finish();
        });

        if (opts.input !== undefined && child.stdin) {
            // EPIPE (the child exited without reading everything) and friends: noted, never thrown.
            child.stdin.on("error", (err: NodeJS.ErrnoException) => {
                stdinError ??= err.code === "EPIPE" ? "EPIPE: the command exited before reading all of its input" : `${err.code ?? "error"}: ${err.message}`;
            });
            child.stdin.end(opts.input);
        }

        if (opts.timeoutMs !== undefined && opts.timeoutMs > 0) {
            killTimer = setTimeout(() => {
                if (exit || aborted) return;
                timedOut = true;
                kill("SIGTERM");
                graceTimer = setTimeout(() => kill("SIGKILL"), opts.killGraceMs ?? 5000);
            }, opts.timeoutMs);
        }
        if (opts.signal) {
            if (opts.signal.aborted) onAbort();
            else opts.signal.addEventListener("abort", onAbort, { once: true });
        }
    });
}

function startError(cmd: string, command: string, cwd: string | undefined, err: NodeJS.ErrnoException): RunError {
    let why = err.message;
    if (cwd !== undefined && !fs.existsSync(cwd)) why = `its working directory ${cwd} does not exist`;
    else if (err.code === "ENOENT") why = `${cmd} not found${cmd.includes("/") ? "" : " on PATH"}`;
    else if (err.code === "EACCES") why = `${cmd} is not executable (permission denied)`;
    return new RunError(`cannot run \`${command}\`: ${why} (${err.code ?? "error"})`, undefined, err.code);
}

const round = (s: number) => Math.round(s * 10) / 10;

/** One output stream: the last maxBytes of it, and its lines for onLine and the shared tail. */
class Capture {
    name: "stdout" | "stderr";
    maxBytes: number;
    chunks: Buffer[] = [];
    bytes = 0;
    dropped = 0;
    decoder = new StringDecoder("utf8");
    partial = "";
    partialCut = 0;
    tail: string[];
    tailMax: number;
    onLine: RunOptions["onLine"];
    constructor(name: "stdout" | "stderr", maxBytes: number, tail: string[], tailMax: number, onLine: RunOptions["onLine"]) {
        this.name = name;
        this.maxBytes = maxBytes;
        this.tail = tail;
        this.tailMax = tailMax;
        this.onLine = onLine;
    }
    push(b: Buffer): void {
        this.chunks.push(b);
        this.bytes += b.length;
        while (this.bytes > this.maxBytes && this.chunks.length) {
            const over = this.bytes - this.maxBytes;
            const first = this.chunks[0];
            if (first.length <= over) {
                this.chunks.shift();
                this.bytes -= first.length;
                this.dropped += first.length;
            } else {
                this.chunks[0] = first.subarray(over);
                this.bytes -= over;
                this.dropped += over;
            }
        }
        // Only the new text is scanned: a long line without a newline costs no quadratic time.
        const s = this.decoder.write(b);
        let start = 0;
        for (let i = s.indexOf("\n"); i !== -1; i = s.indexOf("\n", start)) {
            this.append(s.slice(start, i));
            this.endLine();
            start = i + 1;
        }
        this.append(s.slice(start));
    }
    flush(): void {
        this.append(this.decoder.end());
        if (this.partial || this.partialCut) this.endLine();
    }
    append(x: string): void {
        const room = Math.max(0, MAX_LINE - this.partial.length);
        if (x.length <= room) this.partial += x;
        else {
            this.partial += x.slice(0, room);
            this.partialCut += x.length - room;
        }
    }
    endLine(): void {
        const l = this.partialCut ? `${this.partial}... (${this.partialCut} more characters)` : this.partial;
        this.partial = "";
        this.partialCut = 0;
        const line = l.endsWith("\r") ? l.slice(0, -1) : l;
        this.tail.push(line.length > MAX_TAIL_LINE ? `${line.slice(0, MAX_TAIL_LINE)}...` : line);
        if (this.tail.length > this.tailMax) this.tail.splice(0, this.tail.length - this.tailMax);
        this.onLine?.(line, this.name);
    }
    text(): string {
        return Buffer.concat(this.chunks).toString("utf8");
    }
}

// --- children still running: signals passed on, and SIGTERM when this process exits --------------

const live = new Map<number, { group: boolean; child: ChildProcess }>();
const FORWARDED: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

function signalAll(sig: NodeJS.Signals): void {
    for (const [pid, c] of live) {
        try {
            if (c.group) process.kill(-pid, sig);
            else c.child.kill(sig);
        } catch {
            /* gone */
        }
    }
}

function onSignal(sig: NodeJS.Signals): void {
    signalAll(sig);
    // Nobody else handles it: do what Node would have done without us (die of that signal).
    if (process.listenerCount(sig) === 1) {
        removeHandlers();
        process.kill(process.pid, sig);
    }
}

const onExit = () => signalAll("SIGTERM");
let handlersOn = false;
function addHandlers(): void {
    if (handlersOn) return;
    handlersOn = true;
    for (const s of FORWARDED) process.on(s, onSignal);
    process.on("exit", onExit);
}
function removeHandlers(): void {
    if (!handlersOn) return;
    handlersOn = false;
    for (const s of FORWARDED) process.off(s, onSignal);
    process.off("exit", onExit);
}

function track(pid: number, group: boolean, child: ChildProcess): void {
    live.set(pid, { group, child });
    addHandlers();
}
function untrack(pid: number): void {
    live.delete(pid);
    if (live.size === 0) removeHandlers();
}
