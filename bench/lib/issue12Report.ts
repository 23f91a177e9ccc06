// The report of the aging, big-room and 512 MiB phases (issue 12): their table of figures and
// targets (MET / NOT MET / not measured), appended to results/table.md, and their headline figures
// for results/history.json.
import type { AgingResult } from "./aging.ts";
import type { BigRoomResult } from "./bigroom.ts";
import { round1 } from "./figures.ts";
import { MB, type CompressorFigures } from "./serverProbe.ts";
import type { Small512Result } from "./small512.ts";

/** The targets (bench/README.md "The aging, big-room and 512 MiB phases"). */
export const TARGETS12 = { agingLastOverFirst: 1.1, compressorSmallerPercent: 30, p95Ratio512: 1.5, oomKills512: 0 };

type Rec = Record<string, unknown>;
const f = (v: unknown, unit = "") => (v === undefined || v === null ? "-" : `${typeof v === "number" ? v : String(v)}${unit}`);
const met = (ok: boolean | null) => (ok === null ? "not measured" : ok ? "MET" : "NOT MET");
const mb = (b: number | undefined) => (b === undefined ? "-" : String(Math.round(MB(b))));
/** A "smaller by" percentage as a change: -12.8 % when smaller, +0.1 % when it grew, 0 % unchanged. */
const smaller = (pct: number | null | undefined) => (pct === null || pct === undefined ? "-" : `${pct > 0 ? "-" : pct < 0 ? "+" : ""}${Math.abs(pct)} %`);
const scaleNote = (s: unknown) => (typeof s === "number" && s < 1 ? ` (scale ${s})` : "");

function agingRows(a: AgingResult | undefined, label: string): string[][] {
    if (!a) return [[`${label}`, "not run", "", ""]];
    const d = a.database;
    const compressed = typeof d.compressor === "string" ? d.compressor : null;
    return [
        [`${label}: events sent / planned${scaleNote(a.scale)}`, `${a.eventsSent} / ${a.plannedEvents} (${a.operationErrors} failed ops)`, "", "(figure)"],
        [`${label}: events/s (client API through nginx)`, f(a.eventsPerSecond), "", "(figure)"],
        [
            `${label}: steady after q1 / q4 (PSS, MB)`,
            `${f(a.firstQuarterSteadyMB)} / ${f(a.lastQuarterSteadyMB)} (x${f(a.lastOverFirst)})`,
            `q4 <= ${TARGETS12.agingLastOverFirst} x q1`,
            met(a.lastOverFirst === null ? null : a.lastOverFirst <= TARGETS12.agingLastOverFirst),
        ],
        [
            `${label}: where memory levels off (16 slices of the run, median PSS; bench/trend.ts)`,
            !a.memoryTrend
                ? "not measured (a run before it; bench/trend.ts reads its samples)"
                : a.memoryTrend.levelFrom === null
                  ? "still growing at the end of the run"
                  : `from slice ${a.memoryTrend.levelFrom}: ${f(a.memoryTrend.levelFromMB)} -> ${f(a.memoryTrend.lastMB)} MB over the last ${f(a.memoryTrend.levelShare)} % (within ${a.memoryTrend.tolerancePercent} %)`,
            "",
            "(figure)",
        ],
        [
            `${label}: database after q1 / q2 / q3 / q4 (MB; of it push actions)`,
            a.quarters.map((q) => (q.database ? `${mb(q.database.databaseBytes)} (${mb(q.database.pushActionsBytes)})` : "-")).join(" / "),
            "",
            "(figure)",
        ],
        [
            `${label}: the nightly index rebuild (indexRebuild): database, push actions (MB)`,
            // A results file from before this was measured has no indexRebuild.
            d.indexRebuild === undefined
                ? "not measured (a run before the rebuild was measured)"
                : typeof d.indexRebuild === "string"
                  ? d.indexRebuild
                  : `${mb(d.before.databaseBytes)} -> ${mb(d.indexesRebuilt?.databaseBytes)}, ${mb(d.before.pushActionsBytes)} -> ${mb(d.indexesRebuilt?.pushActionsBytes)}, ` +
                    `unit run ${f(round1(d.indexRebuild.seconds))} s (${d.indexRebuild.tables.map((e) => `${e.table}: ${e.rebuilt ? "rebuilt" : (e.skipped ?? e.error ?? "not needed")}`).join(", ")})`,
            "",
            "(figure)",
        ],
        [`${label}: peak (PSS, MB) / OOM kills / Synapse restarts`, `${f(a.peakMB)} / ${f(a.oomKills)} / ${f(a.synapseRestarts)}`, "", "(figure)"],
        [
            `${label}: database without -> with compressor (MB, compacted)`,
            compressed ?? `${f(d.summaryMB.compacted)} -> ${f(d.summaryMB.afterCompressorCompacted)} (${smaller(d.databaseSmallerPercent)})`,
            `>= ${TARGETS12.compressorSmallerPercent} % smaller`,
            compressed ? "not measured" : met(d.databaseSmallerPercent === null ? null : d.databaseSmallerPercent >= TARGETS12.compressorSmallerPercent),
        ],
        [
            `${label}: state_groups_state rows without -> with compressor`,
            compressed ??
                `${f(d.compacted?.stateGroupsStateRows)} -> ${f(d.afterCompressorCompacted?.stateGroupsStateRows)} (${smaller(d.stateRowsSmallerPercent)})`,
            "",
            "(figure)",
        ],
        [
            `${label}: remote media cache before -> after retention (MB)`,
            a.media.before
                ? `${f(a.media.before.remote_content)} + ${f(a.media.before.remote_thumbnail)} thumbnails -> ${f(a.media.after?.remote_content)} + ${f(a.media.after?.remote_thumbnail)}`
                : "-",
            "",
            "(figure)",
        ],
        [`${label}: local media kept (MB)`, a.media.before ? `${f(a.media.before.local_content)} -> ${f(a.media.after?.local_content)}` : "-", "", "(figure)"],
        [`${label}: URL previews`, "not exercised (testbed: private addresses only)", "", "not measurable here"],
    ];
}

/** The compressor's figures on one server (serverProbe.measureCompressor), as one row. */
function compressorRow(label: string, c: CompressorFigures | undefined): string[] {
    if (!c) return [label, "not measured (a run before the compressor was measured there)", "", "(figure)"];
    if (typeof c.compressor === "string") return [label, c.compressor, "", "not measured"];
    return [
        label,
        `${mb(c.compacted?.databaseBytes)} -> ${mb(c.afterCompressorCompacted?.databaseBytes)} (${smaller(c.databaseSmallerPercent)}); ` +
            `state_groups_state ${f(c.compacted?.stateGroupsStateRows)} -> ${f(c.afterCompressorCompacted?.stateGroupsStateRows)} rows (${smaller(c.stateRowsSmallerPercent)})`,
        "",
        "(figure)",
    ];
}

/** The table of the new phases (empty string when none of them has figures). */
export function issue12Table(res: Rec): string {
    const a = res.aging as AgingResult | undefined;
    const b = res.bigroom as BigRoomResult | undefined;
    const s = res.small512 as Small512Result | undefined;
    if (!a && !b && !s) return "";
    const rows: string[][] = [["measure", "figure", "target", "status"], ...agingRows(a, "aging (1 GiB)")];
    if (b) {
        const on = b.limitOn as Rec;
        const off = b.limitOff as Rec;
        const r = b.room;
        rows.push(
            [
                "big room: members / state events / complexity",
                `${f(r.joinedMembers)} / ${f(r.stateEvents)} / ${f(r.complexity)}`,
                "2000 members at full size",
                "(figure)",
            ],
            [
                "big room, limit on: join refused",
                `${on.joined ? "joined" : `${f(on.status)} ${f(on.errcode)}`}${on.messageIsTheConfiguredText ? ", the configured text" : ""}`,
                "M_RESOURCE_LIMIT_EXCEEDED",
                met(on.refusedWithResourceLimit === true && on.messageIsTheConfiguredText === true),
            ],
            [
                "big room, limit on: memory growth (MB)",
                `${f(on.peakGrowthMB)} (baseline ${f(on.baselineMB)}, peak ${f(on.peakMB)}, noise ${f(on.noiseMB)})`,
                "<= noise",
                met(typeof on.flat === "boolean" ? on.flat : null),
            ],
            [
                "big room, limit off: join / full state / first sync (s)",
                off.joined
                    ? `${f(off.joinSeconds)} / ${off.fullStateSeconds === null ? `not within the timeout (${f(off.localJoinedMembers)} members seen)` : f(off.fullStateSeconds)} / ${f(off.initialSyncSeconds)}`
                    : `not joined: ${f(off.errcode)} ${f(off.error)}`,
                "",
                "(figure)",
            ],
            compressorRow("big room's server (bench3): database without -> with compressor (MB, compacted)", b.partnerCompressor),
            [
                "big room, limit off: peak (PSS, MB), OOM kills, restarts",
                `${f(off.peakMB)} (baseline ${f(off.baselineMB)}), ${f(off.oomKills)}, ${f(off.synapseRestarts)}; survived: ${off.survived ? "yes" : "no"}`,
                "",
                "(figure)",
            ],
        );
    } else rows.push(["big room", "not run", "", ""]);
    if (s) {
        const st = s.standard;
        rows.push(
            [`512 MiB: ${s.presetNote}`, `cap ${f(s.memoryCapMB)} MB, cold deploy ${f(s.coldDeploySeconds)} s`, "", ""],
            [
                `512 MiB: OOM kills (${s.standardNotRun ? "aging" : "standard + aging"})`,
                f(s.oomKillsTotal),
                "0",
                met(s.oomKillsTotal === TARGETS12.oomKills512 && !s.standardError && !s.agingError),
            ],
            ...(s.standardNotRun
                ? [["512 MiB: standard workload", "not run (aging512: the aging workload alone)", "", ""]]
                : [
                      [
                          "512 MiB: standard steady / peak (PSS, MB)",
                          st ? `${f(st.steadyMB)} / ${f(st.peakMB)}` : `failed: ${f(s.standardError)}`,
                          "",
                          "(figure)",
                      ],
                      [
                          "512 MiB: send-to-sync p95 vs 1 GiB (ms)",
                          `${f(st?.p95LatencyMs)} vs ${f(s.reference1GiB.p95LatencyMs)} (x${f(s.p95Ratio)}; 1 GiB: ${s.reference1GiB.source})`,
                          `<= ${TARGETS12.p95Ratio512} x`,
                          met(s.p95Ratio === null ? null : s.p95Ratio <= TARGETS12.p95Ratio512),
                      ],
                  ]),
            ...(s.aging ? agingRows(s.aging, "aging (512 MiB)") : [["aging (512 MiB)", s.agingError ? `failed: ${s.agingError}` : "not run", "", ""]]),
        );
    } else rows.push(["512 MiB", "not run", "", ""]);
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    const line = (r: string[]) => "| " + r.map((c, i) => c.padEnd(widths[i])).join(" | ") + " |";
    return [line(rows[0]), "|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|", ...rows.slice(1).map(line)].join("\n");
}

/** The headline figures of the new phases, for history.json (carriedOver when taken from latest.json). */
export function issue12Headline(res: Rec, ran: string[]): Rec | undefined {
    const a = res.aging as AgingResult | undefined;
    const b = res.bigroom as BigRoomResult | undefined;
    const s = res.small512 as Small512Result | undefined;
    if (!a && !b && !s) return undefined;
    const co = (p: string) => (ran.includes(p) ? {} : { carriedOver: true });
    return {
        ...(a
            ? {
                  aging: {
                      ...co("aging"),
                      scale: a.scale,
                      eventsSent: a.eventsSent,
                      eventsPerSecond: a.eventsPerSecond,
                      firstQuarterSteadyMB: a.firstQuarterSteadyMB,
                      lastQuarterSteadyMB: a.lastQuarterSteadyMB,
                      oomKills: a.oomKills,
                      databaseMB: a.database.summaryMB,
                      databaseSmallerPercent: a.database.databaseSmallerPercent,
                      compressor: typeof a.database.compressor === "string" ? a.database.compressor : "ran",
                  },
              }
            : {}),
        ...(b
            ? {
                  bigroom: {
                      ...co("bigroom"),
                      members: b.room.joinedMembers,
                      limitOnErrcode: (b.limitOn as Rec).errcode ?? null,
                      limitOnGrowthMB: (b.limitOn as Rec).peakGrowthMB ?? null,
                      limitOffJoinSeconds: (b.limitOff as Rec).joinSeconds ?? null,
                      limitOffPeakMB: (b.limitOff as Rec).peakMB ?? null,
                      limitOffSurvived: (b.limitOff as Rec).survived ?? null,
                  },
              }
            : {}),
        ...(s
            ? {
                  small512: {
                      ...(ran.includes("small512") || ran.includes("aging512") ? {} : { carriedOver: true }),
                      oomKills: s.oomKillsTotal,
                      steadyMB: s.standard?.steadyMB ?? null,
                      p95LatencyMs: s.standard?.p95LatencyMs ?? null,
                      p95Ratio: s.p95Ratio,
                      agingScale: s.aging?.scale ?? null,
                      presetNote: s.presetNote,
                  },
              }
            : {}),
    };
}
