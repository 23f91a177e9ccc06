// What deploy.ts makes of the engine's output: the stream with every secret value of the config
// file replaced (Guard), each resource's operations and step times from the engine's events
// (Timeline), and the verdicts of `preview --forbid-replace` and `--expect-no-changes`.
import * as fs from "fs";
import { EngineEvent, OpMap } from "@pulumi/pulumi/automation";
import { log, PROJECT } from "./engine";
import { asText, ConfigFile } from "./stackConfig";

/** Streams the engine's output line by line, replacing any secret value of the config file. */
export class Guard {
    private pending = "";
    readonly leaks = new Set<string>();
    private readonly needles: [string, string][] = [];

    constructor(file?: ConfigFile) {
        for (const [k, v] of Object.entries(file?.secrets ?? {})) {
            const text = asText(v);
            // The whole value, its JSON form, and every long line of a multi-line value (a key).
            const parts = [text, JSON.stringify(text).slice(1, -1), ...text.split("\n").map((l) => l.trim())];
            for (const p of parts) if (p.length >= 8 && !/^-----(BEGIN|END) /.test(p)) this.needles.push([p, k]);
        }
        this.needles.sort((a, b) => b[0].length - a[0].length);
    }

    scrub(text: string): string {
        for (const [needle, key] of this.needles) {
            if (text.includes(needle)) {
                this.leaks.add(key);
                text = text.split(needle).join(`[secret:${key}]`);
            }
        }
        return text;
    }

    readonly write = (chunk: string): void => {
        const lines = (this.pending + chunk).split("\n");
        this.pending = lines.pop() ?? "";
        if (lines.length > 0) process.stdout.write(this.scrub(lines.join("\n") + "\n"));
    };

    flush(): void {
        if (this.pending) process.stdout.write(this.scrub(this.pending) + "\n");
        this.pending = "";
    }
}

/**
 * Operations that change nothing: "same", and "read" (the program reads its own stack's last outputs
 * through a StackReference, components/preflight.ts; as `pulumi preview --expect-no-changes` does,
 * a read is not a change).
 */
export const NOT_A_CHANGE = new Set(["same", "read"]);

interface StepTiming {
    urn: string;
    type: string;
    ops: string[];
    start: number;
    end?: number;
    failed?: boolean;
}

/** Records, from engine events, when each resource's step started and finished (ms since t0). */
export class Timeline {
    readonly steps = new Map<string, StepTiming>();
    constructor(private readonly t0: number) {}

    readonly onEvent = (e: EngineEvent): void => {
        const now = Date.now() - this.t0;
        const meta = e.resourcePreEvent?.metadata ?? e.resOutputsEvent?.metadata ?? e.resOpFailedEvent?.metadata;
        if (!meta) return;
        const s = this.steps.get(meta.urn) ?? { urn: meta.urn, type: meta.type, ops: [], start: now };
        if (e.resourcePreEvent && !s.ops.includes(meta.op)) s.ops.push(meta.op);
        if (e.resOutputsEvent) s.end = now;
        if (e.resOpFailedEvent) s.failed = true;
        this.steps.set(meta.urn, s);
    };

    /**
     * The resources whose step is not "same". The dynamic provider's own default provider is left out:
     * it is handed the whole stack config, so any config edit shows it as "update" (reconfigured),
     * which the engine does not count as a resource change either.
     */
    changed(): StepTiming[] {
        return [...this.steps.values()].filter((s) => s.ops.some((op) => !NOT_A_CHANGE.has(op)) && !s.type.startsWith("pulumi:providers:"));
    }

    /** The changed resources with their step times; the program's components are only counted. */
    print(title: string): void {
        const changed = this.changed().filter((s) => !s.type.startsWith("pulumi:pulumi:Stack"));
        const components = changed.filter((s) => s.type.startsWith(`${PROJECT}:`));
        const rows = changed.filter((s) => !components.includes(s));
        if (changed.length === 0) return;
        log(`${title}${components.length > 0 ? ` (and ${components.length} of the program's components)` : ""}`);
        for (const s of rows.sort((a, b) => a.start - b.start)) {
            const name = s.urn.split("::").pop();
            const when = s.end === undefined ? `at ${(s.start / 1000).toFixed(1)}s` : `${(s.start / 1000).toFixed(1)}s -> ${(s.end / 1000).toFixed(1)}s`;
            log(`  ${s.ops.join("/").padEnd(12)} ${String(name).padEnd(26)} ${s.type.split(":").pop()} ${when}${s.failed ? " FAILED" : ""}`);
        }
    }

    save(file: string | undefined): void {
        if (file) fs.writeFileSync(file, JSON.stringify([...this.steps.values()], null, 2) + "\n");
    }
}

export function summary(changes: OpMap | Record<string, number> | undefined): string {
    return JSON.stringify(changes ?? {});
}

/**
 * The verdict of a preview (logged as it goes): 1 when --forbid-replace finds a resource that would be
 * replaced or deleted, or --expect-no-changes finds any change; else 0.
 */
export function previewVerdict(timeline: Timeline, changeSummary: OpMap, opts: { forbidReplace: boolean; expectNoChanges: boolean }): number {
    let code = 0;
    const changed = Object.entries(changeSummary).filter(([op, n]) => !NOT_A_CHANGE.has(op) && n > 0);
    if (opts.forbidReplace) {
        // An existing stack must not notice a new version of the program: nothing replaced,
        // nothing deleted (creates and in-place updates are fine).
        const bad = timeline.changed().filter((s) => s.ops.some((op) => /replace|delete|discard/i.test(op)));
        for (const s of bad) log(`would ${s.ops.join("/")}: ${s.urn}`);
        if (bad.length > 0) {
            log(`FAILED: ${bad.length} resource(s) would be replaced or deleted`);
            code = 1;
        } else log("no resource would be replaced or deleted");
    }
    if (opts.expectNoChanges && changed.length > 0) {
        log(`expected no changes, found: ${changed.map(([op, n]) => `${n} ${op}`).join(", ")}`);
        code = 1;
    }
    return code;
}
