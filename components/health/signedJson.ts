// Matrix's signed JSON (spec: Appendices, "Signing JSON"): the canonical form a signature covers, and
// the check of an ed25519 signature by a server's published key. Used to check the server's own
// /_matrix/key/v2/server answer as a remote server does.
import * as crypto from "crypto";

/**
 * Canonical JSON: object keys sorted, no insignificant whitespace, UTF-8 as is. (Keys are sorted by
 * UTF-16 code unit, which is code-point order for the names a key answer holds; numbers are the
 * integers Matrix allows.)
 */
export function canonicalJson(value: unknown): string {
    if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
    if (value !== null && typeof value === "object") {
        const obj = value as Record<string, unknown>;
        return `{${Object.keys(obj)
            .sort()
            .map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`)
            .join(",")}}`;
    }
    return JSON.stringify(value);
}

/** Matrix's unpadded base64 (standard alphabet; padding optional on input). */
function fromUnpaddedBase64(s: string): Buffer {
    return Buffer.from(s, "base64");
}

/**
 * Whether `signed` carries a valid signature by `signer` with the key `keyId`, whose public key is
 * the unpadded base64 `publicKey`. The signature covers the object without "signatures" and
 * "unsigned".
 */
export function verifySignature(signed: Record<string, unknown>, signer: string, keyId: string, publicKey: string): boolean {
    const signatures = signed.signatures as Record<string, Record<string, string>> | undefined;
    const signature = signatures?.[signer]?.[keyId];
    if (typeof signature !== "string") return false;
    const raw = fromUnpaddedBase64(publicKey);
    if (raw.length !== 32) return false;
    const key = crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") }, format: "jwk" });
    const body = Object.fromEntries(Object.entries(signed).filter(([k]) => k !== "signatures" && k !== "unsigned"));
    return crypto.verify(null, Buffer.from(canonicalJson(body), "utf8"), key, fromUnpaddedBase64(signature));
}
