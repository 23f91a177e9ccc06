// A throwaway self-signed certificate made by the real openssl, for the tests that stand in for
// Let's Encrypt's (nginx -t on the rendered sites, the daily status check's expiry verdicts).
import { execFileSync } from "child_process";

/** Writes a P-256 key to `keyFile` and a self-signed certificate for CN=`commonName`, valid `days` days, to `certFile`. */
export function throwawayCert(certFile: string, keyFile: string, commonName: string, days: number): void {
    execFileSync(
        "openssl",
        [
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            String(days),
            "-subj",
            `/CN=${commonName}`,
            "-keyout",
            keyFile,
            "-out",
            certFile,
        ],
        { stdio: "ignore" },
    );
}
