// Reading keys: every key is declared in Pulumi.yaml (type, description, default); the Reader reads
// that declaration for the defaults, so the engine and the unit tests see the same values, and it
// collects every problem before failing, so one preview names all the keys that need fixing.
import * as fs from "fs";
import * as path from "path";
import * as yaml from "js-yaml";
import * as pulumi from "@pulumi/pulumi";
import type { Check } from "./checks";

export const PROJECT = "phillymesh-chat";

/** Where the values come from: the stack (see source.ts), or a plain map in the tests. */
export interface ConfigSource {
    /** The stack's value of `key` (without the project prefix), or undefined when not set. */
    get(key: string): string | undefined;
    /** Whether the stack stores `key` encrypted. */
    isSecret(key: string): boolean;
}

interface Declared {
    readonly type: "string" | "integer" | "boolean" | "array";
    readonly default?: unknown;
    readonly secret?: boolean;
}

let declaredCache: Record<string, Declared> | undefined;

/** The `config:` block of Pulumi.yaml: the declared keys with their types and defaults. */
export function declaredKeys(): Record<string, Declared> {
    if (!declaredCache) {
        const project = yaml.load(fs.readFileSync(path.join(__dirname, "..", "..", "Pulumi.yaml"), "utf8")) as {
            config: Record<string, Declared>;
        };
        declaredCache = project.config;
    }
    return declaredCache;
}

export class Reader {
    readonly problems: string[] = [];
    /** Defaults that replace Pulumi.yaml's (a memory preset, presets.ts); a key set in the stack still wins. */
    private presetDefaults: Readonly<Record<string, string>> = {};

    constructor(private readonly source: ConfigSource) {}

    /** Whether the stack itself sets `key` (not a default). */
    isSet(key: string): boolean {
        return this.source.get(key) !== undefined;
    }

    usePresetDefaults(defaults: Readonly<Record<string, string>>): void {
        for (const key of Object.keys(defaults)) this.decl(key);
        this.presetDefaults = defaults;
    }

    private decl(key: string): Declared {
        const d = declaredKeys()[key];
        if (!d) throw new Error(`internal: config key '${key}' is read but not declared in Pulumi.yaml`);
        return d;
    }

    /** A problem not tied to one value's shape (e.g. two keys that do not fit together). */
    fail(text: string): void {
        this.problems.push(text);
    }

    problem(key: string, expected: string, shown?: string): void {
        const got = shown === undefined ? "" : ` (got ${JSON.stringify(shown.length > 80 ? shown.slice(0, 77) + "..." : shown)})`;
        this.problems.push(`${PROJECT}:${key} must be ${expected}${got}`);
    }

    /** Raw text of a key, or the preset's default, or its declared default; undefined when none exists. */
    private raw(key: string): string | undefined {
        const v = this.source.get(key);
        if (v !== undefined) return v;
        if (key in this.presetDefaults) return this.presetDefaults[key];
        const d = this.decl(key).default;
        if (d === undefined) return undefined;
        return typeof d === "string" ? d : JSON.stringify(d);
    }

    /** A key that must have a non-empty value (set, or defaulted in Pulumi.yaml) passing `check`. */
    required(key: string, check: Check, when?: string): string {
        const v = this.raw(key);
        if (v === undefined || v === "") {
            this.problems.push(`${PROJECT}:${key} is required${when ? ` ${when}` : ""}: \`pulumi config set ${key} <value>\``);
            return "";
        }
        const err = check(v);
        if (err) this.problem(key, err, v);
        return v;
    }

    /** A key that may be empty; when set it must pass `check`. */
    optional(key: string, check: Check): string {
        const v = this.raw(key) ?? "";
        const err = v === "" ? undefined : check(v);
        if (err) this.problem(key, err, v);
        return v;
    }

    oneOf<T extends string>(key: string, allowed: readonly T[]): T {
        const v = this.raw(key) ?? "";
        if (!allowed.includes(v as T)) this.problem(key, `one of ${allowed.join(", ")}`, v);
        return v as T;
    }

    int(key: string, min: number, max: number): number {
        const v = this.raw(key);
        const n = Number(v);
        if (v === undefined || !/^-?\d+$/.test(v.trim()) || n < min || n > max) {
            this.problem(key, `a whole number from ${min} to ${max}`, v);
            return min;
        }
        return n;
    }

    decimal(key: string, min: number, max: number): number {
        const v = this.raw(key);
        const n = Number(v);
        if (v === undefined || !/^\d+(\.\d+)?$/.test(v.trim()) || n < min || n > max) {
            this.problem(key, `a decimal number from ${min} to ${max}`, v);
            return min;
        }
        return n;
    }

    bool(key: string): boolean {
        const v = this.raw(key);
        if (v !== "true" && v !== "false") this.problem(key, "true or false", v);
        return v === "true";
    }

    list(key: string, check: Check): string[] {
        const v = this.raw(key) ?? "[]";
        let parsed: unknown;
        try {
            parsed = JSON.parse(v);
        } catch {
            parsed = undefined;
        }
        if (!Array.isArray(parsed) || parsed.some((x) => typeof x !== "string")) {
            this.problem(key, "a list of strings (set with `pulumi config set --path '" + key + "[0]' value`)", v);
            return [];
        }
        for (const item of parsed as string[]) {
            const err = check(item);
            if (err) this.problem(key, `a list of ${err}`, item);
        }
        return parsed as string[];
    }

    /** A secret: must be set, must be stored encrypted, and comes back as a secret Output. */
    secret(key: string, check?: Check, when?: string): pulumi.Output<string> {
        const v = this.source.get(key);
        if (v === undefined || v === "") {
            this.problems.push(`${PROJECT}:${key} is required${when ? ` ${when}` : ""}: \`pulumi config set --secret ${key} <value>\``);
            return pulumi.secret("");
        }
        // Optional secrets cannot be declared `secret: true` in Pulumi.yaml (the engine would reject
        // their empty default as unencrypted), so this is where a plain-text value is refused.
        if (!this.source.isSecret(key)) {
            this.problems.push(`${PROJECT}:${key} must be stored encrypted: \`pulumi config set --secret ${key} <value>\``);
        }
        const err = check ? check(v) : undefined;
        // Never echo a secret back, not even in an error.
        if (err) this.problem(key, err);
        return pulumi.secret(v);
    }

    /** A secret that may be left empty: undefined then; else as `secret`. */
    optionalSecret(key: string, check?: Check): pulumi.Output<string> | undefined {
        const v = this.source.get(key);
        return v === undefined || v === "" ? undefined : this.secret(key, check);
    }

    /** Throws one error listing every problem, or returns `value`. */
    done<T>(value: T): T {
        if (this.problems.length > 0) {
            const n = this.problems.length;
            throw new pulumi.RunError(
                `The stack configuration has ${n} problem${n === 1 ? "" : "s"}; nothing was changed:\n  - ${this.problems.join("\n  - ")}`,
            );
        }
        return value;
    }
}
