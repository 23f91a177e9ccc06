// The workload's users and rooms: the server's users (a few through registration tokens, as a
// person in Element would, the rest through the admin API), the partner's users, the rooms and the
// joins, local and over federation. Afterwards the partner's users leave again.
import { adminBatch, call, MatrixError } from "./matrix.ts";
import { say } from "./testbed.ts";
import type { Homeserver, Workload } from "./workload.ts";
import type { Plan } from "./workloadPlan.ts";

/** A logged-in user: the client API base of its server and its access token. */
export interface Client {
    userId: string;
    token: string;
    base: string;
}

/** The users and rooms the messages go through: `clients[i]` is local user i, `roomIds[k]` room k. */
export interface Population {
    clients: Client[];
    fedClients: Client[];
    roomIds: string[];
}

/** Makes the users (on the server and the partner), logs them in, makes the rooms and joins them. */
export async function setUpUsersAndRooms(w: Workload, plan: Plan, target: Homeserver, partner: Homeserver, errors: string[]): Promise<Population> {
    // Users. A few register as a person would (registration token, through nginx); registration
    // is rate-limited per address, so the rest are made through the admin API.
    const password = "bench-" + w.seed.toString(36) + "-pw";
    const [[st, tok]] = await adminBatch(target.admin, [["POST", "/_synapse/admin/v1/registration_tokens/new", { uses_allowed: w.tokenRegisteredUsers }]]);
    if (st !== 200) throw new Error(`registration token: ${st} ${JSON.stringify(tok)}`);
    const clients: Client[] = new Array(w.users);
    for (let i = 0; i < w.tokenRegisteredUsers; i++) {
        const first = await registerProbe(target.base, plan.userNames[i], password);
        const res = await call<{ user_id: string; access_token: string }>(target.base, undefined, "POST", "/_matrix/client/v3/register", {
            username: plan.userNames[i],
            password,
            initial_device_display_name: "bench",
            auth: { type: "m.login.registration_token", token: tok.token, session: first },
        }).catch(async (e: unknown) => {
            // Some versions ask for a dummy stage after the token.
            if (e instanceof MatrixError && e.status === 401) {
                return call<{ user_id: string; access_token: string }>(target.base, undefined, "POST", "/_matrix/client/v3/register", {
                    username: plan.userNames[i],
                    password,
                    auth: { type: "m.login.dummy", session: first },
                });
            }
            throw e;
        });
        clients[i] = { userId: res.user_id, token: res.access_token, base: target.base };
    }
    const uid = (i: number) => `@${plan.userNames[i]}:${target.domain}`;
    const adminReqs: [string, string, unknown?][] = [];
    for (let i = w.tokenRegisteredUsers; i < w.users; i++) {
        // No password (it would cost a bcrypt hash each): their tokens come from the admin API.
        adminReqs.push(["PUT", `/_synapse/admin/v2/users/${encodeURIComponent(uid(i))}`, { displayname: `Bench user ${i}` }]);
    }
    for (let i = 0; i < w.users; i++) {
        // The benchmark drives 50 people's traffic from one address at a fixed rate: Synapse's
        // per-user message rate limit is lifted for its users (admin API), as for a bridge or bot.
        adminReqs.push(["POST", `/_synapse/admin/v1/users/${encodeURIComponent(uid(i))}/override_ratelimit`, { messages_per_second: 0, burst_count: 0 }]);
    }
    for (let i = w.tokenRegisteredUsers; i < w.users; i++) {
        // Password login is rate-limited per address (rc_login): tokens come from the admin API.
        adminReqs.push(["POST", `/_synapse/admin/v1/users/${encodeURIComponent(uid(i))}/login`, {}]);
    }
    const res = await adminBatch(target.admin, adminReqs);
    const bad = res.filter(([s]) => s >= 300);
    if (bad.length) throw new Error(`admin API (users on ${target.domain}): ${bad.length} failed, e.g. ${JSON.stringify(bad[0])}`);
    const logins = res.slice(res.length - (w.users - w.tokenRegisteredUsers));
    for (let i = w.tokenRegisteredUsers; i < w.users; i++) {
        clients[i] = { userId: uid(i), token: String(logins[i - w.tokenRegisteredUsers][1].access_token), base: target.base };
    }

    // The partner's users (kept between runs; made or updated idempotently).
    const fuid = (i: number) => `@${plan.fedNames[i]}:${partner.domain}`;
    const fres = await adminBatch(partner.admin, [
        ...plan.fedNames.map(
            (_, i) =>
                ["PUT", `/_synapse/admin/v2/users/${encodeURIComponent(fuid(i))}`, { password, displayname: `Partner user ${i}` }] as [string, string, unknown],
        ),
        ...plan.fedNames.map(
            (_, i) =>
                ["POST", `/_synapse/admin/v1/users/${encodeURIComponent(fuid(i))}/override_ratelimit`, { messages_per_second: 0, burst_count: 0 }] as [
                    string,
                    string,
                    unknown,
                ],
        ),
        ...plan.fedNames.map((_, i) => ["POST", `/_synapse/admin/v1/users/${encodeURIComponent(fuid(i))}/login`, {}] as [string, string, unknown]),
    ]);
    if (fres.some(([s]) => s >= 300)) throw new Error(`admin API (users on ${partner.domain}): ${JSON.stringify(fres.find(([s]) => s >= 300))}`);
    const fedClients: Client[] = plan.fedNames.map((_, i) => ({
        userId: fuid(i),
        token: String(fres[2 * w.federatedUsers + i][1].access_token),
        base: partner.base,
    }));

    // Rooms (public join rule, not in the directory), joins.
    const roomIds: string[] = [];
    for (let k = 0; k < w.rooms; k++) {
        const creator = clients[plan.roomMembers[k][0]];
        const r = await call<{ room_id: string }>(creator.base, creator.token, "POST", "/_matrix/client/v3/createRoom", {
            preset: "public_chat",
            visibility: "private",
            name: `Bench room ${k}${k < w.federatedRooms ? " (federated)" : ""}`,
            topic: "benchmark",
        });
        roomIds.push(r.room_id);
    }
    const joins: (() => Promise<unknown>)[] = [];
    plan.roomMembers.forEach((members, k) => {
        for (const u of members.slice(1))
            joins.push(() => call(clients[u].base, clients[u].token, "POST", `/_matrix/client/v3/join/${encodeURIComponent(roomIds[k])}`, {}));
    });
    await pool(joins, w.sendConcurrency, errors);
    const fedJoinT0 = performance.now();
    for (let k = 0; k < w.federatedRooms; k++) {
        for (const f of fedClients) {
            await call(
                f.base,
                f.token,
                "POST",
                `/_matrix/client/v3/join/${encodeURIComponent(roomIds[k])}?server_name=${encodeURIComponent(target.domain)}`,
                {},
            ).catch((e: unknown) => {
                errors.push(`federated join ${f.userId} -> room ${k}: ${String(e)}`);
            });
        }
    }
    say(
        `${target.server.name}: ${w.users} users, ${w.rooms} rooms, ${joins.length} joins, federated joins in ${((performance.now() - fedJoinT0) / 1000).toFixed(1)}s`,
    );
    return { clients, fedClients, roomIds };
}

/** Leaves the partner tidy: its users leave this server's rooms (the server is wiped next run). */
export async function partnerUsersLeave(w: Workload, people: Population): Promise<void> {
    const { fedClients, roomIds } = people;
    for (const f of fedClients) {
        for (let k = 0; k < w.federatedRooms; k++) {
            await call(f.base, f.token, "POST", `/_matrix/client/v3/rooms/${encodeURIComponent(roomIds[k])}/leave`, {}).catch(() => undefined);
        }
        await call(f.base, f.token, "POST", "/_matrix/client/v3/logout", {}).catch(() => undefined);
    }
}

/** The registration's first (unauthenticated) request: returns the UIA session. */
async function registerProbe(base: string, username: string, password: string): Promise<string> {
    try {
        await call(base, undefined, "POST", "/_matrix/client/v3/register", { username, password });
    } catch (e) {
        if (e instanceof MatrixError && e.status === 401) return String((e.body as { session?: string }).session);
        throw e;
    }
    throw new Error("registration succeeded without a token: the server is not in registration: token mode");
}

/** Runs the tasks with at most n at a time; a failure is recorded in errors, not thrown. */
async function pool(tasks: (() => Promise<unknown>)[], n: number, errors: string[]): Promise<void> {
    let i = 0;
    await Promise.all(
        Array.from({ length: n }, async () => {
            while (i < tasks.length) {
                const t = tasks[i++];
                await t().catch((e: unknown) => errors.push(String(e)));
            }
        }),
    );
}
