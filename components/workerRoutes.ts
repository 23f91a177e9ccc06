// nginx in worker mode (synapseWorkers): which Synapse process answers which endpoint, exactly as
// Synapse's docs/workers.md lists them (tests/fixtures/synapse-worker-endpoints.txt holds those lists;
// tests/workerRoutes.test.ts routes every entry through the real nginx). The homeserver site keeps
// deciding what is exposed at all (the raw-path map in matrix.conf); this only picks the process.
import { PORTS } from "./layout";
import type { SynapseWorker } from "./workerLayout";

/**
 * The upstream groups. `sync`: a user's syncs on one worker (hash of the token's user part, as the
 * docs advise); `federation_inbound`: a remote server's transactions on one worker (hash of its
 * address); `room`: a room's pagination on one worker (hash of the path, which holds the room id);
 * `generic`: round robin; `media`: the media worker; `main`: the main process, which stays the writer
 * of every stream and serves everything not listed.
 */
export type Upstream = "main" | "media" | "sync" | "federation_inbound" | "room" | "generic";

export interface WorkerRoute {
    /** The regular expression, verbatim from docs/workers.md (media: the docs' prefixes, anchored). */
    readonly pattern: string;
    readonly upstream: Upstream;
    /** Only GET (and HEAD) requests: the docs' "can be handled for GET requests" list. */
    readonly readOnly?: boolean;
}

const routes = (upstream: Upstream, patterns: string[], readOnly = false): WorkerRoute[] => patterns.map((pattern) => ({ pattern, upstream, readOnly }));

/**
 * In the order nginx tries them (the first match wins). Not routed, so served by the main process:
 * the admin API (never exposed here), SSO (not configured), and the endpoints of the streams the main
 * process writes (typing, to-device, receipts; account data, push rules and presence except reads).
 */
export const WORKER_ROUTES: readonly WorkerRoute[] = [
    // synapse.app.media_repository: "all endpoints starting with" these.
    ...routes("media", ["^/_matrix/media/", "^/_matrix/client/v1/media/", "^/_matrix/federation/v1/media/"]),
    // The device_lists stream's endpoints "should be routed directly to" its writer: the main process.
    ...routes("main", [
        "^/_matrix/client/(r0|v3)/delete_devices$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/devices(/|$)",
        "^/_matrix/client/(r0|v3|unstable)/keys/upload",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/keys/device_signing/upload$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/keys/signatures/upload$",
    ]),
    // Sync requests: a user's on one worker.
    ...routes("sync", [
        "^/_matrix/client/(r0|v3)/sync$",
        "^/_matrix/client/(api/v1|r0|v3)/events$",
        "^/_matrix/client/(api/v1|r0|v3)/initialSync$",
        "^/_matrix/client/(api/v1|r0|v3)/rooms/[^/]+/initialSync$",
    ]),
    // Inbound federation transactions: "balanced by source IP".
    ...routes("federation_inbound", ["^/_matrix/federation/v1/send/"]),
    // Federation requests.
    ...routes("generic", [
        "^/_matrix/federation/v1/version$",
        "^/_matrix/federation/v1/event/",
        "^/_matrix/federation/v1/state/",
        "^/_matrix/federation/v1/state_ids/",
        "^/_matrix/federation/v1/backfill/",
        "^/_matrix/federation/v1/get_missing_events/",
        "^/_matrix/federation/v1/publicRooms",
        "^/_matrix/federation/v1/query/",
        "^/_matrix/federation/v1/make_join/",
        "^/_matrix/federation/v1/make_leave/",
        "^/_matrix/federation/(v1|v2)/send_join/",
        "^/_matrix/federation/(v1|v2)/send_leave/",
        "^/_matrix/federation/v1/make_knock/",
        "^/_matrix/federation/v1/send_knock/",
        "^/_matrix/federation/(v1|v2)/invite/",
        "^/_matrix/federation/v1/event_auth/",
        "^/_matrix/federation/v1/timestamp_to_event/",
        "^/_matrix/federation/v1/exchange_third_party_invite/",
        "^/_matrix/federation/v1/user/devices/",
        "^/_matrix/key/v2/query",
        "^/_matrix/federation/v1/hierarchy/",
    ]),
    // Client API requests (the device_lists ones are above).
    ...routes("generic", [
        "^/_matrix/client/(api/v1|r0|v3|unstable)/createRoom$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/publicRooms$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/joined_members$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/context/.*$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/members$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/state$",
        "^/_matrix/client/v1/rooms/.*/hierarchy$",
        "^/_matrix/client/(v1|unstable)/rooms/.*/relations/",
        "^/_matrix/client/v1/rooms/.*/threads$",
        "^/_matrix/client/unstable/im.nheko.summary/summary/.*$",
        "^/_matrix/client/v1/room_summary/.*$",
        "^/_matrix/client/(r0|v3|unstable)/account/3pid$",
        "^/_matrix/client/(r0|v3|unstable)/account/whoami$",
        "^/_matrix/client/(r0|v3|unstable)/account/deactivate$",
        "^/_matrix/client/versions$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/voip/turnServer$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/event/",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/joined_rooms$",
        "^/_matrix/client/v1/rooms/.*/timestamp_to_event$",
        "^/_matrix/client/(api/v1|r0|v3|unstable/.*)/rooms/.*/aliases",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/search$",
        "^/_matrix/client/(r0|v3|unstable)/user/.*/filter(/|$)",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/directory/room/.*$",
        "^/_matrix/client/(r0|v3|unstable)/capabilities$",
        "^/_matrix/client/(r0|v3|unstable)/notifications$",
        // Encryption requests.
        "^/_matrix/client/(r0|v3|unstable)/keys/query$",
        "^/_matrix/client/(r0|v3|unstable)/keys/changes$",
        "^/_matrix/client/(r0|v3|unstable)/keys/claim$",
        "^/_matrix/client/(r0|v3|unstable)/room_keys/",
        // Registration/login requests.
        "^/_matrix/client/(api/v1|r0|v3|unstable)/login$",
        "^/_matrix/client/(r0|v3|unstable)/register$",
        "^/_matrix/client/(r0|v3|unstable)/register/available$",
        "^/_matrix/client/v1/register/m.login.registration_token/validity$",
        "^/_matrix/client/(r0|v3|unstable)/password_policy$",
        // Event sending requests.
        "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/redact",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/send",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/state/",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/(join|invite|leave|ban|unban|kick)$",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/join/",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/knock/",
        "^/_matrix/client/(api/v1|r0|v3|unstable)/profile/",
        // User directory search requests.
        "^/_matrix/client/(r0|v3|unstable)/user_directory/search$",
        // Unstable MSC4140 support.
        "^/_matrix/client/unstable/org.matrix.msc4140/delayed_events(/.*/restart)?$",
    ]),
    // "Additionally, the following REST endpoints can be handled for GET requests".
    ...routes(
        "generic",
        [
            "^/_matrix/client/(api/v1|r0|v3|unstable)/pushrules/",
            "^/_matrix/client/(r0|v3|unstable)/.*/tags",
            "^/_matrix/client/(r0|v3|unstable)/.*/account_data",
            "^/_matrix/client/(api/v1|r0|v3|unstable)/presence/",
        ],
        true,
    ),
    // Pagination: "all requests for a given room must be routed to the same instance".
    ...routes("room", ["^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/messages$"]),
];

/** nginx's name of an upstream group. */
export const upstreamName = (u: Upstream): string => `phillymesh_chat_${u}`;

/** The variable matrix.conf proxies to in worker mode (it proxies to 127.0.0.1:8008 without workers). */
export const ROUTE_VARIABLE = "$phillymesh_chat_synapse";

/** One key of the routing map: "<method> <path>" against the documented pattern. */
export function mapKey(r: WorkerRoute): string {
    if (!r.pattern.startsWith("^") || /["\\\s{};]/.test(r.pattern))
        throw new Error(`route pattern ${r.pattern} must start with ^ and hold no quote, backslash, space, brace or semicolon`);
    return `~^${r.readOnly ? "(GET|HEAD)" : "[A-Z]+"} ${r.pattern.slice(1)}`;
}

/**
 * /etc/nginx/conf.d/phillymesh-chat-workers.conf (Debian's nginx.conf includes conf.d/ in its http
 * block): the upstream groups and the map that picks one for each request.
 */
export function workerRouting(workers: readonly SynapseWorker[]): string {
    const generic = workers.filter((w) => w.kind === "generic").map((w) => `server 127.0.0.1:${w.port};`);
    const media = workers.filter((w) => w.kind === "media").map((w) => `server 127.0.0.1:${w.port};`);
    if (generic.length === 0 || media.length === 0) throw new Error("worker routing needs at least one generic worker and the media worker");
    const upstream = (u: Upstream, servers: string[], balance?: string) =>
        [`upstream ${upstreamName(u)} {`, ...(balance ? [`    ${balance};`] : []), ...servers.map((s) => `    ${s}`), "}"].join("\n");
    return [
        "# Managed by phillymesh-chat: Synapse's worker mode (synapseWorkers). Which process answers which",
        "# endpoint, as Synapse's docs/workers.md lists them; the homeserver site still decides what is exposed.",
        upstream("main", [`server 127.0.0.1:${PORTS.synapse};`]),
        upstream("media", media),
        upstream("generic", generic),
        upstream("sync", generic, "hash $phillymesh_chat_sync_user consistent"),
        upstream("federation_inbound", generic, "hash $remote_addr consistent"),
        upstream("room", generic, "hash $uri consistent"),
        "",
        "# A user's syncs go to one worker: the user part of the access token (header, else query), as the docs show.",
        "map $arg_access_token $phillymesh_chat_token_user {",
        "    default $arg_access_token;",
        '    "~syt_(?<phillymesh_chat_arg_user>.*?)_.*" $phillymesh_chat_arg_user;',
        "}",
        "map $http_authorization $phillymesh_chat_sync_user {",
        "    default $http_authorization;",
        '    "~Bearer syt_(?<phillymesh_chat_header_user>.*?)_.*" $phillymesh_chat_header_user;',
        '    "" $phillymesh_chat_token_user;',
        "}",
        "",
        "# The first pattern that matches wins; anything else goes to the main process.",
        `map "$request_method $uri" ${ROUTE_VARIABLE} {`,
        `    default ${upstreamName("main")};`,
        ...WORKER_ROUTES.map((r) => `    "${mapKey(r)}" ${upstreamName(r.upstream)};`),
        "}",
    ].join("\n");
}
