// Where config values come from. The stack's config is read through the SDK; a plain map serves the
// unit tests (and anything else that builds a config without an engine).
import * as pulumi from "@pulumi/pulumi";
import { ConfigSource, PROJECT } from "./reader";
// Not in the SDK's typings, but exported by it: whether the stack stores a key encrypted. Used here
// and nowhere else, so the rest of the program never touches the SDK's internals.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { isConfigSecret } = require("@pulumi/pulumi/runtime/config") as { isConfigSecret(key: string): boolean };

/** The current stack's configuration. */
export function stackConfigSource(): ConfigSource {
    const cfg = new pulumi.Config(PROJECT);
    return { get: (key) => cfg.get(key), isSecret: (key) => isConfigSecret(`${PROJECT}:${key}`) };
}

/** Plain values; the keys in `secrets` count as stored encrypted. */
export function mapSource(values: Record<string, string>, secrets: Record<string, string> = {}): ConfigSource {
    return {
        get: (key) => (key in secrets ? secrets[key] : values[key]),
        isSecret: (key) => key in secrets,
    };
}
