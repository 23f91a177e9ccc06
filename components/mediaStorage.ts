// Media in object storage (mediaStorage spaces, issue 14): a private DigitalOcean Spaces bucket,
// Synapse's S3 storage provider (PyPI synapse-s3-storage-provider) and a bounded local cache.
//   - the bucket, protected (it holds the only copy of media trimmed from the volume), made with the
//     Spaces keys by a DigitalOcean provider of its own;
//   - in the synapse step (synapse.ts asks this module): the provider installed into Synapse's
//     virtualenv with Synapse itself (venv.sh), `media_storage_providers` in homeserver.yaml, and the
//     keys in the synapse user's home (.aws/credentials, 0600), where boto3 finds them: never in
//     homeserver.yaml, an argument or the environment;
//   - the `media-storage` step, after the synapse step: the media already on the server uploaded with
//     the provider's own tool and verified in the bucket, and only then the daily trim of the cache
//     (phillymesh-chat-media-trim), which removes a local copy only once its bytes are verified there.
// With mediaStorage local none of this is declared: the stack is exactly as it was.
import * as digitalocean from "@pulumi/digitalocean";
import * as pulumi from "@pulumi/pulumi";
import type { MediaStorageSettings } from "./config";
import { Target } from "./host";
import { dataPaths, SERVER_PATHS } from "./layout";
import { RemoteStep, ServerFile } from "./remoteStep";
import { readFile, renderTemplate } from "./templates";

/** The media-storage settings of a stack with mediaStorage spaces. */
export type SpacesMedia = Extract<MediaStorageSettings, { kind: "spaces" }>;

/**
 * The storage provider, pinned: installed into Synapse's virtualenv beside Synapse, so pip resolves
 * its dependencies (boto3, botocore...) together with Synapse's, Synapse's own dependency check sees
 * them, and the weekly refresh and the advisory audit cover them like the rest.
 */
export const S3_PROVIDER_REQUIREMENT = "synapse-s3-storage-provider==1.7.0";

export const MEDIA_TRIM_UNIT = "phillymesh-chat-media-trim";
export const MEDIA_SETTINGS_FILE = "/etc/phillymesh-chat/media-storage.json";

/** The bucket's S3 endpoint: Spaces serves each region at https://<region>.digitaloceanspaces.com. */
export function spacesEndpoint(region: string): string {
    return `https://${region}.digitaloceanspaces.com`;
}

/**
 * homeserver.yaml's media_storage_providers (the provider's README): every file, local uploads and
 * other servers' media alike, written to the bucket before the upload is acknowledged. No keys here.
 */
export function mediaStorageProviders(m: SpacesMedia): Record<string, unknown>[] {
    return [
        {
            module: "s3_storage_provider.S3StorageProviderBackend",
            store_local: true,
            store_remote: true,
            store_synchronous: true,
            config: { bucket: m.bucket, region_name: m.region, endpoint_url: spacesEndpoint(m.region) },
        },
    ];
}

/** boto3's shared files in the synapse user's home (its home is <dataDir>/synapse). */
export function awsPaths(dataDir: string) {
    const dir = `${dataPaths(dataDir).synapse}/.aws`;
    return { dir, credentials: `${dir}/credentials`, config: `${dir}/config` };
}

/**
 * What the synapse step installs with spaces: the keys (synapse's alone) and boto3's settings for
 * every process of synapse's (Synapse, its workers, the trim): the region, checksums only where
 * S3 requires them (botocore's newer default trailers are an AWS feature), and the system's CAs.
 */
export function synapseMediaFiles(dataDir: string, m: SpacesMedia): ServerFile[] {
    const p = awsPaths(dataDir);
    const ini = (section: string, values: Record<string, string>) => [`[${section}]`, ...Object.entries(values).map(([k, v]) => `${k} = ${v}`)].join("\n");
    return [
        {
            path: p.credentials,
            content: pulumi.all([m.accessKeyId, m.secretKey]).apply(([id, key]) => ini("default", { aws_access_key_id: id, aws_secret_access_key: key })),
            mode: "0600",
            owner: "synapse:synapse",
        },
        {
            path: p.config,
            content: ini("default", {
                region: m.region,
                request_checksum_calculation: "when_required",
                response_checksum_validation: "when_required",
                // The system's trust store (Debian's ca-certificates, kept current by apt), as pip and
                // certbot on this server use it: botocore otherwise trusts only certifi's bundle in
                // the virtualenv. (Found by the testbed's drill 26: its S3 stand-in's certificate, from
                // the testbed CA the system trusts, failed with CERTIFICATE_VERIFY_FAILED.)
                ca_bundle: "/etc/ssl/certs/ca-certificates.crt",
            }),
            mode: "0644",
            owner: "root:root",
        },
    ];
}

/** The trim's settings, read by phillymesh-chat-media-trim. */
export function mediaSettings(dataDir: string, m: SpacesMedia): Record<string, unknown> {
    return {
        bucket: m.bucket,
        endpoint: spacesEndpoint(m.region),
        region: m.region,
        mediaStore: dataPaths(dataDir).media,
        cacheDays: m.cacheDays,
        cacheMaxMb: m.cacheMaxMb,
        homeserverConfig: `${SERVER_PATHS.synapseConfigDir}/homeserver.yaml`,
    };
}

/** What the media-storage step installs: the trim program, its settings, unit and timer. */
export function mediaStepFiles(dataDir: string, m: SpacesMedia): ServerFile[] {
    const root = (path: string, content: string, mode: "0644" | "0755"): ServerFile => ({ path, content, mode, owner: "root:root" });
    return [
        root(MEDIA_SETTINGS_FILE, JSON.stringify(mediaSettings(dataDir, m), null, 2), "0644"),
        root(`/usr/local/sbin/${MEDIA_TRIM_UNIT}`, readFile("server/sbin/phillymesh-chat-media-trim.py"), "0755"),
        root(
            `/etc/systemd/system/${MEDIA_TRIM_UNIT}.service`,
            renderTemplate("server/systemd/media-trim.service", { data_dir: dataDir, media: dataPaths(dataDir).media, venv: SERVER_PATHS.synapseCurrent }),
            "0644",
        ),
        root(`/etc/systemd/system/${MEDIA_TRIM_UNIT}.timer`, readFile("server/systemd/media-trim.timer"), "0644"),
    ];
}

export interface MediaBucketArgs {
    readonly media: SpacesMedia;
}

/**
 * The Spaces bucket: private, protected, never emptied by a destroy (forceDestroy false). Its own
 * DigitalOcean provider carries the Spaces keys (the provider's spacesAccessId/spacesSecretKey; its
 * API token comes from DIGITALOCEAN_TOKEN as the default provider's does).
 */
export class MediaBucket extends pulumi.ComponentResource {
    public readonly bucket: digitalocean.SpacesBucket;

    constructor(name: string, args: MediaBucketArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:MediaBucket", name, {}, opts);
        const provider = new digitalocean.Provider(
            `${name}-spaces`,
            { spacesAccessId: args.media.accessKeyId, spacesSecretKey: args.media.secretKey },
            { parent: this },
        );
        this.bucket = new digitalocean.SpacesBucket(
            `${name}-media`,
            { name: args.media.bucket, region: args.media.region, acl: "private", forceDestroy: false },
            // Data is sacred: media trimmed from the volume lives only here. Protected, so a plan that
            // would delete it (a destroy, mediaStorage back to local) fails at preview; and once an
            // operator unprotects it on purpose, it is still only dropped from the stack, never deleted.
            { parent: this, provider, protect: true, retainOnDelete: true },
        );
        this.registerOutputs({ bucket: this.bucket.name });
    }
}

export interface MediaStorageArgs {
    readonly target: Target;
    readonly dataDir: string;
    readonly media: SpacesMedia;
}

/**
 * The media-storage step, after the synapse step (Synapse already writes new media to the bucket):
 * the media already on the server uploaded and verified, then the daily trim. Its teardown stops
 * the trim, and refuses to go on while media trimmed from the volume lives only in the bucket.
 */
export class MediaStorage extends pulumi.ComponentResource {
    public readonly ready: pulumi.Resource;

    constructor(name: string, args: MediaStorageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:MediaStorage", name, {}, opts);
        const step = new RemoteStep(
            `${name}-media-storage`,
            {
                target: args.target,
                script: "media-storage.sh",
                env: { DATA_DIR: args.dataDir, BUCKET: args.media.bucket },
                files: mediaStepFiles(args.dataDir, args.media),
                teardown: { script: "media-storage-off.sh", env: { DATA_DIR: args.dataDir, BUCKET: args.media.bucket } },
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        this.ready = step.command;
        this.registerOutputs({});
    }
}
