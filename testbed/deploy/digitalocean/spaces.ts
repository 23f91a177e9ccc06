// The DigitalOcean stand-in's Spaces bucket: a real bucket on the testbed's S3 server (SeaweedFS,
// testbed/cloud/spaces.sh), which answers https://<region>.digitaloceanspaces.com on 10.250.0.1:443
// with a certificate the guests trust, so Synapse's storage provider and the trim on a droplet guest
// talk S3 to it as they would to Spaces. The server is started here, lazily, on the first create
// (spaces.sh ensure; its first build of SeaweedFS takes minutes): host.sh up does not start it.
//
// What it mirrors (terraform-provider-digitalocean, digitalocean/spaces/resource_spaces_bucket.go,
// spaces_entities.go; provider.go for the keys):
//   - the keys are the provider's spaces_access_id / spaces_secret_key (provider.go), used for every
//     call: a bucket made with one pair of keys is that pair's (the server checks the signature);
//   - `region` ForceNew, default nyc3, ValidateFunc StringInSlice(SpacesRegions): an unknown region
//     fails at preview with the SDK's `expected region to be one of [...], got X`;
//   - `acl` default "private", sent as the canned ACL of CreateBucket, PutBucketAcl on a change;
//   - create: CreateBucket (retried only on OperationAborted), then HeadBucket until it answers;
//     every other error is `Error creating Spaces bucket: <Code>: <Message>` with the status code:
//     a name taken by another customer is `409 BucketAlreadyExists`, an invalid name
//     `400 InvalidBucketName` (the provider has no check of its own: the API refuses it);
//   - delete: DeleteBucket; on `BucketNotEmpty` only `force_destroy` empties the bucket and tries
//     again, otherwise `Error deleting Spaces Bucket: BucketNotEmpty: ... "<name>"`;
//   - id: the bucket's name; urn `do:space:<name>`, bucket_domain_name `<name>.<region>.digitaloceanspaces.com`,
//     endpoint `<region>.digitaloceanspaces.com` (BucketDomainName, BucketEndpoint).
// Those API answers are the S3 server's own (SeaweedFS: BucketAlreadyExists, InvalidBucketName,
// BucketNotEmpty with -allowDeleteBucketNotEmpty=false), not made up here; the stand-in checks
// after each create that an unsigned request for the bucket is refused (private).
// Not covered: `acl: public-read` (refused at preview), cors, lifecycle, versioning, refresh/import,
// a change of `name` (the provider has no ForceNew on it and does not rename: refused at preview).
// Known differences: the testbed's server lets one customer's keys delete another's bucket (its
// admins own every bucket); Spaces answers a name this account already owns with 409 too
// (SeaweedFS says BucketAlreadyOwnedByYou).
//
// Serialized into the state with the provider: plain functions and constants only.
import type * as pulumi from "@pulumi/pulumi";
import { isUnknown, plain } from "../shimKit";
import { cloudScript } from "./account";
import { tfDiff } from "./terraform";

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */

/** spaces_entities.go SpacesRegions. */
export const SPACES_REGIONS = ["ams3", "atl1", "blr1", "fra1", "lon1", "nyc3", "sfo2", "sfo3", "sgp1", "syd1", "tor1"];

/** Runs testbed/cloud/spaces.sh ARGS with stdin; resolves with its stdout. */
function spacesScript(props: any, args: string[], stdin = ""): Promise<string> {
    return cloudScript(props, "spaces.sh", args, stdin);
}

/** One S3 request with the keys (null: unsigned). Returns the status and S3's error code/message. */
async function s3(
    props: any,
    keys: any,
    method: string,
    path: string,
    extra: string[] = [],
): Promise<{ status: number; code: string; message: string; body: string }> {
    const args = ["s3", String(props.region), method, path, ...extra];
    const out = await spacesScript(props, keys ? args : ["s3-anonymous", ...args.slice(1)], keys ? `${keys.accessId}:${keys.secretKey}\n` : "");
    const m = /\nHTTP (\d+)\n?$/.exec(out);
    if (!m) throw new Error(`the testbed's S3 server gave no answer to ${method} /${path}`);
    const body = out.slice(0, m.index);
    const tag = (t: string) => new RegExp(`<${t}>([^<]*)</${t}>`).exec(body)?.[1] ?? "";
    return { status: Number(m[1]), code: tag("Code"), message: tag("Message"), body };
}

/** aws-sdk-go v1's error text, as the provider prints it. */
function awsError(prefix: string, r: { status: number; code: string; message: string }, suffix = ""): Error {
    const id = require("crypto").randomBytes(8).toString("hex").toUpperCase();
    return new Error(`${prefix}: ${r.code || "UnknownError"}: ${r.message}\n\tstatus code: ${r.status}, request id: ${id}${suffix}`);
}

function keysOf(props: any): any {
    const k = props.__keys;
    if (!k || !k.accessId || !k.secretKey)
        throw new Error("the Spaces stand-in needs the provider's spacesAccessId and spacesSecretKey (pass a digitalocean.Provider with them)");
    return k;
}

export const spacesBucketProvider: pulumi.dynamic.ResourceProvider = {
    async check(olds: any, news: any) {
        const failures: { property: string; reason: string }[] = [];
        const inputs = { ...news, region: news.region ?? "nyc3", acl: news.acl ?? "private", forceDestroy: news.forceDestroy ?? false };
        if (!isUnknown(inputs.region) && !SPACES_REGIONS.includes(String(inputs.region).toLowerCase()))
            failures.push({ property: "region", reason: `expected region to be one of ${JSON.stringify(SPACES_REGIONS)}, got ${inputs.region}` });
        if (!isUnknown(inputs.acl) && inputs.acl !== "private")
            failures.push({ property: "acl", reason: `acl ${JSON.stringify(inputs.acl)} is not in the testbed stand-in (only "private")` });
        if (isUnknown(inputs.name) || !inputs.name)
            failures.push({ property: "name", reason: "name is required (and known at preview in the testbed stand-in)" });
        if (olds?.name !== undefined && !isUnknown(inputs.name) && olds.name !== inputs.name)
            failures.push({ property: "name", reason: "renaming a bucket is not in the testbed stand-in (the provider does not rename one either)" });
        return { inputs, failures };
    },
    async diff(_id: string, olds: any, news: any) {
        return tfDiff(olds, news, {
            forceNew: ["region"],
            update: ["acl", "forceDestroy"],
            normalize: { region: (v: any) => (v === undefined ? v : String(v).toLowerCase()) },
        });
    },
    async create(inputs: any) {
        const region = String(inputs.region).toLowerCase();
        const props = { ...inputs, region };
        const keys = keysOf(inputs);
        const name = String(inputs.name);
        await spacesScript(props, ["ensure"]);
        let r = await s3(props, keys, "PUT", name, ["-H", `x-amz-acl: ${inputs.acl}`]);
        for (let i = 0; r.code === "OperationAborted" && i < 10; i++) r = await s3(props, keys, "PUT", name, ["-H", `x-amz-acl: ${inputs.acl}`]);
        if (r.status !== 200) throw awsError("Error creating Spaces bucket", r);
        const head = await s3(props, keys, "HEAD", name, ["-I"]);
        if (head.status !== 200) throw awsError(`Failed to check availability of Spaces bucket ${name}`, { ...head, code: head.code || "NotFound" });
        // Private: an unsigned request for the bucket's listing is refused.
        const anon = await s3(props, null, "GET", name);
        if (anon.status !== 403) throw new Error(`the testbed's S3 server made bucket ${name} readable without keys (HTTP ${anon.status}): not private`);
        // Its virtual-hosted name (what boto3 uses) in the testbed DNS; Spaces answers a wildcard.
        await spacesScript(props, ["dns-bucket", name, region]);
        return { id: name, outs: plain({ ...inputs, region, ...computed(name, region) }) };
    },
    async update(_id: string, olds: any, news: any) {
        if (news.acl !== olds.acl) {
            const r = await s3(news, keysOf(news), "PUT", `${news.name}?acl`, ["-H", `x-amz-acl: ${news.acl}`]);
            if (r.status !== 200) throw awsError("Error putting Spaces ACL", r);
        }
        return { outs: plain({ ...olds, ...news, region: olds.region, ...computed(olds.name, olds.region) }) };
    },
    async delete(id: string, props: any) {
        const keys = keysOf(props);
        for (;;) {
            const r = await s3(props, keys, "DELETE", id);
            if (r.status === 204 || r.status === 200) return;
            if (r.code === "BucketNotEmpty" && props.forceDestroy) {
                await emptyBucket(props, keys, id);
                continue;
            }
            throw awsError("Error deleting Spaces Bucket", r, ` "${props.name}"`);
        }
    },
};

function computed(name: string, region: string) {
    return {
        urn: `do:space:${name}`,
        bucketDomainName: `${name}.${region}.digitaloceanspaces.com`,
        endpoint: `${region}.digitaloceanspaces.com`,
    };
}

/** force_destroy (spacesBucketForceDelete): every object deleted, a page at a time. */
async function emptyBucket(props: any, keys: any, bucket: string): Promise<void> {
    for (;;) {
        const list = await s3(props, keys, "GET", `${bucket}?list-type=2`);
        if (list.status !== 200) throw awsError("Error Spaces Bucket force_destroy error deleting", list);
        const objects = [...list.body.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1].replace(/&amp;/g, "&").replace(/&lt;/g, "<").replace(/&gt;/g, ">"));
        if (objects.length === 0) return;
        for (const key of objects) {
            const r = await s3(props, keys, "DELETE", `${bucket}/${key.split("/").map(encodeURIComponent).join("/")}`);
            if (r.status !== 204 && r.status !== 200) throw awsError("Error Spaces Bucket force_destroy error deleting", r);
        }
    }
}

/* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */
