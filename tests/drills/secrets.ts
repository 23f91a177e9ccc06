// No one in by reading: drill 7, no secret in plain text in the stack export, the deploy logs of the
// run, the state files or on the server outside 0600 files. drills.test.ts registers it last, so that
// it reads every deploy log of the run.
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import * as L from "./lib.ts";
import type { DrillSet } from "./harness.ts";

export function secretsDrill({ drill, check }: DrillSet): void {
    drill("7 secrets never in plain text: not in the stack export, the deploy logs, the state files or on the server outside 0600 files", 10, async (t) => {
        const sec = L.secrets();
        const needles: [string, string][] = [];
        for (const [k, v] of Object.entries(sec)) {
            if (typeof v !== "string" || v.length < 8) continue;
            needles.push([v, k], [JSON.stringify(v).slice(1, -1), k], [Buffer.from(v).toString("base64"), `${k} (base64)`]);
            // Each line of a multi-line value (the ssh key) except the armour and the first base64 line,
            // which is the same in every unencrypted OpenSSH key ("openssh-key-v1", cipher none, ...).
            const lines = v.split("\n").filter((line) => line.length >= 16 && !/^-----(BEGIN|END) /.test(line));
            for (const line of lines.length > 1 ? lines.slice(1) : []) needles.push([line, `${k} (a line)`]);
        }
        const leaks = (text: string) => [...new Set(needles.filter(([n]) => text.includes(n)).map(([, k]) => k))];

        if (L.deployLogs.length === 0) {
            // Run alone: make one `up` (no changes) to have a log to check.
            const r = await L.deployUp(L.currentConfigFile(), "d7-up-noop");
            assert.equal(r.code, 0, L.tail(r.out));
        }
        await check(t, "7a deploy.ts export (no --show-secrets) holds ciphertext only", async () => {
            const r = await L.deploy("export", [], { label: "d7-export" });
            assert.equal(r.code, 0, L.tail(r.out));
            assert.deepEqual(leaks(r.out), []);
            const secure = (r.out.match(/"ciphertext"/g) ?? []).length;
            t.diagnostic(`export: ${secure} ciphertext values`);
            assert.ok(secure > 10, "the export has (almost) no encrypted values: is this the right stack?");
        });
        await check(t, `7b no captured deploy.ts up output holds a secret (${L.deployLogs.length} logs)`, () => {
            const found: string[] = [];
            for (const f of L.deployLogs) {
                let text = readFileSync(f, "utf8");
                // testbed.sh's own status block prints the admin login on purpose; deploy.ts's lines are "[drill1] ...".
                if (/testbed-up/.test(f))
                    text = text
                        .split("\n")
                        .filter((l) => l.startsWith(`[${L.NAME}] `))
                        .join("\n");
                const l = leaks(text);
                if (l.length) found.push(`${f}: ${l.join(", ")}`);
                if (/SECRET LEAK/.test(text)) found.push(`${f}: deploy.ts reported a SECRET LEAK`);
            }
            assert.deepEqual(found, []);
        });
        await check(t, "7c the stack's state files (Pulumi.drill1.yaml, the backend checkpoint) hold ciphertext only", () => {
            const files = [`${L.B}/state/work/${L.NAME}/Pulumi.${L.NAME}.yaml`, `${L.B}/state/backend/.pulumi/stacks/phillymesh-chat/${L.NAME}.json`];
            for (const f of files) {
                assert.ok(existsSync(f), `${f} missing`);
                assert.deepEqual(leaks(readFileSync(f, "utf8")), [], f);
            }
        });
        await check(
            t,
            "7d on the server: homeserver.yaml and everything under /etc, /var/log, /root, /home, /tmp, /var/tmp, /var/www and the journal hold none",
            async () => {
                // grep -f takes one pattern a line: multi-line values (the ssh key) are covered by their lines.
                const patterns = [...new Set(needles.map(([n]) => n).filter((n) => !n.includes("\n") && n.length >= 8))].join("\n") + "\n";
                const out = await L.tsshOk(
                    `umask 077; f=$(mktemp -p /run); cat >"$f"; ` +
                        `echo "homeserver.yaml: $(grep -cFf "$f" /etc/matrix-synapse/homeserver.yaml)"; ` +
                        `echo "files: $(grep -rlIFf "$f" /etc /var/log /root /home /tmp /var/tmp /var/www 2>/dev/null | tr '\\n' ' ')"; ` +
                        `echo "journal: $(journalctl --no-pager -o cat 2>/dev/null | grep -cFf "$f")"; rm -f "$f"`,
                    { input: patterns, timeoutMs: 180_000 },
                );
                t.diagnostic(out.trim().replace(/\n/g, "; "));
                assert.match(out, /^homeserver\.yaml: 0$/m);
                assert.match(out, /^files: $/m);
                assert.match(out, /^journal: 0$/m);
            },
        );
        await check(t, "7e secret files are 0600 (server: secrets, signing key, backup.env, TLS key, backups; host: stack and secrets files)", async () => {
            const out = await L.tsshOk(
                `cd /mnt/matrix_data && stat -L -c '%a %U %n' synapse/secrets/* synapse/keys/signing.key /etc/phillymesh-chat/backup.env ` +
                    `/etc/letsencrypt/live/matrix-chat/privkey.pem backups/*/keys.tar backups/*/synapse.dump; stat -c '%a %U %n' backups backups/*/`,
            );
            t.diagnostic(out.trim().replace(/\n/g, "; "));
            const bad = out
                .trim()
                .split("\n")
                .filter((l) => {
                    const [mode, , name] = l.split(" ");
                    return name.endsWith("/") || name === "backups" ? mode !== "700" : mode !== "600";
                });
            for (const f of [L.SECRETS_FILE, L.STACK_FILE, L.E2E_FILE, L.CURRENT_CONFIG].filter(existsSync)) {
                const mode = (statSync(f).mode & 0o777).toString(8);
                if (mode !== "600") bad.push(`host ${f}: ${mode}`);
            }
            assert.deepEqual(bad, []);
        });
    });
}
