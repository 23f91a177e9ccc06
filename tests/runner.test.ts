/**
 * testbed/lib/run.ts, with real child processes (no mocks): a child that exits without reading its
 * stdin, a timeout that kills the whole process group, a command that does not exist, a signal, the
 * output cap, and the error message. (`npm run bench` once died of the first one: an unhandled
 * `write EPIPE` from the old runner in bench/lib/testbed.ts.)
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { mustRunProcess, runFailure, runProcess, RunError } from "../testbed/lib/run";

const NODE = process.execPath;
const BIG = Buffer.alloc(8 * 1024 * 1024, "x"); // far more than a pipe holds (64 KiB)

/** Alive and not a zombie (a killed child may linger as one until its reaper gets to it). */
function alive(pid: number): boolean {
    try {
        return !/^State:\s*Z/m.test(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    } catch {
        return false;
    }
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
        if (cond()) return true;
        await new Promise((r) => setTimeout(r, 50));
    }
    return cond();
}

describe("runProcess", () => {
    test("the condition is real: writing a large stdin to a child that exits without reading it fails with EPIPE", async () => {
        // The old runner's pattern, with a listener added only to observe what it did not handle.
        const child = spawn("sh", ["-c", "exit 3"], { stdio: ["pipe", "ignore", "ignore"] });
        const stdinError = new Promise<string | undefined>((resolve) => {
            child.stdin.on("error", (e: NodeJS.ErrnoException) => resolve(e.code));
            child.stdin.on("finish", () => resolve(undefined));
        });
        child.stdin.end(BIG);
        await new Promise((r) => child.on("close", r));
        expect(await stdinError).toBe("EPIPE");
    });

    test("a child that exits without reading a large stdin: no EPIPE thrown, its exit code reported", async () => {
        const errors: unknown[] = [];
        const onUncaught = (e: unknown) => errors.push(e);
        process.on("uncaughtException", onUncaught);
        try {
            const r = await runProcess("sh", ["-c", "echo started; exit 3"], { input: BIG });
            expect(r.code).toBe(3);
            expect(r.signal).toBeNull();
            expect(r.timedOut).toBe(false);
            expect(r.stdout).toBe("started\n");
            expect(r.stdinError).toMatch(/^EPIPE/);
            // Let any late stream error surface before checking that none escaped.
            await new Promise((r) => setTimeout(r, 200));
        } finally {
            process.off("uncaughtException", onUncaught);
        }
        expect(errors).toEqual([]);
    });

    test("a child that reads all of its stdin gets it whole", async () => {
        const r = await runProcess("sh", ["-c", "wc -c"], { input: BIG });
        expect(r.code).toBe(0);
        expect(r.stdout.trim()).toBe(String(BIG.length));
        expect(r.stdinError).toBeUndefined();
    });

    test("timeout: the whole process group is killed, grandchildren included", async () => {
        // The child starts a grandchild that would outlive it, prints its pid, and waits.
        const t0 = Date.now();
        const r = await runProcess("sh", ["-c", "sleep 60 & echo $!; wait"], { timeoutMs: 500 });
        expect(Date.now() - t0).toBeLessThan(10_000);
        expect(r.timedOut).toBe(true);
        expect(r.signal).toBe("SIGTERM");
        expect(r.code).toBe(128 + os.constants.signals.SIGTERM);
        const grandchild = Number(r.stdout.trim());
        expect(grandchild).toBeGreaterThan(0);
        expect(await waitFor(() => !alive(grandchild), 5000)).toBe(true);
        expect(runFailure(r).message).toMatch(/^`sh -c 'sleep 60 & echo \$!; wait'` timed out: killed with SIGTERM after [\d.]+ s/);
    });

    test("timeout: a group that ignores SIGTERM gets SIGKILL after the grace period", async () => {
        const r = await runProcess("sh", ["-c", "trap '' TERM; echo ready; sleep 60"], { timeoutMs: 300, killGraceMs: 300 });
        expect(r.timedOut).toBe(true);
        expect(r.signal).toBe("SIGKILL");
        expect(r.code).toBe(137);
        expect(r.seconds).toBeLessThan(10);
    });

    test("abort: the signal ends the whole process group, and the result says it was cancelled", async () => {
        const ac = new AbortController();
        const t0 = Date.now();
        const running = runProcess("sh", ["-c", "sleep 60 & echo $!; wait"], { signal: ac.signal, onLine: () => ac.abort() });
        const r = await running;
        expect(Date.now() - t0).toBeLessThan(10_000);
        expect(r.aborted).toBe(true);
        expect(r.timedOut).toBe(false);
        expect(r.signal).toBe("SIGTERM");
        const grandchild = Number(r.stdout.trim());
        expect(await waitFor(() => !alive(grandchild), 5000)).toBe(true);
        expect(runFailure(r).message).toMatch(/` cancelled: killed with SIGTERM after /);
        // Already aborted: the child is ended at once.
        const again = await runProcess("sleep", ["60"], { signal: ac.signal });
        expect(again.aborted).toBe(true);
        expect(again.seconds).toBeLessThan(10);
    });

    test("a command that does not exist: a RunError naming it (ENOENT), no crash", async () => {
        const err = await runProcess("phillymesh-no-such-command", ["--flag"], { input: "some input" }).then(
            () => undefined,
            (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(RunError);
        expect((err as RunError).code).toBe("ENOENT");
        expect((err as RunError).message).toBe("cannot run `phillymesh-no-such-command --flag`: phillymesh-no-such-command not found on PATH (ENOENT)");
    });

    test("a working directory that does not exist is named as such", async () => {
        await expect(runProcess("true", [], { cwd: "/nonexistent/phillymesh" })).rejects.toThrow(
            "its working directory /nonexistent/phillymesh does not exist",
        );
    });

    test("exit by a signal: the signal, and 128 + its number as the code", async () => {
        const r = await runProcess("sh", ["-c", "kill -KILL $$"]);
        expect(r.signal).toBe("SIGKILL");
        expect(r.code).toBe(137);
        expect(r.timedOut).toBe(false);
        expect(runFailure(r).message).toMatch(/`sh -c 'kill -KILL \$\$'` killed by SIGKILL after/);
    });

    test("output is capped: the last bytes are kept and the dropped ones counted", async () => {
        const script = "for (let i = 0; i < 20000; i++) process.stdout.write(`line ${i}\\n`);";
        const r = await runProcess(NODE, ["-e", script], { maxOutputBytes: 1000 });
        expect(r.code).toBe(0);
        expect(Buffer.byteLength(r.stdout)).toBe(1000);
        expect(r.stdout.endsWith("line 19999\n")).toBe(true);
        expect(r.stdoutDroppedBytes).toBeGreaterThan(100_000);
        expect(r.tail.length).toBe(40);
        expect(r.tail[39]).toBe("line 19999");
    });

    test("lines reach onLine whole, whatever the chunks; a last line without a newline too", async () => {
        const lines: string[] = [];
        const script =
            "process.stdout.write('ab'); setTimeout(() => { process.stdout.write('c\\nd\\n'); process.stderr.write('e\\n'); process.stdout.write('f'); }, 50);";
        const r = await runProcess(NODE, ["-e", script], { onLine: (l, s) => lines.push(`${s}:${l}`) });
        expect(r.code).toBe(0);
        expect(lines.sort()).toEqual(["stderr:e", "stdout:abc", "stdout:d", "stdout:f"]);
    });

    test("mustRunProcess: the error names the command, the exit and the tail of both streams", async () => {
        const err = await mustRunProcess("sh", ["-c", "echo one; echo two >&2; exit 4"]).then(
            () => undefined,
            (e: unknown) => e as RunError,
        );
        expect(err).toBeInstanceOf(RunError);
        expect(err!.message).toMatch(
            /^`sh -c 'echo one; echo two >&2; exit 4'` exited 4 after [\d.]+ s; last 2 line\(s\) of output:\n {2}(one\n {2}two|two\n {2}one)$/,
        );
        expect(err!.result?.code).toBe(4);
    });

    test("a daemon that keeps the output pipes open does not hold the result back", async () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runner-"));
        try {
            const t0 = Date.now();
            // The grandchild leaves the process group (setsid) and keeps stdout open for 30 s.
            const r = await runProcess("sh", ["-c", `setsid sh -c 'echo $$ > ${dir}/pid; sleep 30' & sleep 0.3; echo done`]);
            expect(r.code).toBe(0);
            expect(r.stdout).toContain("done");
            expect(Date.now() - t0).toBeLessThan(10_000);
            const pid = Number(fs.readFileSync(path.join(dir, "pid"), "utf8"));
            if (pid > 0) process.kill(pid, "SIGKILL");
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
