// The workload's media: images (PNG, which Synapse thumbnails; the client then fetches a thumbnail)
// and binary files, uploaded and posted to a room as m.image / m.file, spread over the message phase.
import * as zlib from "node:zlib";
import { percentile } from "./figures.ts";
import { call } from "./matrix.ts";
import type { Client } from "./usersAndRooms.ts";
import type { Workload, WorkloadResult } from "./workload.ts";
import { rng } from "./workloadPlan.ts";

/** A PNG (RGB, noise over a gradient, so it does not compress much) of about `bytes` bytes. */
export function makePng(bytes: number, r: () => number): { data: Uint8Array; width: number; height: number } {
    const width = Math.max(16, Math.round(Math.sqrt((bytes / 3) * (4 / 3))));
    const height = Math.max(12, Math.round((width * 3) / 4));
    const raw = Buffer.alloc((width * 3 + 1) * height);
    for (let y = 0; y < height; y++) {
        const row = y * (width * 3 + 1);
        raw[row] = 0;
        for (let x = 0; x < width; x++) {
            const o = row + 1 + x * 3;
            raw[o] = (x * 255) / width + r() * 64;
            raw[o + 1] = (y * 255) / height + r() * 64;
            raw[o + 2] = r() * 255;
        }
    }
    const chunk = (type: string, body: Buffer) => {
        const len = Buffer.alloc(4);
        len.writeUInt32BE(body.length);
        const tb = Buffer.concat([Buffer.from(type, "ascii"), body]);
        const crc = Buffer.alloc(4);
        crc.writeUInt32BE(zlib.crc32(tb) >>> 0);
        return Buffer.concat([len, tb, crc]);
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(width, 0);
    ihdr.writeUInt32BE(height, 4);
    ihdr[8] = 8; // bit depth
    ihdr[9] = 2; // RGB
    const png = Buffer.concat([
        Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
        chunk("IHDR", ihdr),
        chunk("IDAT", zlib.deflateSync(raw, { level: 6 })),
        chunk("IEND", Buffer.alloc(0)),
    ]);
    return { data: new Uint8Array(png), width, height };
}

export class MediaUploads {
    readonly result: WorkloadResult["media"] = { uploads: 0, images: 0, bytes: 0, thumbnailsFetched: 0, uploadP50Ms: null, errors: [] };
    private readonly uploadMs: number[] = [];
    private readonly w: Workload;
    /** sizes and contents: a generator of their own (seed + 1), the same on every server */
    private readonly r: () => number;

    constructor(w: Workload) {
        this.w = w;
        this.r = rng(w.seed + 1);
    }

    /** Upload k: uploaded by c, posted to the room, and for an image a thumbnail fetched; errors are counted, not thrown. */
    async send(k: number, c: Client, roomId: string): Promise<void> {
        try {
            const size = this.w.mediaBytes[0] + Math.floor(this.r() * (this.w.mediaBytes[1] - this.w.mediaBytes[0]));
            const image = k < Math.round(this.w.mediaUploads * this.w.mediaImageShare);
            const file = image
                ? makePng(size, this.r)
                : { data: new Uint8Array(Buffer.from(Array.from({ length: size }, () => Math.floor(this.r() * 256)))), width: 0, height: 0 };
            const t = performance.now();
            const up = await call<{ content_uri: string }>(
                c.base,
                c.token,
                "POST",
                `/_matrix/media/v3/upload?filename=${image ? `photo-${k}.png` : `notes-${k}.bin`}`,
                file.data,
                {
                    contentType: image ? "image/png" : "application/octet-stream",
                },
            );
            this.uploadMs.push(performance.now() - t);
            this.result.uploads++;
            this.result.bytes += file.data.length;
            await call(c.base, c.token, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/b${this.w.seed}-media-${k}`, {
                msgtype: image ? "m.image" : "m.file",
                body: image ? `photo-${k}.png` : `notes-${k}.bin`,
                url: up.content_uri,
                info: {
                    size: file.data.length,
                    mimetype: image ? "image/png" : "application/octet-stream",
                    ...(image ? { w: file.width, h: file.height } : {}),
                },
            });
            if (image) {
                this.result.images++;
                // What a client does next: fetch a thumbnail (authenticated media).
                const mxc = up.content_uri.replace("mxc://", "");
                await call(c.base, c.token, "GET", `/_matrix/client/v1/media/thumbnail/${mxc}?width=320&height=240&method=scale`, undefined, {
                    timeoutMs: 60_000,
                });
                this.result.thumbnailsFetched++;
            }
        } catch (e) {
            this.result.errors.push(String(e));
        }
    }

    /** The figures, with the median upload time. */
    summary(): WorkloadResult["media"] {
        const p50 = percentile(this.uploadMs, 50);
        return { ...this.result, uploadP50Ms: p50 === null ? null : Math.round(p50) };
    }
}
