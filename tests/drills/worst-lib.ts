// The worst days' own server and tools (drills 22-24, worst-days.ts): a guest of their own whose data
// volume is a 2 GiB ext4 image loop-mounted on the host (so that drill 23 fills that image to the last
// block, never the host's disk), a sender that keeps count of every message the server acknowledged,
// and what the kernel and the guest's systemd say about the guest's processes.
import { existsSync, readFileSync, rmSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import * as L from "./lib.ts";

/** The guest: its own name and address (drill1 is shared; .40, .49-.52 are taken). */
export const WD: L.ServerTarget = { name: "worstdays", ip: "10.250.0.61" };
const WORK = `${L.B}/drills-${WD.name}`;
/** The volume: an ext4 image on the host, mounted where boot.sh binds the guest's data dir from. */
export const VOLUME_IMAGE = `${WORK}/volume.img`;
export const VOLUME_MOUNT = `${L.B}/data-${WD.name}`;
export const VOLUME_SIZE = "2G";

async function sh(script: string, label: string, timeoutMs = 120_000): Promise<string> {
    return (await L.runOk("bash", ["-euo", "pipefail", "-c", script], { timeoutMs, label })).out;
}

// findmnt --target needs the path to exist: on a fresh machine it does not yet (nothing mounted).
const mounted = async () =>
    existsSync(VOLUME_MOUNT)
        ? sh(`findmnt -n -o SOURCE --target ${VOLUME_MOUNT} | head -n 1; findmnt -n -o TARGET --target ${VOLUME_MOUNT} | head -n 1`, "volume-findmnt")
        : "";

/** The image made (once) and mounted at $B/data-worstdays; a mount of something else there is refused. */
export async function mountVolume(): Promise<void> {
    const [, target] = (await mounted()).trim().split("\n");
    if (target === VOLUME_MOUNT) return;
    if (existsSync(VOLUME_MOUNT) && readFileSync("/proc/mounts", "utf8").includes(` ${VOLUME_MOUNT} `))
        throw new Error(`${VOLUME_MOUNT} is mounted from elsewhere`);
    await sh(
        `mkdir -p ${WORK} ${VOLUME_MOUNT}
        [ -f ${VOLUME_IMAGE} ] || { truncate -s ${VOLUME_SIZE} ${VOLUME_IMAGE}.new && mkfs.ext4 -q -L ${WD.name} ${VOLUME_IMAGE}.new && mv ${VOLUME_IMAGE}.new ${VOLUME_IMAGE}; }
        [ -z "$(ls -A ${VOLUME_MOUNT})" ] || { echo "${VOLUME_MOUNT} is not empty: refusing to mount over it" >&2; exit 1; }
        mount -o loop ${VOLUME_IMAGE} ${VOLUME_MOUNT}`,
        "volume-mount",
    );
}

/**
 * The worst days' server deployed and answering (with the helpers pointed at it); if not, from
 * nothing: guest destroyed, volume image made anew, state forgotten, testbed.sh up.
 */
export async function ensureWorstDays(): Promise<void> {
    const [, target] = (await mounted()).trim().split("\n");
    if (target === VOLUME_MOUNT && (await L.healthy()) && existsSync(L.SECRETS_FILE) && existsSync(L.STACK_FILE)) return;
    L.note(`${L.NAME} is not deployed on its volume image and answering: bringing it up from nothing`);
    await removeWorstDays({ keepFiles: true });
    await mountVolume();
    await L.forgetState();
    await L.testbedUp("worstdays-testbed-up");
    await L.resetHttp();
    await L.waitFor(`${L.NAME} answering`, 60_000, L.healthy);
}

/** The guest destroyed, the volume unmounted and its image removed; with keepFiles the stack's files stay. */
export async function removeWorstDays(opts: { keepFiles?: boolean } = {}): Promise<void> {
    if (L.guestRunning() || existsSync(`${L.B}/run-${L.NAME}`)) await L.destroyGuest(false);
    await sh(
        `if mountpoint -q ${VOLUME_MOUNT}; then umount ${VOLUME_MOUNT}; fi; rm -f ${VOLUME_IMAGE}; rmdir ${VOLUME_MOUNT} 2>/dev/null || true`,
        "volume-remove",
    );
    L.forgetAdmin();
    if (opts.keepFiles) return;
    if (existsSync(L.STACK_FILE)) await L.deploy("destroy", [], { label: "worstdays-forget-state", timeoutMs: 180_000 });
    await L.run("bash", [`${L.REPO}/testbed/dns-load.sh`, "--remove", L.NAME], { timeoutMs: 60_000 });
    for (const f of [L.STACK_FILE, `${L.B}/stacks/${L.NAME}.outputs.json`, L.SECRETS_FILE, L.E2E_FILE]) rmSync(f, { force: true });
}

// ---- a sender that keeps count ----
export interface Acked {
    body: string;
    eventId: string;
    at: number;
}
export interface Sender {
    readonly acked: Acked[];
    /** Refused or unanswered sends: status (0: no answer) and errcode/error, with the time. */
    readonly failed: { status: number; what: string; at: number }[];
    /** Stops after the send in flight; resolves when it is done. */
    stop(): Promise<void>;
}

/** Sends messages to the room one after the other (every intervalMs) until stopped; each body is unique. */
export function startSender(s: L.Session, roomId: string, tag: string, intervalMs = 100): Sender {
    const acked: Acked[] = [];
    const failed: Sender["failed"] = [];
    let stopped = false;
    let n = 0;
    const loop = (async () => {
        while (!stopped) {
            const body = `${tag} #${++n}`;
            const txn = `${tag}-${process.pid}-${n}`;
            try {
                const r = await L.mx("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${txn}`, {
                    token: s.token,
                    body: { msgtype: "m.text", body },
                    maxWaitMs: 5000,
                });
                if (r.status === 200 && typeof r.json?.event_id === "string") acked.push({ body, eventId: r.json.event_id, at: Date.now() });
                else failed.push({ status: r.status, what: `${r.json?.errcode ?? ""} ${r.json?.error ?? r.text.slice(0, 120)}`.trim(), at: Date.now() });
            } catch (e) {
                failed.push({ status: 0, what: String(e).slice(0, 160), at: Date.now() });
                await sleep(500);
            }
            await sleep(intervalMs);
        }
    })();
    return {
        acked,
        failed,
        stop: async () => {
            stopped = true;
            await loop;
        },
    };
}

/** Every m.room.message of the room (event id → body), walking /messages back to the start. */
export async function allMessages(s: L.Session, roomId: string): Promise<Map<string, string>> {
    const seen = new Map<string, string>();
    let from: string | undefined;
    for (let page = 0; page < 200; page++) {
        const q = new URLSearchParams({ dir: "b", limit: "500", ...(from ? { from } : {}) });
        const j = await L.mxOk("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?${q}`, { token: s.token });
        for (const ev of j.chunk ?? []) if (ev.type === "m.room.message") seen.set(ev.event_id, ev.content?.body);
        if (!j.end || (j.chunk ?? []).length === 0) break;
        from = j.end;
    }
    return seen;
}

/** The acknowledged messages the room no longer has (by event id, with the same body). */
export async function lostMessages(s: L.Session, roomId: string, acked: Acked[]): Promise<Acked[]> {
    const seen = await allMessages(s, roomId);
    return acked.filter((a) => seen.get(a.eventId) !== a.body);
}

/** Senders are not rate-limited (as for a bot), so a drill sends as fast as the server takes it. */
export async function noRateLimit(userId: string): Promise<void> {
    const r = await L.adminApi("POST", `/_synapse/admin/v1/users/${encodeURIComponent(userId)}/override_ratelimit`, { messages_per_second: 0, burst_count: 0 });
    if (r.status !== 200) throw new Error(`override_ratelimit ${userId}: HTTP ${r.status}`);
}

/** A summary of what a sender saw: counts, and the distinct failures with how often. */
export function senderReport(s: Sender): string {
    const kinds = new Map<string, number>();
    for (const f of s.failed) kinds.set(`${f.status} ${f.what}`, (kinds.get(`${f.status} ${f.what}`) ?? 0) + 1);
    return `${s.acked.length} acknowledged, ${s.failed.length} refused or unanswered${kinds.size ? `: ${[...kinds].map(([k, n]) => `${n}× ${k}`).join("; ")}` : ""}`;
}

// ---- the guest's processes as the host's kernel sees them ----
/** The guest's v1 memory cgroup on the host (boot.sh writes it third in $B/run-NAME/cgroups). */
export function guestMemcg(): string {
    const line = readFileSync(`${L.B}/run-${L.NAME}/cgroups`, "utf8")
        .split("\n")
        .find((l) => l.includes("/memory/"));
    if (!line) throw new Error(`no memory cgroup in ${L.B}/run-${L.NAME}/cgroups`);
    return line.trim();
}

/** memory.oom_control's oom_kill counter of the guest's cgroup. */
export function oomKills(): number {
    const m = /^oom_kill (\d+)$/m.exec(readFileSync(`${guestMemcg()}/memory.oom_control`, "utf8"));
    return m ? Number(m[1]) : 0;
}

/** The host pid of a process of the guest, from its pid inside the guest (NSpid in the host's /proc). */
export function hostPid(guestPid: string): string | undefined {
    for (const pid of readFileSync(`${guestMemcg()}/cgroup.procs`, "utf8").split("\n").filter(Boolean)) {
        try {
            const ns = /^NSpid:\s+(.*)$/m
                .exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]
                .trim()
                .split(/\s+/);
            if (ns && ns.length > 1 && ns[ns.length - 1] === guestPid) return pid;
        } catch {
            // gone meanwhile
        }
    }
    return undefined;
}

/** The main pids of the units that matter, inside the guest. */
export async function mainPids(): Promise<Record<"synapse" | "postgres" | "ssh", string>> {
    const pg = await postgresUnit();
    const out = await L.tsshOk(`systemctl show -p MainPID --value matrix-synapse ${pg} ssh.service`);
    // One value per unit, the units' blocks separated by empty lines.
    const [synapse, postgres, ssh] = out.split("\n").filter((l) => l.trim() !== "");
    return { synapse, postgres, ssh };
}

let pgUnit = "";
/** postgresql@<major>-main.service. */
export async function postgresUnit(): Promise<string> {
    if (!pgUnit) pgUnit = (await L.tsshOk("systemctl list-units --all --plain --no-legend 'postgresql@*-main.service' | awk '{print $1; exit}'")).trim();
    return pgUnit;
}
