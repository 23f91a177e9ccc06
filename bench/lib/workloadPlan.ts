// The workload's plan, made before anything is sent: user names, who is in which room, who syncs,
// and every message (room, sender, text), media upload and link preview in order. A seeded
// generator makes it, so every server gets the same events in the same order.
import type { Workload } from "./workload.ts";

/** mulberry32: a small seeded PRNG, so every server gets the same workload. */
export function rng(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

const WORDS = (
    "mesh node antenna rooftop link router firmware channel meeting tonight install ladder cable " +
    "signal strength latency packet gateway backbone volunteer neighbour survey sector omni dish " +
    "power battery solar weather storm fixed broken works thanks great question anyone help map " +
    "street corner building access permission landlord the a to of and is in it for on with at"
).split(" ");

/** What every server gets, in order. */
export interface Plan {
    userNames: string[]; // localparts
    fedNames: string[];
    roomMembers: number[][]; // room -> local user indexes (first = creator)
    syncers: number[]; // local user indexes that sync
    messages: { room: number; sender: number; fed: boolean; body: string }[];
    mediaAt: Map<number, number>; // message index -> media index
    previewAt: Map<number, number>; // message index -> preview index
}

/**
 * User *i* joins rooms (7i + j) mod rooms for j < roomsPerUser, every room gets a syncing client, rooms
 * are picked with a skewed distribution, senders among the room's members (or the partner's users).
 */
export function makePlan(w: Workload): Plan {
    const r = rng(w.seed);
    const userNames = Array.from({ length: w.users }, (_, i) => `benchuser${String(i).padStart(2, "0")}`);
    const fedNames = Array.from({ length: w.federatedUsers }, (_, i) => `benchfed${i}`);
    const roomMembers: number[][] = Array.from({ length: w.rooms }, () => []);
    for (let i = 0; i < w.users; i++) {
        for (let j = 0; j < w.roomsPerUser; j++) {
            const room = (i * 7 + j) % w.rooms;
            if (!roomMembers[room].includes(i)) roomMembers[room].push(i);
        }
    }
    const syncers = Array.from({ length: Math.min(w.syncingClients, w.users) }, (_, i) => i);
    roomMembers.forEach((m, k) => {
        if (!m.some((u) => syncers.includes(u))) m.push(syncers[k % syncers.length]);
        m.sort((a, b) => a - b);
    });
    const weights = roomMembers.map((_, k) => 1 / Math.pow(k + 1, 0.6));
    const wsum = weights.reduce((a, b) => a + b, 0);
    const pickRoom = (fedOnly: boolean) => {
        if (fedOnly) return Math.floor(r() * w.federatedRooms);
        let x = r() * wsum;
        for (let k = 0; k < weights.length; k++) if ((x -= weights[k]) <= 0) return k;
        return weights.length - 1;
    };
    const messages: Plan["messages"] = [];
    for (let m = 0; m < w.messages; m++) {
        const fed = w.federatedRooms > 0 && w.federatedUsers > 0 && r() < w.federatedMessageShare;
        const room = pickRoom(fed);
        const sender = fed ? Math.floor(r() * w.federatedUsers) : roomMembers[room][Math.floor(r() * roomMembers[room].length)];
        const len = w.messageChars[0] + Math.floor(r() * (w.messageChars[1] - w.messageChars[0]));
        let body = "";
        while (body.length < len) body += (body ? " " : "") + WORDS[Math.floor(r() * WORDS.length)];
        messages.push({ room, sender, fed, body });
    }
    const spread = (n: number, offset: number) =>
        new Map(Array.from({ length: n }, (_, i) => [Math.floor(((i + offset) * w.messages) / n), i] as [number, number]));
    return { userNames, fedNames, roomMembers, syncers, messages, mediaAt: spread(w.mediaUploads, 0.25), previewAt: spread(w.urlPreviews, 0.6) };
}
