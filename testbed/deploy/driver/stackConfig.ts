// deploy.ts --config FILE.json: the file's shape ({ "config": {...}, "secrets": {...} }, keys without
// the "phillymesh-chat:" prefix) and how it becomes the stack's whole configuration.
import * as fs from "fs";
import { Stack } from "@pulumi/pulumi/automation";
import { log, PROJECT } from "./engine";

export interface ConfigFile {
    config: Record<string, unknown>;
    secrets: Record<string, unknown>;
}

export function readConfigFile(file: string): ConfigFile {
    const parsed = JSON.parse(fs.readFileSync(file, "utf8")) as Partial<ConfigFile>;
    const obj = (v: unknown, what: string) => {
        if (v === undefined) return {};
        if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error(`${file}: "${what}" must be an object`);
        return v as Record<string, unknown>;
    };
    const out = { config: obj(parsed.config, "config"), secrets: obj(parsed.secrets, "secrets") };
    for (const k of [...Object.keys(out.config), ...Object.keys(out.secrets)]) {
        if (k.includes(":")) throw new Error(`${file}: write key '${k}' without a namespace (it is ${PROJECT}:<key>)`);
        if (k in out.config && k in out.secrets) throw new Error(`${file}: '${k}' is in both config and secrets`);
    }
    return out;
}

export const asText = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v));

/**
 * Makes the stack's configuration exactly the file's. Strings, numbers and booleans are set with
 * setAllConfig (secrets with secret: true); lists and maps with setAllConfigJson as object values,
 * since the engine checks declared `type: array` keys against the stored value's type.
 */
export async function applyConfig(stack: Stack, file: ConfigFile): Promise<void> {
    type Wanted = { value: string; secret: boolean; object: boolean };
    const wanted: Record<string, Wanted> = {};
    const add = (values: Record<string, unknown>, secret: boolean) => {
        for (const [k, v] of Object.entries(values)) wanted[`${PROJECT}:${k}`] = { value: asText(v), secret, object: v !== null && typeof v === "object" };
    };
    add(file.config, false);
    add(file.secrets, true);
    // What Pulumi.<stack>.yaml holds (getAllConfig also lists the Pulumi.yaml defaults).
    const onStack = new Set(Object.keys((await stack.workspace.stackSettings(stack.name).catch(() => undefined))?.config ?? {}));
    const current = await stack.getAllConfig();
    const stale = [...onStack].filter((k) => !(k in wanted));
    if (stale.length > 0) await stack.removeAllConfig(stale);
    const changed = Object.entries(wanted).filter(
        // (getAllConfig does not say whether a stored value is an object: objects are always set.)
        ([k, w]) => w.object || !onStack.has(k) || current[k]?.value !== w.value || Boolean(current[k]?.secret) !== w.secret,
    );
    const scalars = changed.filter(([, w]) => !w.object);
    const objects = changed.filter(([, w]) => w.object);
    if (scalars.length > 0) await stack.setAllConfig(Object.fromEntries(scalars.map(([k, w]) => [k, { value: w.value, secret: w.secret }])));
    if (objects.length > 0) {
        await stack.setAllConfigJson(
            JSON.stringify(Object.fromEntries(objects.map(([k, w]) => [k, { value: w.value, objectValue: JSON.parse(w.value), secret: w.secret }]))),
        );
    }
    log(`config: ${Object.keys(wanted).length} keys (${changed.length} set, ${stale.length} removed)`);
}
