// `up` checks its own work: drill 20. Each thing an operator or a drifted server can get wrong that
// the steps themselves would not notice (every script exits 0): the SRV record, the well-known
// delegation, the certificate on 8448. Each is broken for real on the running server, an `up` with
// nothing to change is run, and it must fail naming what is wrong and the fix; once repaired, `up`
// passes again with every check ok. Registered by drills.test.ts.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import * as L from "./lib.ts";
import type { DrillSet } from "./harness.ts";
import { stackOutputs, upArgs } from "../../testbed/lib/deployClient.ts";

const WELL_KNOWN_SERVER = "/var/www/well-known/.well-known/matrix/server";
const TLS_SNIPPET = "/etc/nginx/snippets/phillymesh-chat-tls.conf";

/** `up` with nothing to change; `withDnsHook` false leaves the DNS records as they are (dns: none, by hand). */
async function upNoChange(label: string, withDnsHook = true): Promise<L.RunResult> {
    const args = withDnsHook ? upArgs(L.NAME, L.currentConfigFile(), { dnsHook: true }) : ["--config", L.currentConfigFile()];
    return L.deploy("up", args, { label });
}

/** The health output of the last up. */
async function healthOutput(): Promise<string[]> {
    return (await stackOutputs(L.NAME)).health as string[];
}

export function healthDrill({ drill, check }: DrillSet): void {
    drill(
        "20 up checks its own work: a wrong SRV record, a wrong well-known delegation, an untrusted certificate on 8448 each fail `up`, named with the fix; repaired, `up` passes",
        15,
        async (t) => {
            const M = `matrix.${L.DOMAIN}`;
            await check(t, "20a an up with nothing to change passes, and its health output has every check ok", async () => {
                const r = await upNoChange("drill20-baseline");
                assert.equal(r.code, 0, L.tail(r.out));
                const health = await healthOutput();
                t.diagnostic(health.join(" | "));
                assert.ok(health.length >= 10, health.join("\n"));
                assert.deepEqual(
                    health.filter((l) => !l.startsWith("ok ")),
                    [],
                );
            });

            const records = `${L.B}/dns/${L.NAME}.json`;
            const good = readFileSync(records, "utf8");
            try {
                await check(
                    t,
                    "20b the SRV record points at another host (as a by-hand record can): up fails naming the record, its target and the expected one",
                    async () => {
                        const broken = (JSON.parse(good) as { name: string; type: string; target?: string }[]).map((r) =>
                            r.type === "SRV" && r.name.startsWith("_matrix-fed._tcp.") ? { ...r, target: `old.${L.DOMAIN}` } : r,
                        );
                        const file = `${L.WORK}/drill20-records.json`;
                        writeFileSync(file, JSON.stringify(broken));
                        await L.runOk("bash", [`${L.REPO}/testbed/dns-load.sh`, file, L.NAME], { label: "drill20-dns-broken", timeoutMs: 60_000 });
                        // No DNS hook: the records stay as the operator left them.
                        const r = await upNoChange("drill20-srv", false);
                        assert.notEqual(r.code, 0, "up passed with a wrong SRV record");
                        assert.match(
                            r.out,
                            new RegExp(
                                `FAIL SRV record: the SRV record _matrix-fed\\._tcp\\.${L.DOMAIN.replace(/\./g, "\\.")} points at old\\.${L.DOMAIN.replace(/\./g, "\\.")}:8448, expected ${M.replace(/\./g, "\\.")}:8448: fix the record`,
                            ),
                        );
                        assert.match(r.out, /health checks? failed, as its users and other servers see it/);
                    },
                );
            } finally {
                writeFileSync(`${L.WORK}/drill20-records-good.json`, good);
                await L.runOk("bash", [`${L.REPO}/testbed/dns-load.sh`, `${L.WORK}/drill20-records-good.json`, L.NAME], {
                    label: "drill20-dns-restore",
                    timeoutMs: 60_000,
                });
            }

            try {
                await check(t, "20c the well-known delegation names the wrong port: up fails naming the answer and the expected one", async () => {
                    await L.tsshOk(`cp -p ${WELL_KNOWN_SERVER} /root/drill20-well-known && printf '%s' '{"m.server":"${M}:443"}' > ${WELL_KNOWN_SERVER}`);
                    const r = await upNoChange("drill20-well-known");
                    assert.notEqual(r.code, 0, "up passed with a wrong well-known");
                    assert.match(
                        r.out,
                        new RegExp(
                            `FAIL well-known server: https://${L.DOMAIN.replace(/\./g, "\\.")}/\\.well-known/matrix/server says m\\.server ${M.replace(/\./g, "\\.")}:443, expected ${M.replace(/\./g, "\\.")}:8448`,
                        ),
                    );
                    assert.match(r.out, /FAIL federation route: /);
                });
            } finally {
                await L.tssh(`[ ! -f /root/drill20-well-known ] || mv /root/drill20-well-known ${WELL_KNOWN_SERVER}`);
            }

            try {
                await check(
                    t,
                    "20d a self-signed certificate on 443 and 8448 (not from the CA): up fails naming the certificate on 8448 and the client API",
                    async () => {
                        await L.tsshOk(
                            `set -e; d=/etc/nginx/drill20; mkdir -p $d; ` +
                                `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=${M} ` +
                                `-addext 'subjectAltName=DNS:${L.DOMAIN},DNS:${M},DNS:chat.${L.DOMAIN}' -keyout $d/key.pem -out $d/cert.pem 2>/dev/null; ` +
                                `cp -p ${TLS_SNIPPET} /root/drill20-tls.conf; ` +
                                `sed -i "s#^ssl_certificate .*#ssl_certificate $d/cert.pem;#; s#^ssl_certificate_key .*#ssl_certificate_key $d/key.pem;#" ${TLS_SNIPPET}; ` +
                                `nginx -t 2>/dev/null && systemctl reload nginx`,
                        );
                        const r = await upNoChange("drill20-cert");
                        assert.notEqual(r.code, 0, "up passed with an untrusted certificate");
                        assert.match(
                            r.out,
                            new RegExp(
                                `FAIL federation TLS: the certificate on ${M.replace(/\./g, "\\.")}:8448 is for [^\\n]*not accepted for [^:\\s]+: [^\\n]*self[-_ ]signed`,
                                "i",
                            ),
                        );
                        assert.match(r.out, /FAIL client API: the certificate of /);
                    },
                );
            } finally {
                await L.tssh(
                    `[ ! -f /root/drill20-tls.conf ] || { mv /root/drill20-tls.conf ${TLS_SNIPPET}; rm -rf /etc/nginx/drill20; systemctl reload nginx; }`,
                );
            }

            await check(t, "20e repaired: up passes again, every check ok", async () => {
                const r = await upNoChange("drill20-repaired");
                assert.equal(r.code, 0, L.tail(r.out));
                assert.deepEqual(
                    (await healthOutput()).filter((l) => !l.startsWith("ok ")),
                    [],
                );
            });
        },
    );
}
