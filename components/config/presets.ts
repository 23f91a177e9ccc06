// Memory presets: the defaults of the tuning keys for the server's memory, so that an operator who
// picks the 512 MB droplet gets settings that fit it without learning the knobs. A preset only changes
// defaults: a key set in the stack always wins. Pulumi.yaml's defaults are the 1 GB preset.
import { PROJECT } from "./reader";

export type MemoryPresetName = "1gb" | "512mb";

/** Per preset, the tuning keys whose default differs from Pulumi.yaml's (values as the stack would hold them). */
export const MEMORY_PRESETS: Readonly<Record<MemoryPresetName, Readonly<Record<string, string>>>> = {
    "1gb": {},
    // s-1vcpu-512mb-10gb. The 1 GB preset's steady state is about 240 MB (bench/results), Synapse
    // about 155 MB of it: on 512 MB what must shrink is what grows — Synapse's caches (the ceiling
    // cache autotuning evicts at, and their sizes), its database pool and PostgreSQL's per-query
    // memory — and a big room joined by mistake hurts twice as much, so the complexity limit halves.
    // The swap file and the journal sit on the 10 GB root disk: both get smaller.
    "512mb": {
        synapseCacheMemoryMb: "64",
        cacheFactor: "0.05",
        databasePoolMax: "2",
        postgresWorkMemMb: "2",
        remoteRoomComplexityLimit: "0.5",
        swapSizeMb: "1024",
        journalMaxMb: "100",
    },
};

/** The preset in force: where it came from, and the values it gave keys the stack leaves unset. */
export interface MemoryPreset {
    readonly name: MemoryPresetName;
    /** "memoryPreset", or "dropletSize <slug>" when auto picked it. */
    readonly from: string;
    /** key → value for every preset key the stack does not set (what the preset actually decided). */
    readonly applied: Readonly<Record<string, string>>;
}

/** DigitalOcean's 512 MB sizes have "512mb" in their slug (s-1vcpu-512mb-10gb). */
export function presetForDropletSize(size: string): MemoryPresetName {
    return /(^|-)512mb(-|$)/.test(size) ? "512mb" : "1gb";
}

/**
 * Resolves memoryPreset ("auto", "1gb", "512mb"). auto: from dropletSize with hosting digitalocean,
 * else 1gb (a server the operator already has is sized by them). `isSet` says whether the stack sets a key.
 */
export function resolveMemoryPreset(setting: string, dropletSize: string | undefined, isSet: (key: string) => boolean): MemoryPreset {
    const name: MemoryPresetName = setting === "auto" ? (dropletSize ? presetForDropletSize(dropletSize) : "1gb") : (setting as MemoryPresetName);
    const from = setting === "auto" && dropletSize ? `dropletSize ${dropletSize}` : `${PROJECT}:memoryPreset`;
    const applied = Object.fromEntries(Object.entries(MEMORY_PRESETS[name] ?? {}).filter(([key]) => !isSet(key)));
    return { name, from, applied };
}

/** One line for the preview and the stack output: the preset and what it set. */
export function describeMemoryPreset(p: MemoryPreset): string {
    const values = Object.entries(p.applied).map(([k, v]) => `${k} ${v}`);
    return `memory preset ${p.name} (from ${p.from})${values.length > 0 ? `: ${values.join(", ")}` : ": the defaults in Pulumi.yaml"}`;
}
