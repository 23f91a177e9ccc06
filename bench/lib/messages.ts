// The workload's message phase: the planned messages at a fixed rate (open loop: message i is due
// at i / targetMessagesPerSecond) from at most sendConcurrency requests in flight, with the media
// uploads and link previews interleaved where the plan puts them. Each send is registered with the
// syncing clients, which time its arrival at every other syncing client in the room.
import { sleep } from "./figures.ts";
import type { MediaUploads } from "./media.ts";
import { call } from "./matrix.ts";
import type { SyncClients } from "./syncClients.ts";
import { say } from "./testbed.ts";
import type { UrlPreviews } from "./urlPreviews.ts";
import type { Population } from "./usersAndRooms.ts";
import type { Workload } from "./workload.ts";
import type { Plan } from "./workloadPlan.ts";

export interface MessagePhase {
    /** messages whose PUT succeeded */
    sent: number;
    /** round trip of each successful PUT (ms) */
    sendRtt: number[];
    /** from the first due time to the last send's end */
    seconds: number;
}

/** Sends every planned message (and the media and previews between them); errors are recorded, not thrown. */
export async function sendMessages(
    w: Workload,
    plan: Plan,
    people: Population,
    sync: SyncClients,
    media: MediaUploads,
    previews: UrlPreviews,
    errors: string[],
    serverName: string,
): Promise<MessagePhase> {
    const { clients, fedClients, roomIds } = people;
    const { expect, sentAt } = sync;
    const msgT0 = performance.now();
    const sendRtt: number[] = [];
    let next = 0;
    let sent = 0;
    const senderOf = (m: Plan["messages"][number]) => (m.fed ? fedClients[m.sender] : clients[m.sender]);
    const observersIn = (room: number) =>
        plan.roomMembers[room].filter((u) => plan.syncers.includes(u)).length + (room < w.federatedRooms && fedClients[0] ? 1 : 0);
    const worker = async () => {
        for (;;) {
            const i = next++;
            if (i >= plan.messages.length) return;
            const due = msgT0 + (i * 1000) / w.targetMessagesPerSecond;
            const wait = due - performance.now();
            if (wait > 0) await sleep(wait);
            const m = plan.messages[i];
            const c = senderOf(m);
            if (plan.mediaAt.has(i)) await media.send(plan.mediaAt.get(i)!, c, roomIds[m.room]);
            if (plan.previewAt.has(i)) await previews.send(plan.previewAt.get(i)!, c, roomIds[m.room]);
            // The sender's own observer would also see it: count only other syncing clients.
            const selfObserves = (!m.fed && plan.syncers.includes(m.sender)) || (m.fed && m.sender === 0) ? 1 : 0;
            expect.set(i, observersIn(m.room) - selfObserves);
            const t = performance.now();
            sentAt.set(i, t);
            try {
                await call(c.base, c.token, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomIds[m.room])}/send/m.room.message/b${w.seed}-${i}`, {
                    msgtype: "m.text",
                    body: m.body,
                    "bench.id": i,
                });
                sendRtt.push(performance.now() - t);
                sent++;
            } catch (e) {
                errors.push(`send ${i}: ${String(e)}`);
                expect.delete(i);
            }
            if (i > 0 && i % 1000 === 0) say(`${serverName}: ${i} messages (${((performance.now() - msgT0) / 1000).toFixed(0)}s)`);
        }
    };
    await Promise.all(Array.from({ length: w.sendConcurrency }, worker));
    return { sent, sendRtt, seconds: (performance.now() - msgT0) / 1000 };
}
