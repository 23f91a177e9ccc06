// npm run check -- <server name> [--dns SERVER]... [--ca FILE]... [--synapse-version V]
//
// The checks `pulumi up` ends with (components/health/checks.ts), against any Matrix server, from
// this machine: its .well-known answers, the client API, federation resolved as a remote server
// does it (well-known, SRV, 8448), the federation certificate, the signing keys and their
// self-signature, the certificates' expiry. A federation tester that needs no third-party site.
// Exit status 0 when nothing failed (warnings allowed), 1 when a check failed, 2 on bad usage.
//   --dns SERVER       ask this DNS server instead of the system's resolver (repeatable)
//   --ca FILE          trust these PEM roots too (a private CA; the testbed's: $B/pebble/roots-all.pem)
//   --synapse-version  also check that federation reports this Synapse release
import * as fs from "fs";
import { checkService, formatVerdicts } from "../components/health/checks";
import { networkProbe } from "../components/health/probe";

const USAGE = "usage: npm run check -- <server name> [--dns SERVER]... [--ca FILE]... [--synapse-version VERSION]";

function parse(argv: string[]): { serverName: string; dns: string[]; ca: string[]; synapseVersion?: string } {
    const out = { serverName: "", dns: [] as string[], ca: [] as string[], synapseVersion: undefined as string | undefined };
    for (let i = 0; i < argv.length; i++) {
        const value = () => {
            const v = argv[++i];
            if (v === undefined) throw new Error(`${argv[i - 1]} needs a value`);
            return v;
        };
        const a = argv[i];
        if (a === "--dns") out.dns.push(value());
        else if (a === "--ca") out.ca.push(value());
        else if (a === "--synapse-version") out.synapseVersion = value();
        else if (a.startsWith("-")) throw new Error(`unknown option ${a}`);
        else if (out.serverName) throw new Error(`one server name only (got ${out.serverName} and ${a})`);
        else out.serverName = a;
    }
    if (!out.serverName) throw new Error("which server? give its Matrix server name, e.g. phillymesh.net");
    if (!/^[a-z0-9.-]+$/i.test(out.serverName)) throw new Error(`${out.serverName} is not a server name (a DNS name such as phillymesh.net)`);
    return out;
}

async function main(): Promise<number> {
    let args: ReturnType<typeof parse>;
    try {
        args = parse(process.argv.slice(2));
    } catch (e) {
        console.error(`${(e as Error).message}\n${USAGE}`);
        return 2;
    }
    const probe = networkProbe({ dnsServers: args.dns, extraRoots: args.ca.map((f) => fs.readFileSync(f, "utf8")) });
    const verdicts = await checkService(probe, { serverName: args.serverName, synapseVersion: args.synapseVersion });
    for (const line of formatVerdicts(verdicts)) console.log(line);
    const failed = verdicts.filter((v) => v.level === "fail").length;
    const warned = verdicts.filter((v) => v.level === "warn").length;
    console.log(`${args.serverName}: ${verdicts.length} checks, ${failed} failed, ${warned} warnings`);
    return failed ? 1 : 0;
}

main().then(
    (code) => process.exit(code),
    (e) => {
        console.error(e);
        process.exit(1);
    },
);
