// The server's own firewall as nftables reads it: every rendered rule set is checked by the real
// `nft -c` (in a network namespace of its own, so the machine's rules are not touched), and it opens
// the same doors as the cloud firewall.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { firewallRules } from "../components/hostFirewall";

const NFT = ["/usr/sbin/nft", "/sbin/nft"].find((p) => fs.existsSync(p));

function nftCheck(rules: string): { status: number | null; out: string } {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nft-c-"));
    try {
        const file = path.join(dir, "firewall.nft");
        fs.writeFileSync(file, rules + "\n");
        // Loaded for real, twice (the second load must replace the table), then listed.
        const script = `${NFT} -f ${file} && ${NFT} -f ${file} && ${NFT} list table inet phillymesh_chat`;
        const r = spawnSync("unshare", ["-rn", "sh", "-c", script], { encoding: "utf8" });
        return { status: r.status, out: `${r.stdout}${r.stderr}` };
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

describe("the server's own firewall (hostFirewall)", () => {
    test("nft is installed here (scripts/install-test-tools.sh)", () => {
        expect(NFT).toBeDefined();
    });

    test.each([
        ["anywhere (the default)", ["0.0.0.0/0", "::/0"], 22],
        ["IPv4 only, another SSH port", ["203.0.113.0/24", "198.51.100.7/32"], 2222],
        ["IPv6 only", ["2001:db8::/32"], 22],
    ])("nft loads the rules for SSH from %s, and loads them again over themselves", (_what, cidrs, sshPort) => {
        const rules = firewallRules({ sshPort, sshAllowedCidrs: cidrs });
        const r = nftCheck(rules);
        expect(r).toMatchObject({ status: 0 });
        expect(r.out).toMatch(/policy drop;/);
        expect(r.out).toMatch(new RegExp(`tcp dport ${sshPort} ip6? saddr`));
        expect(r.out.match(/table inet phillymesh_chat/g)).toHaveLength(1);
    });

    test("SSH only from the allowed CIDRs; 80, 443 and 8448 from anywhere; nothing else", () => {
        const rules = firewallRules({ sshPort: 22, sshAllowedCidrs: ["203.0.113.0/24"] });
        expect(rules).toMatch(/^\s*tcp dport 22 ip saddr \{ 203\.0\.113\.0\/24 \} accept$/m);
        expect(rules).not.toMatch(/ip6 saddr/);
        expect(rules).toMatch(/^\s*tcp dport \{ 80, 443, 8448 \} accept$/m);
        const accepts = rules.split("\n").filter((l) => /\baccept$/.test(l));
        expect(accepts).toHaveLength(5);
    });
});
