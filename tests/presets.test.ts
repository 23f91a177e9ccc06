// The memory presets: a 512 MB droplet gets settings that fit it without the operator tuning knobs,
// a key set in the stack still wins, and the preview says which preset is in force and what it set.
import { ChatConfig, declaredKeys, MEMORY_PRESETS, mapSource, readConfig } from "../components/config";
import { synapseBuild } from "../components/chatService";
import { homeserverConfig } from "../components/synapse";
import { postgresTuning } from "../components/postgres";
import { BASE_CONFIG, SECRETS, runProgram } from "./harness";

const SMALL = "s-1vcpu-512mb-10gb";

function config(overrides: Record<string, string> = {}): ChatConfig {
    return readConfig(mapSource({ ...BASE_CONFIG, ...overrides }, SECRETS));
}

/** What Synapse and PostgreSQL would run with, from a config. */
function tuning(cfg: ChatConfig) {
    const hs = homeserverConfig(synapseBuild(cfg)) as any;
    return {
        cacheCeiling: hs.caches.cache_autotuning?.max_cache_memory_usage,
        cacheFactor: hs.caches.global_factor,
        pool: hs.database.args.cp_max,
        complexity: hs.limit_remote_rooms?.complexity,
        workMem: /work_mem = (\d+MB)/.exec(postgresTuning(cfg.postgres))?.[1],
        swapMb: cfg.swapSizeMb,
        journalMb: cfg.journalMaxMb,
    };
}

describe("memory presets", () => {
    test("the 1 GB droplet (the default size) runs with the defaults declared in Pulumi.yaml", () => {
        const cfg = config();
        expect(cfg.memoryPreset).toEqual({ name: "1gb", from: "dropletSize s-1vcpu-1gb", applied: {} });
        const declared = declaredKeys();
        expect(tuning(cfg)).toEqual({
            cacheCeiling: `${declared.synapseCacheMemoryMb.default}M`,
            cacheFactor: Number(declared.cacheFactor.default),
            pool: declared.databasePoolMax.default,
            complexity: Number(declared.remoteRoomComplexityLimit.default),
            workMem: `${declared.postgresWorkMemMb.default}MB`,
            swapMb: declared.swapSizeMb.default,
            journalMb: declared.journalMaxMb.default,
        });
    });

    test("the 512 MB droplet gets smaller caches, pool, per-query memory, swap and journal, with nothing set by hand", () => {
        const cfg = config({ dropletSize: SMALL });
        expect(cfg.memoryPreset.name).toBe("512mb");
        expect(cfg.memoryPreset.from).toBe(`dropletSize ${SMALL}`);
        expect(tuning(cfg)).toEqual({ cacheCeiling: "64M", cacheFactor: 0.05, pool: 2, complexity: 0.5, workMem: "2MB", swapMb: 1024, journalMb: 100 });
        // Each value is below the 1 GB one: the preset only ever shrinks.
        const big = config();
        expect(cfg.synapse.cacheMemoryMb).toBeLessThan(big.synapse.cacheMemoryMb);
        expect(cfg.synapse.databasePoolMax).toBeLessThan(big.synapse.databasePoolMax);
        expect(cfg.swapSizeMb).toBeLessThan(big.swapSizeMb);
    });

    test("a key set in the stack wins over the preset, and the preset says only what it set", () => {
        const cfg = config({ dropletSize: SMALL, synapseCacheMemoryMb: "96", swapSizeMb: "2048" });
        expect(cfg.synapse.cacheMemoryMb).toBe(96);
        expect(cfg.swapSizeMb).toBe(2048);
        expect(cfg.memoryPreset.applied).not.toHaveProperty("synapseCacheMemoryMb");
        expect(cfg.memoryPreset.applied).not.toHaveProperty("swapSizeMb");
        expect(cfg.memoryPreset.applied).toHaveProperty("databasePoolMax", "2");
    });

    test("a server the operator already has takes the preset it is told (auto is 1gb there)", () => {
        const existing = { hosting: "existing", sshHost: "203.0.113.7", dns: "none", acmeChallenge: "http", apexOnServer: "true" };
        expect(config(existing).memoryPreset.name).toBe("1gb");
        const small = config({ ...existing, memoryPreset: "512mb" });
        expect(small.memoryPreset).toMatchObject({ name: "512mb", from: "phillymesh-chat:memoryPreset" });
        expect(small.synapse.cacheMemoryMb).toBe(64);
    });

    test("an explicit preset beats the droplet size", () => {
        expect(config({ dropletSize: SMALL, memoryPreset: "1gb" }).synapse.cacheMemoryMb).toBe(Number(declaredKeys().synapseCacheMemoryMb.default));
    });

    test("an unknown preset fails at preview, naming the key, before anything is declared", async () => {
        await expect(runProgram({ ...BASE_CONFIG, memoryPreset: "256mb" }, SECRETS, { preview: true })).rejects.toThrow(
            /phillymesh-chat:memoryPreset must be one of auto, 1gb, 512mb \(got "256mb"\)/,
        );
    });

    test("every preset's values pass the checks of their keys (no preset can make a config invalid)", () => {
        for (const name of Object.keys(MEMORY_PRESETS)) {
            expect(() => config({ memoryPreset: name })).not.toThrow();
        }
    });

    test("the stack output names the preset and the values it set, so a preview of a size change shows them", async () => {
        const run = await runProgram({ ...BASE_CONFIG, dropletSize: SMALL }, SECRETS, { preview: true });
        expect(run.outputs.memoryTuning).toBe(
            `memory preset 512mb (from dropletSize ${SMALL}): synapseCacheMemoryMb 64, cacheFactor 0.05, databasePoolMax 2, postgresWorkMemMb 2, remoteRoomComplexityLimit 0.5, swapSizeMb 1024, journalMaxMb 100`,
        );
        const small = run.resources.find((r) => r.type === "digitalocean:index/droplet:Droplet");
        expect(small?.inputs.size).toBe(SMALL);
    });
});
