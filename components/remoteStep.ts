// One provisioning step: a script from files/steps run as root on the server over SSH. Its
// variables and the files it installs travel on stdin (quoted, see templates.ts), never in argv or
// `environment` (sshd drops that without AcceptEnv), so secrets stay out of process lists and shell
// history. The step runs again exactly when its stdin changes: its script, its files or its settings.
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import type { Target } from "./host";
import { FileMode, FileOwner, shellQuote, stepScript } from "./templates";

/** A file the step installs: lib.sh's `install_files`, called by the step's script, writes it. */
export interface ServerFile {
    /** Absolute path on the server. */
    readonly path: string;
    /** The whole content (a trailing newline is added on the server); may be a secret Output. */
    readonly content: pulumi.Input<string>;
    readonly mode: FileMode;
    readonly owner: FileOwner;
}

export interface RemoteStepArgs {
    readonly target: Target;
    /** The script under files/steps/ to run. */
    readonly script: string;
    /** Shell libraries under files/lib/ the step's script uses, sent after lib.sh and before it. */
    readonly libraries?: readonly string[];
    /** Variables for the script; values may be secret Outputs. */
    readonly env: Record<string, pulumi.Input<string>>;
    /**
     * The files the step installs (atomically, only when changed, never through a path a service
     * user controls) when its script calls `install_files`. Default none.
     */
    readonly files?: readonly ServerFile[];
    /** Whether any value in env or files is secret; the step's output is then kept secret too. Default false. */
    readonly handlesSecrets?: boolean;
    /**
     * What undoes the step when it leaves the program (its feature turned off) or the stack is
     * destroyed: a script under files/steps/, sent with lib.sh and these plain (never secret)
     * variables (and its own libraries under files/lib/, after lib.sh) as the command's `delete`.
     * Default none: leaving the program does nothing.
     */
    readonly teardown?: Teardown;
}

/** What undoes a step: a script under files/steps/, its plain variables, its libraries under files/lib/. */
export interface Teardown {
    readonly script: string;
    readonly env: Record<string, string>;
    readonly libraries?: readonly string[];
}

/** The `delete` command of a step with a teardown: the whole script in one single-quoted word. */
export function teardownCommand(sudo: boolean, teardown: Teardown): string {
    const script = stepScript(teardown.script, { STEP_NAME: teardown.script.replace(/\.sh$/, ""), ...teardown.env }, teardown.libraries);
    return `${sudo ? "sudo -n " : ""}bash -c ${shellQuote(script)}`;
}

/**
 * Reads stdin completely into a 0600 temp file before running it, so commands in the script that read
 * stdin (apt, psql) cannot swallow the rest of the script; the file is removed however the step ends.
 */
export function runnerCommand(sudo: boolean): string {
    const inner = `f=$(mktemp); trap 'rm -f "$f"' EXIT; cat >"$f"; bash "$f" </dev/null`;
    return `${sudo ? "sudo -n " : ""}bash -c '${inner.replace(/'/g, `'\\''`)}'`;
}

export class RemoteStep extends pulumi.ComponentResource {
    /** The step's output (its progress lines). */
    public readonly stdout: pulumi.Output<string>;
    /** The command resource, for dependsOn between steps. */
    public readonly command: command.remote.Command;

    constructor(name: string, args: RemoteStepArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:RemoteStep", name, {}, opts);
        const stepName = args.script.replace(/\.sh$/, "");
        const files = (args.files ?? []).map((f) => pulumi.all([f.content]).apply(([content]) => ({ path: f.path, mode: f.mode, owner: f.owner, content })));
        const script = pulumi
            .all([pulumi.all({ ...args.env, SERVER_ID: args.target.serverId }), pulumi.all(files)])
            .apply(([env, rendered]) => stepScript(args.script, { STEP_NAME: stepName, ...env }, args.libraries, rendered));
        const run = runnerCommand(args.target.sudo);
        this.command = new command.remote.Command(
            `${name}-run`,
            {
                connection: args.target.connection,
                create: run,
                update: run,
                ...(args.teardown ? { delete: teardownCommand(args.target.sudo, args.teardown) } : {}),
                stdin: script,
                // No `triggers`: the SDK marks them replaceOnChanges, so a version bump would show as
                // a replacement. A changed stdin (script, files, settings) is an in-place update,
                // which runs `update`.
                addPreviousOutputInEnv: false,
                logging: "stdoutAndStderr",
            },
            {
                parent: this,
                // Options of a component are not inherited by its children: pass the order on.
                dependsOn: opts?.dependsOn,
                additionalSecretOutputs: args.handlesSecrets ? ["stdout", "stderr"] : [],
                customTimeouts: { create: "30m", update: "30m" },
            },
        );
        this.stdout = this.command.stdout;
        this.registerOutputs({ stdout: this.stdout });
    }
}
