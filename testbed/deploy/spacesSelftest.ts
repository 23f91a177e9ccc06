// Proof of the Spaces stand-in (digitalocean/spaces.ts, testbed/cloud/spaces.sh) through the real
// engine, as cloudSelftest.ts proves the others: a small inline program (project
// phillymesh-spaces-selftest) with a digitalocean.Provider carrying Spaces keys and SpacesBuckets,
// changed step by step and checked from outside with signed and unsigned S3 requests. No guest.
//
//   PATH=$PWD/node_modules/.bin:$PATH ts-node --transpile-only testbed/deploy/spacesSelftest.ts
//
// Needs the testbed's host services (testbed/host.sh up). Starts the S3 server if it is not running
// (spaces.sh ensure: builds SeaweedFS first on a machine that has never built it). Its buckets are
// named spaces-selftest-*; it removes them at the end. Exit 0 when every check passed.
import * as childProcess from "child_process";
import * as fs from "fs";
import * as path from "path";
import { LocalWorkspace, PulumiCommand, Stack } from "@pulumi/pulumi/automation";
import { installCloudShims } from "./cloudShims";
import { cliEnv, engineDir } from "./driver/engine";

const REPO = path.resolve(__dirname, "..", "..");
const B = process.env.TESTBED_DIR || "/var/tmp/phillymesh-testbed";
const STATE_DIR = path.resolve(process.env.PHILLYMESH_TESTBED_STATE || path.join(B, "state"));
const SPACES = path.join(REPO, "testbed", "cloud", "spaces.sh");
const BUCKET = "spaces-selftest-media";
const TAKEN = "spaces-selftest-taken";

let failures = 0;
const T0 = Date.now();
const log = (m: string) => process.stdout.write(`[spaces-selftest +${((Date.now() - T0) / 1000).toFixed(1)}s] ${m}\n`);
function check(ok: boolean, what: string, detail = ""): void {
    if (!ok) failures++;
    log(`${ok ? "PASS" : "FAIL"} ${what}${detail ? ` (${detail})` : ""}`);
}

function sh(args: string[], input?: string): { code: number; out: string; err: string } {
    const r = childProcess.spawnSync("bash", [SPACES, ...args], { encoding: "utf8", input, timeout: 900000 });
    return { code: r.status ?? -1, out: (r.stdout ?? "").trim(), err: (r.stderr ?? "").trim() };
}

/** A signed request as `who` (account | other), or unsigned (null): the HTTP status and body. */
function s3(who: "account" | "other" | null, method: string, p: string, extra: string[] = []): { status: number; body: string } {
    const r = who ? sh(["s3", "nyc3", method, p, ...extra], sh(["keypair", who]).out + "\n") : sh(["s3-anonymous", "nyc3", method, p]);
    const m = /HTTP (\d+)$/.exec(r.out);
    return { status: m ? Number(m[1]) : -1, body: r.out };
}

interface Cfg {
    keys: { accessId: string; secretKey: string };
    buckets: { name: string; region?: string; forceDestroy?: boolean }[];
}

function program(cfg: Cfg) {
    return async () => {
        installCloudShims(REPO);
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const digitalocean = require("@pulumi/digitalocean");
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const pulumi = require("@pulumi/pulumi");
        const provider = new digitalocean.Provider("spaces", {
            spacesAccessId: pulumi.secret(cfg.keys.accessId),
            spacesSecretKey: pulumi.secret(cfg.keys.secretKey),
        });
        for (const b of cfg.buckets)
            new digitalocean.SpacesBucket(
                b.name,
                { name: b.name, region: b.region ?? "nyc3", acl: "private", forceDestroy: b.forceDestroy ?? false },
                { provider },
            );
        return {};
    };
}

async function run(stack: Stack, cfg: Cfg, title: string, mode: "up" | "preview" | "destroy" = "up") {
    const t0 = Date.now();
    stack.workspace.program = program(cfg);
    let error = "";
    try {
        if (mode === "up") await stack.up({ color: "never" });
        else if (mode === "preview") await stack.preview({ color: "never" });
        else await stack.destroy({ color: "never" });
    } catch (e) {
        const m = e instanceof Error ? e.message : String(e);
        const lines = m.split("\n").filter((l) => /error|expected|status code|not in the testbed/i.test(l) && !/^\s*at /.test(l));
        error = [...new Set(lines.map((l) => l.trim()))].slice(0, 6).join("\n    ") || m.slice(0, 800);
    }
    log(`${title}: ${mode} ${error ? "FAILED" : "ok"} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (error) log(`    error: ${error}`);
    return error;
}

async function main(): Promise<number> {
    const ensure = sh(["ensure"]);
    if (ensure.code !== 0) throw new Error(`spaces.sh ensure failed: ${ensure.err}`);
    const account = JSON.parse(sh(["keys", "account"]).out);
    const keys = { accessId: account.accessKeyId, secretKey: account.secretKey };
    const engine = engineDir();
    const workDir = path.join(STATE_DIR, "work", "spaces-selftest");
    fs.mkdirSync(workDir, { recursive: true });
    const pulumiCommand = await PulumiCommand.get({ root: path.dirname(engine), skipVersionCheck: true });
    const base: Cfg = { keys, buckets: [{ name: BUCKET }] };
    const stack = await LocalWorkspace.createOrSelectStack(
        { stackName: "spaces-selftest", projectName: "phillymesh-spaces-selftest", program: program(base) },
        { workDir, envVars: cliEnv(engine), pulumiCommand, projectSettings: { name: "phillymesh-spaces-selftest", runtime: "nodejs" } },
    );
    // A run that died half-way: start from nothing (objects first, so the destroy can go).
    s3("account", "DELETE", `${BUCKET}/proof.txt`);
    await run(stack, { keys, buckets: [] }, "0. clean start");

    // 1. A bucket with the account's keys: there, the account's, private.
    const e1 = await run(stack, base, "1. create the bucket");
    check(e1 === "", "1. up succeeds", e1);
    check(s3("account", "HEAD", BUCKET, ["-I"]).status === 200, "1. the bucket answers HEAD with the account's keys");
    const anon = s3(null, "GET", BUCKET);
    check(anon.status === 403, "1. without keys its listing is refused (private)", `HTTP ${anon.status}`);
    const vhost = `${BUCKET}.nyc3.digitaloceanspaces.com`;
    const addr = childProcess.spawnSync("dig", ["+short", "@10.250.0.1", vhost, "A"], { encoding: "utf8" }).stdout.trim();
    const anonVhost = childProcess.spawnSync(
        "curl",
        [
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            path.join(B, "pebble", "ca.pem"),
            "--resolve",
            `${vhost}:443:${addr}`,
            `https://${vhost}/`,
        ],
        { encoding: "utf8" },
    );
    check(
        addr === "10.250.0.1" && anonVhost.stdout === "403",
        "1. its virtual-hosted name is in the testbed DNS, and refuses without keys too",
        `${addr}, HTTP ${anonVhost.stdout}`,
    );
    // The backend's own file (the Automation API's exportStack decrypts secrets).
    const stateFile = path.join(STATE_DIR, "backend", ".pulumi", "stacks", "phillymesh-spaces-selftest", "spaces-selftest.json");
    const saved = fs.readFileSync(stateFile, "utf8");
    check(
        !saved.includes(keys.secretKey) &&
            !saved.includes(keys.accessId) &&
            /"__keys":\s*\{\s*"4dabf18193072939515e22adb298388d":\s*"1b47061264138c4ac30d75fd1eb44270",\s*"ciphertext"/.test(saved),
        "1. neither key is in the state in plain text (the keys are ciphertext)",
    );
    const e1b = await run(stack, base, "1b. the same program again", "preview");
    check(e1b === "", "1b. preview of the same program succeeds", e1b);

    // 2. A name another customer holds: 409 BucketAlreadyExists, from the server.
    s3("other", "PUT", TAKEN);
    const e2 = await run(stack, { keys, buckets: [...base.buckets, { name: TAKEN }] }, "2. a name another customer owns");
    check(/BucketAlreadyExists/.test(e2), "2. up fails with BucketAlreadyExists (409)", e2.split("\n")[0]);

    // 3. Name and region rules.
    const e3 = await run(stack, { keys, buckets: [...base.buckets, { name: "Spaces_Selftest" }] }, "3. an invalid name");
    check(/InvalidBucketName/.test(e3), "3. an invalid name fails with InvalidBucketName (400)", e3.split("\n")[0]);
    const e3b = await run(stack, { keys, buckets: [{ name: BUCKET, region: "nyc1" }] }, "3b. a region Spaces does not have", "preview");
    check(/expected region to be one of/.test(e3b), "3b. an unknown Spaces region fails at preview", e3b.split("\n")[0]);

    // 4. Wrong keys: the server refuses the signature.
    const e4 = await run(
        stack,
        { keys: { ...keys, secretKey: "x" + keys.secretKey.slice(1) }, buckets: [...base.buckets, { name: "spaces-selftest-wrongkey" }] },
        "4. a wrong secret key",
    );
    check(/SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied/.test(e4), "4. a wrong secret key is refused", e4.split("\n")[0]);

    // 5. Deleting a bucket that holds an object, without forceDestroy: BucketNotEmpty, nothing lost.
    const put = s3("account", "PUT", `${BUCKET}/proof.txt`, ["--data-binary", "proof"]);
    check(put.status === 200, "5. an object put into the bucket", `HTTP ${put.status}`);
    const e5 = await run(stack, { keys, buckets: [] }, "5. delete the non-empty bucket");
    check(/BucketNotEmpty/.test(e5), "5. fails with BucketNotEmpty", e5.split("\n")[0]);
    check(s3("account", "GET", `${BUCKET}/proof.txt`).body.startsWith("proof"), "5. the object is still there");
    // 6. forceDestroy true, then deleted: the bucket is emptied and goes.
    const e6 = await run(stack, { keys, buckets: [{ name: BUCKET, forceDestroy: true }] }, "6a. forceDestroy on");
    const e6b = await run(stack, { keys, buckets: [] }, "6b. delete with forceDestroy");
    check(e6 === "" && e6b === "", "6. with forceDestroy the delete succeeds", e6 || e6b);
    check(s3("account", "HEAD", BUCKET, ["-I"]).status === 404, "6. the bucket is gone");

    s3("other", "DELETE", TAKEN);
    log(`${failures === 0 ? "ALL PASSED" : `${failures} FAILED`} in ${((Date.now() - T0) / 1000).toFixed(1)} s`);
    return failures === 0 ? 0 : 1;
}

main().then(
    (code) => process.exit(code),
    (e: unknown) => {
        log(`ERROR: ${e instanceof Error ? e.stack : String(e)}`);
        process.exit(2);
    },
);
