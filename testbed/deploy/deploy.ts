// Runs the real program (index.ts) through the real Pulumi engine (the CLI that scripts/engine.sh
// builds), with stand-ins for the providers whose binaries cannot be built or reach nothing here:
// remote.Command (commandShim.ts), @pulumi/digitalocean and @pulumi/cloudflare (digitalocean/,
// cloudflare/: droplets are testbed guests, records go to the testbed DNS). The Node language host
// cannot be built either, so the program runs *inline* through the Automation API: this process hosts
// the program (driver/program.ts) and the CLI drives it.
//
//   PATH=$PWD/node_modules/.bin:$PATH
//   ts-node --transpile-only testbed/deploy/deploy.ts up       --stack NAME --config FILE.json [--events OUT.json] [--dns-hook CMD] [--rerun-steps]
//   ts-node --transpile-only testbed/deploy/deploy.ts preview  --stack NAME [--config FILE.json] [--expect-no-changes] [--forbid-replace] [--events OUT.json]
//   ts-node --transpile-only testbed/deploy/deploy.ts outputs  --stack NAME [--show-secrets]
//   ts-node --transpile-only testbed/deploy/deploy.ts destroy  --stack NAME
//   ts-node --transpile-only testbed/deploy/deploy.ts export   --stack NAME [--show-secrets]
//   ts-node --transpile-only testbed/deploy/deploy.ts forget   --stack NAME   (pulumi stack rm --force)
//
// FILE.json: { "config": { "domain": "phillymesh.test", ... }, "secrets": { "postgresPassword": "...", ... } }
// (keys without the "phillymesh-chat:" prefix). It is the stack's whole configuration: keys set
// earlier and missing from the file are removed. Lists are set as lists (the engine checks
// `type: array`), numbers and booleans as their text.
//
// --dns-hook CMD (up only): the stand-in for Cloudflare with `dns: none`. As soon as the program's
// `dnsRecords` output is known, `bash -c CMD` gets it as JSON on stdin (e.g. testbed/dns-load.sh -
// NAME), and no provisioning step starts before it has succeeded (certificates need the records).
// --events OUT.json: when each resource's step started and ended, as seen in the engine's events.
// --rerun-steps (up only): every provisioning step (the `*-run` commands) runs again, as
// `pulumi up --replace <urn>` of each would do, whether or not its inputs changed.
//
// Environment: PHILLYMESH_TESTBED_STATE (default /var/tmp/phillymesh-testbed/state: the file
// backend in backend/, PULUMI_HOME in home/, and per stack a workspace work/<stack>/ holding a copy
// of Pulumi.yaml and Pulumi.<stack>.yaml with the encrypted config), PULUMI_CONFIG_PASSPHRASE
// (default a fixed testbed passphrase), PULUMI_ENGINE_DIR (default: `scripts/engine.sh --partial`).
//
// The engine's progress goes to stdout; timings and summaries to stderr; `outputs` and `export`
// print JSON on stdout, secrets as "[secret]" / ciphertext unless --show-secrets. Any secret value
// of the config file that shows up in the engine's output is replaced by [secret:KEY] and makes the
// command exit 3.
//
// This file is the command line; its parts are in driver/: engine.ts (the CLI's environment),
// program.ts (the inline program), stackConfig.ts (FILE.json), progress.ts (output, timings, verdicts).
import * as childProcess from "child_process";
import * as fs from "fs";
import * as path from "path";
import { LocalWorkspace, PulumiCommand } from "@pulumi/pulumi/automation";
import { cliEnv, engineDir, log, PROJECT, projectSettings, since, STATE_DIR } from "./driver/engine";
import { makeProgram } from "./driver/program";
import { Guard, previewVerdict, summary, Timeline } from "./driver/progress";
import { applyConfig, readConfigFile } from "./driver/stackConfig";

const USAGE = `usage: deploy.ts up --stack NAME --config FILE.json [--events OUT.json] [--dns-hook CMD] [--rerun-steps]
       deploy.ts preview --stack NAME [--config FILE.json] [--expect-no-changes] [--forbid-replace] [--events OUT.json]
       (up and preview also take --program DIR: run the program of another checkout, e.g. the last landed one)
       deploy.ts outputs --stack NAME [--show-secrets]
       deploy.ts destroy --stack NAME
       deploy.ts export --stack NAME [--show-secrets]
       deploy.ts forget --stack NAME`;

interface Args {
    op: "up" | "preview" | "outputs" | "destroy" | "export" | "forget";
    stack: string;
    config?: string;
    events?: string;
    dnsHook?: string;
    expectNoChanges: boolean;
    forbidReplace: boolean;
    program?: string;
    showSecrets: boolean;
    rerunSteps: boolean;
}

class UsageError extends Error {}

function parseArgs(argv: string[]): Args {
    const [op, ...rest] = argv;
    if (!["up", "preview", "outputs", "destroy", "export", "forget"].includes(op)) throw new UsageError(`unknown operation '${op ?? ""}'`);
    const a: Args = { op: op as Args["op"], stack: "", expectNoChanges: false, forbidReplace: false, showSecrets: false, rerunSteps: false };
    for (let i = 0; i < rest.length; i++) {
        const value = () => {
            const v = rest[++i];
            if (v === undefined) throw new UsageError(`${rest[i - 1]} needs a value`);
            return v;
        };
        switch (rest[i]) {
            case "--stack":
                a.stack = value();
                break;
            case "--config":
                a.config = path.resolve(value());
                break;
            case "--events":
                a.events = path.resolve(value());
                break;
            case "--dns-hook":
                a.dnsHook = value();
                break;
            case "--expect-no-changes":
                a.expectNoChanges = true;
                break;
            case "--forbid-replace":
                a.forbidReplace = true;
                break;
            case "--program":
                a.program = path.resolve(value());
                break;
            case "--show-secrets":
                a.showSecrets = true;
                break;
            case "--rerun-steps":
                a.rerunSteps = true;
                break;
            default:
                throw new UsageError(`unknown argument '${rest[i]}'`);
        }
    }
    if (!/^[A-Za-z0-9_.-]+$/.test(a.stack)) throw new UsageError("--stack NAME is required (letters, digits, _ . -)");
    if (a.op === "up" && !a.config) throw new UsageError("up needs --config FILE.json");
    if (a.config && !["up", "preview"].includes(a.op)) throw new UsageError("--config is for up and preview");
    if (a.dnsHook && a.op !== "up") throw new UsageError("--dns-hook is for up");
    if (a.rerunSteps && a.op !== "up") throw new UsageError("--rerun-steps is for up");
    if (a.program && !["up", "preview"].includes(a.op)) throw new UsageError("--program is for up and preview");
    if (a.program && !fs.existsSync(path.join(a.program, "index.ts"))) throw new UsageError(`--program ${a.program}: no index.ts there`);
    return a;
}

/** The guard of this run, also used on the error path. */
let activeGuard: Guard | undefined;

// --- main --------------------------------------------------------------------------------------

async function main(): Promise<number> {
    const args = parseArgs(process.argv.slice(2));
    const tStart = Date.now();
    const file = args.config ? readConfigFile(args.config) : undefined;
    const guard = (activeGuard = new Guard(file));
    const engine = engineDir();
    const env = cliEnv(engine);
    // One workspace per stack, so two stacks can be deployed at once from the same state directory.
    const workDir = path.join(STATE_DIR, "work", args.stack);
    fs.mkdirSync(workDir, { recursive: true });
    const pulumiCommand = await PulumiCommand.get({ root: path.dirname(engine), skipVersionCheck: true });
    const stack = await LocalWorkspace.createOrSelectStack(
        { stackName: args.stack, projectName: PROJECT, program: makeProgram(args.dnsHook, args.program) },
        { workDir, envVars: env, pulumiCommand, projectSettings: projectSettings() },
    );
    log(`stack ${args.stack} (engine ${engine}, state ${STATE_DIR}) ready in ${since(tStart)}`);

    if (file) await applyConfig(stack, file);
    const t0 = Date.now();
    const timeline = new Timeline(t0);
    const streams = { onOutput: guard.write, onError: guard.write, onEvent: timeline.onEvent, color: "never" as const };
    let code = 0;

    switch (args.op) {
        case "up": {
            try {
                // The provisioning steps are the commands named <component>-<step>-run (remoteStep.ts).
                const resources: { urn: string; type: string }[] = args.rerunSteps ? ((await stack.exportStack()).deployment.resources ?? []) : [];
                const replace = resources.filter((r) => /:Command$/.test(r.type) && /-run$/.test(r.urn)).map((r) => r.urn);
                if (args.rerunSteps) log(`--rerun-steps: ${replace.length} steps run again`);
                const r = await stack.up({ ...streams, replace });
                guard.flush();
                timeline.print("changed:");
                log(`up: ${r.summary.result} in ${since(t0)}; changes ${summary(r.summary.resourceChanges)}`);
            } catch (e) {
                guard.flush();
                timeline.print(`up FAILED after ${since(t0)}; steps so far:`);
                throw e;
            } finally {
                guard.flush();
                timeline.save(args.events);
            }
            break;
        }
        case "preview": {
            try {
                const r = await stack.preview(streams);
                guard.flush();
                timeline.print("would change:");
                log(`preview: ${since(t0)}; changes ${summary(r.changeSummary)}`);
                code = previewVerdict(timeline, r.changeSummary, args);
            } finally {
                guard.flush();
                timeline.save(args.events);
            }
            break;
        }
        case "outputs": {
            const outs = await stack.outputs();
            log(`outputs: ${since(t0)}`);
            printOutputs(outs, args.showSecrets);
            break;
        }
        case "destroy": {
            log(
                "note: destroy runs the steps' delete commands and deletes the stack's cloud resources (with the DigitalOcean stand-in: its guests and, unless protected, volumes); with hosting existing it changes nothing on the server",
            );
            const r = await stack.destroy(streams);
            guard.flush();
            log(`destroy: ${r.summary.result} in ${since(t0)}; changes ${summary(r.summary.resourceChanges)}`);
            break;
        }
        case "forget": {
            // The stack's state and config go, whatever it holds (`pulumi stack rm --force`): for
            // testbed.sh down --wipe-data, after the guests, volumes and zones it describes are gone.
            await stack.workspace.removeStack(stack.name, { force: true });
            fs.rmSync(workDir, { recursive: true, force: true });
            log(`forget: stack ${args.stack} removed in ${since(t0)}`);
            break;
        }
        case "export": {
            // Not stack.exportStack(): the Automation API always exports with --show-secrets.
            const argv = ["stack", "export", "--stack", args.stack, "--non-interactive", ...(args.showSecrets ? ["--show-secrets"] : [])];
            const r = childProcess.spawnSync(pulumiCommand.command, argv, {
                cwd: workDir,
                env: { ...process.env, ...env },
                encoding: "utf8",
                maxBuffer: 1 << 30,
            });
            if (r.status !== 0) throw new Error(`pulumi stack export failed (exit ${r.status}):\n${r.stderr}`);
            log(`export: ${since(t0)}`);
            process.stdout.write(r.stdout.endsWith("\n") ? r.stdout : r.stdout + "\n");
            break;
        }
    }
    if (guard.leaks.size > 0) {
        log(`SECRET LEAK: the engine output contained the value of ${[...guard.leaks].join(", ")} (replaced above)`);
        code = 3;
    }
    log(`${args.op} wall time ${process.uptime().toFixed(1)}s (whole process; ${since(tStart)} after ts-node had loaded deploy.ts)`);
    return code;
}

/** The stack outputs as JSON on stdout; secret ones as "[secret]" unless showSecrets. */
function printOutputs(outs: Record<string, { value: unknown; secret: boolean }>, showSecrets: boolean): void {
    const shown = Object.fromEntries(Object.entries(outs).map(([k, o]) => [k, o.secret && !showSecrets ? "[secret]" : o.value]));
    process.stdout.write(JSON.stringify(shown, null, 2) + "\n");
}

/**
 * process.exit() once stdout has taken everything written to it: on a pipe, process.exit() cuts off
 * what is still queued (`deploy.ts export | wc -c` gave 131072 of 1164134 bytes).
 */
function exitAfterOutput(code: number): void {
    process.stdout.write("", () => process.exit(code));
}

// (Only when run as a script: cloudSelftest.ts imports the helpers above.)
if (require.main === module)
    main().then(
        (code) => exitAfterOutput(code),
        (e: unknown) => {
            if (e instanceof UsageError) {
                log(e.message);
                process.stderr.write(USAGE + "\n");
                process.exit(64);
            }
            // A CommandError carries the CLI's whole output, already streamed above: repeat its error lines.
            activeGuard?.flush();
            const message = e instanceof Error ? e.message : String(e);
            const isCommandError = message.startsWith("code: ") && message.includes("\n stderr: ");
            const errors = [
                ...new Set(
                    message
                        .split("\n")
                        .filter((l) => /^\s*error: /.test(l))
                        .map((l) => l.trim()),
                ),
            ];
            const raw = isCommandError ? (errors.length > 0 ? errors.slice(0, 10).join("\n") : "(see the output above)") : message;
            log(`FAILED: ${activeGuard ? activeGuard.scrub(raw) : raw}`);
            process.exit(activeGuard && activeGuard.leaks.size > 0 ? 3 : 2);
        },
    );
