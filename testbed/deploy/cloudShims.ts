// The testbed's stand-ins for the cloud providers, installed by deploy.ts (and cloudSelftest.ts) next
// to commandShim's: `require("@pulumi/digitalocean")` and `require("@pulumi/cloudflare")` then return
// dynamic-provider versions that act on the testbed (see digitalocean/ and cloudflare/).
import { installCloudflareShim } from "./cloudflare";
import { installDigitalOceanShim } from "./digitalocean";

/** Installs both; `repo` is the repository (its testbed/ scripts do the work on this machine). */
export function installCloudShims(repo: string): void {
    installDigitalOceanShim(repo);
    installCloudflareShim(repo);
}
