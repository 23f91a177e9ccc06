// What the stand-in's providers share with a Terraform provider's machinery (terraform-plugin-sdk,
// which terraform-provider-digitalocean is built on): the plan's diff of old outputs against new
// inputs (ForceNew, Optional+Computed, TypeSet) and the ids it makes.
//
// Serialized into the state with the providers (the SDK's function serializer captures what they
// use, from this module and the ones it imports) and run in the dynamic provider's process: plain
// functions and constants only, requiring what they need themselves.
import type * as pulumi from "@pulumi/pulumi";
import { canon } from "../shimKit";

/* eslint-disable @typescript-eslint/no-explicit-any */

/** A TypeSet: order and duplicates do not matter. */
function canonSet(v: unknown): string {
    if (!Array.isArray(v) || v.length === 0) return "[]";
    return `[${[...new Set(v.map(canon))].sort().join(",")}]`;
}

/** Diff of old outputs against new inputs, TF-style: `forceNew` keys replace, `update` keys update;
 * `computed` (Optional+Computed) keys left out of the config keep their value. */
export function tfDiff(
    olds: any,
    news: any,
    spec: {
        forceNew: string[];
        update: string[];
        computed?: string[];
        sets?: string[];
        defaults?: Record<string, unknown>;
        normalize?: Record<string, (v: any) => any>;
    },
): pulumi.dynamic.DiffResult {
    const replaces: string[] = [];
    let changes = false;
    for (const k of [...spec.forceNew, ...spec.update]) {
        if (spec.computed?.includes(k) && (news[k] === undefined || news[k] === null)) continue;
        const norm = spec.normalize?.[k] ?? ((v: any) => v);
        const dflt = spec.defaults?.[k];
        const o = norm(olds[k] ?? dflt);
        const n = norm(news[k] ?? dflt);
        const same = spec.sets?.includes(k) ? canonSet(o) === canonSet(n) : canon(o) === canon(n);
        if (same) continue;
        changes = true;
        if (spec.forceNew.includes(k)) replaces.push(k);
    }
    return { changes, replaces };
}

/** terraform-plugin-sdk's id.PrefixedUniqueId: prefix + a timestamp + a counter. */
export function prefixedUniqueId(prefix: string): string {
    const t = new Date().toISOString().replace(/[-:TZ.]/g, "");
    return `${prefix}${t}${String(Math.floor(Math.random() * 1e8)).padStart(8, "0")}`;
}

/* eslint-enable @typescript-eslint/no-explicit-any */
