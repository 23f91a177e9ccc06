// The drills' world of data to lose or keep (re-exported by lib.ts): two users registered with an
// admin-made token, a private room with messages from both and a file; then what the users can
// still see of it after a drill. Everything goes to the server lib.ts acts on now.
import { createHash, randomBytes } from "node:crypto";
import { FED, HS, http, login, mx, mxOk, newRegistrationToken, register, type Session } from "./lib.ts";

export interface User {
    name: string;
    password: string;
    userId: string;
    /** from the registration */ token: string;
}
export interface World {
    tag: string;
    users: User[];
    roomId: string;
    roomName: string;
    /** Message bodies, in the order sent. */
    messages: string[];
    media: { mxc: string; sha256: string; size: number };
}

export function sha256(b: Uint8Array): string {
    return createHash("sha256").update(b).digest("hex");
}

let txn = 0;
export async function send(s: Session, roomId: string, content: Record<string, unknown>): Promise<string> {
    const id = `drill-${process.pid}-${Date.now()}-${++txn}`;
    const j = await mxOk("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${id}`, { token: s.token, body: content });
    return j.event_id as string;
}

export async function sendText(s: Session, roomId: string, body: string): Promise<string> {
    return send(s, roomId, { msgtype: "m.text", body });
}

/** Two users registered with an admin-made token, a private room, messages from both, a file. */
export async function seedWorld(tag: string): Promise<World> {
    const regToken = await newRegistrationToken(2);
    const users: User[] = [];
    const sessions: Session[] = [];
    for (const who of ["alice", "bob"]) {
        const name = `${tag}-${who}`;
        const password = randomBytes(12).toString("base64url");
        const r = await register(name, password, regToken);
        if (r.status !== 200) throw new Error(`registering ${name}: HTTP ${r.status}: ${r.text}`);
        users.push({ name, password, userId: r.json.user_id, token: r.json.access_token });
        sessions.push({ userId: r.json.user_id, token: r.json.access_token });
    }
    const [a, b] = sessions;
    const roomName = `${tag} drill room`;
    const room = await mxOk("POST", "/_matrix/client/v3/createRoom", {
        token: a.token,
        body: { preset: "private_chat", name: roomName, invite: [b.userId] },
    });
    const roomId = room.room_id as string;
    await mxOk("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, { token: b.token, body: {} });
    const messages: string[] = [];
    for (let i = 1; i <= 6; i++) {
        const s = i % 2 ? a : b;
        const body = `${tag} message ${i} from ${s.userId} ${randomBytes(4).toString("hex")}`;
        await sendText(s, roomId, body);
        messages.push(body);
    }
    const bytes = new Uint8Array(randomBytes(300 * 1024));
    const up = await mxOk("POST", `/_matrix/media/v3/upload?filename=${encodeURIComponent(`${tag}.bin`)}`, { token: a.token, raw: bytes });
    const mxc = up.content_uri as string;
    const fileBody = `${tag}.bin`;
    await send(a, roomId, { msgtype: "m.file", body: fileBody, url: mxc, info: { size: bytes.length, mimetype: "application/octet-stream" } });
    messages.push(fileBody);
    return { tag, users, roomId, roomName, messages, media: { mxc, sha256: sha256(bytes), size: bytes.length } };
}

/** The room's m.room.message bodies as a user sees them, oldest first. */
export async function roomMessages(s: Session, roomId: string): Promise<string[]> {
    const bodies: string[] = [];
    let from: string | undefined;
    for (let page = 0; page < 10; page++) {
        const q = new URLSearchParams({ dir: "b", limit: "100", ...(from ? { from } : {}) });
        const j = await mxOk("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?${q}`, { token: s.token });
        for (const ev of j.chunk ?? []) if (ev.type === "m.room.message" && typeof ev.content?.body === "string") bodies.push(ev.content.body);
        if (!j.end || (j.chunk ?? []).length === 0) break;
        from = j.end;
    }
    return bodies.reverse();
}

export async function downloadMedia(s: Session, mxc: string): Promise<Uint8Array> {
    const m = /^mxc:\/\/([^/]+)\/(.+)$/.exec(mxc);
    if (!m) throw new Error(`not an mxc URI: ${mxc}`);
    const r = await mx("GET", `/_matrix/client/v1/media/download/${m[1]}/${m[2]}`, { token: s.token });
    if (r.status !== 200) throw new Error(`download ${mxc}: HTTP ${r.status}: ${r.text.slice(0, 300)}`);
    return r.body;
}

/**
 * What the world's users can still see; the differences, empty when everything is there. With
 * login, each user logs in with the password (the proof that accounts survived); else the
 * registration's access token is used.
 */
export async function checkWorld(w: World, opts: { mustBeAbsent?: string[]; login?: boolean } = {}): Promise<string[]> {
    const problems: string[] = [];
    for (const u of w.users) {
        let s: Session = { userId: u.userId, token: u.token };
        if (opts.login) {
            try {
                s = await login(u.name, u.password);
            } catch (e) {
                problems.push(`${u.userId} cannot log in: ${String(e).slice(0, 200)}`);
                continue;
            }
        }
        const joined = await mxOk("GET", "/_matrix/client/v3/joined_rooms", { token: s.token });
        if (!(joined.joined_rooms as string[]).includes(w.roomId)) {
            problems.push(`${u.userId} is not in ${w.roomId}`);
            continue;
        }
        const name = await mx("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(w.roomId)}/state/m.room.name/`, { token: s.token });
        if (name.json?.name !== w.roomName) problems.push(`${u.userId}: room name ${JSON.stringify(name.json?.name)}, expected ${JSON.stringify(w.roomName)}`);
        const seen = await roomMessages(s, w.roomId);
        const missing = w.messages.filter((m) => !seen.includes(m));
        if (missing.length) problems.push(`${u.userId} misses ${missing.length} of ${w.messages.length} messages: ${JSON.stringify(missing)}`);
        const order = seen.filter((m) => w.messages.includes(m));
        if (!missing.length && JSON.stringify(order) !== JSON.stringify(w.messages)) problems.push(`${u.userId} sees the messages out of order`);
        const extra = (opts.mustBeAbsent ?? []).filter((m) => seen.includes(m));
        if (extra.length) problems.push(`${u.userId} sees messages that must be absent: ${JSON.stringify(extra)}`);
        try {
            const bytes = await downloadMedia(s, w.media.mxc);
            if (sha256(bytes) !== w.media.sha256) problems.push(`${u.userId}: ${w.media.mxc} has other bytes (${bytes.length} bytes, sha256 ${sha256(bytes)})`);
        } catch (e) {
            problems.push(`${u.userId}: ${String(e).slice(0, 300)}`);
        }
    }
    return problems;
}

/** The federation signing keys as published on :8448. */
export async function verifyKeys(): Promise<Record<string, { key: string }>> {
    const r = await http(`${FED}/_matrix/key/v2/server`);
    if (r.status !== 200) throw new Error(`${FED}/_matrix/key/v2/server: HTTP ${r.status}`);
    return r.json.verify_keys as Record<string, { key: string }>;
}

export async function synapseVersion(): Promise<string> {
    const r = await http(`${HS}/_matrix/federation/v1/version`, { timeoutMs: 10_000 });
    if (r.status !== 200) throw new Error(`federation version: HTTP ${r.status}`);
    return r.json.server.version as string;
}

export function randomTag(prefix: string): string {
    return `${prefix}${randomBytes(3).toString("hex")}`;
}
