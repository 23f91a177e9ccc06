// lib.sh's install_files run by real bash on a temporary directory: the files a step declares land
// with their content, mode and owner, only when something differs, and never through a path a
// service user could change (issue 15). As root (the testbed, this machine) the owner checks are
// root's; as another user (CI) that user stands in for root through TRUSTED_UID.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { installFilesArray, readFile, RenderedFile } from "../components/templates";

const uid = process.getuid!();
const user = spawnSync("id", ["-un"], { encoding: "utf8" }).stdout.trim();
const group = spawnSync("id", ["-gn"], { encoding: "utf8" }).stdout.trim();
const OWNER = `${user}:${group}`;
/** A uid that is neither root nor us: a service user. */
const OTHER_UID = uid === 65534 ? 65533 : 65534;

let dir: string;
beforeEach(() => {
    dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "install-files-")));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs `body` after lib.sh with these files declared; owners in files are replaced by ours. */
function run(files: Omit<RenderedFile, "owner">[], body: string) {
    const declared = installFilesArray(files.map((f) => ({ ...f, owner: "root:root" })))
        .split(`'root:root'`)
        .join(`'${OWNER}'`);
    const script = [declared, `TRUSTED_UID=${uid}`, readFile("lib/lib.sh"), body].join("\n");
    // stdin from /dev/null: bash reads ~/.bashrc when its stdin is a socket (as node's pipes are).
    return spawnSync("bash", ["-c", script], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], env: { PATH: process.env.PATH, STEP_NAME: "t" } });
}

const mode = (p: string) => (fs.statSync(p).mode & 0o777).toString(8);

test("installs every declared file (missing directories made), then changes nothing on a second run", () => {
    const a = path.join(dir, "etc", "new", "a.conf");
    const b = path.join(dir, "b.secret");
    const files = [
        { path: a, content: "one\ntwo", mode: "0644" as const },
        { path: b, content: "it's $(secret)", mode: "0600" as const },
    ];
    const first = run(files, `install_files; echo "CHANGED=$CHANGED"; file_changed ${a} && echo a-changed; file_changed /nowhere || echo nowhere-unchanged`);
    expect(first.stderr).toBe("");
    expect(first.stdout).toContain("CHANGED=1\na-changed\nnowhere-unchanged");
    expect(fs.readFileSync(a, "utf8")).toBe("one\ntwo\n");
    expect(fs.readFileSync(b, "utf8")).toBe("it's $(secret)\n");
    expect([mode(a), mode(b), mode(path.dirname(a))]).toEqual(["644", "600", "755"]);
    // No temp file is left beside them.
    expect(fs.readdirSync(dir).sort()).toEqual(["b.secret", "etc"]);

    const again = run(files, `install_files; echo "CHANGED=$CHANGED"; file_changed ${a} ${b} || echo none-changed`);
    expect(again.stdout).toBe("CHANGED=0\nnone-changed\n");

    fs.chmodSync(b, 0o644);
    const modeOnly = run(files, `install_files; file_changed ${b} && echo b-changed; file_changed ${a} || echo a-unchanged`);
    expect(modeOnly.stdout).toContain("b-changed\na-unchanged");
    expect(mode(b)).toBe("600");
});

test("file_declared tells an optional file apart", () => {
    const r = run([{ path: path.join(dir, "x"), content: "x", mode: "0644" }], `file_declared ${dir}/x && echo yes; file_declared ${dir}/y || echo no`);
    expect(r.stdout).toBe("yes\nno\n");
});

test("refuses a destination that is a symlink, and leaves what it points to alone", () => {
    const target = path.join(dir, "shadow");
    fs.writeFileSync(target, "precious\n", { mode: 0o640 });
    const dest = path.join(dir, "a.conf");
    fs.symlinkSync(target, dest);
    const r = run([{ path: dest, content: "attacker's", mode: "0644" }], "install_files; echo not-reached");
    expect(r.status).not.toBe(0);
    expect(r.stdout).not.toContain("not-reached");
    expect(r.stderr).toContain(`refusing to use ${dest}: it is a symlink`);
    expect(fs.readFileSync(target, "utf8")).toBe("precious\n");
    expect(mode(target)).toBe("640");
});

test("refuses a directory on the way that others may write, or a symlink that is not ours", () => {
    const open = path.join(dir, "open");
    fs.mkdirSync(open);
    fs.chmodSync(open, 0o775);
    const r = run([{ path: path.join(open, "sub", "a.conf"), content: "x", mode: "0644" }], "install_files");
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(`refusing to write below ${open}: mode 775 lets others than root change it`);
    expect(fs.existsSync(path.join(open, "sub"))).toBe(false);

    // A symlinked parent is followed only when it is root's own (as /etc/letsencrypt is).
    const real = path.join(dir, "real");
    fs.mkdirSync(real);
    const link = path.join(dir, "link");
    fs.symlinkSync(real, link);
    const ours = run([{ path: path.join(link, "a.conf"), content: "x", mode: "0644" }], "install_files");
    expect(ours.stderr).toBe("");
    expect(fs.readFileSync(path.join(real, "a.conf"), "utf8")).toBe("x\n");
    if (uid === 0) {
        // Only root can give a link or a directory to someone else; then it is refused.
        fs.lchownSync(link, OTHER_UID, OTHER_UID);
        const theirs = run([{ path: path.join(link, "b.conf"), content: "x", mode: "0644" }], "install_files");
        expect(theirs.stderr).toContain(`refusing to write below ${link}: it belongs to uid ${OTHER_UID}, not root`);
        const owned = path.join(dir, "service");
        fs.mkdirSync(owned);
        fs.chownSync(owned, OTHER_UID, OTHER_UID);
        const below = run([{ path: path.join(owned, "c.conf"), content: "x", mode: "0644" }], "install_files");
        expect(below.stderr).toContain(`refusing to write below ${owned}: it belongs to uid ${OTHER_UID}, not root`);
        expect(fs.readdirSync(owned)).toEqual([]);
    }
});

test("refuse_symlink stops a step before it acts on a link", () => {
    const link = path.join(dir, "media");
    fs.symlinkSync("/etc", link);
    const r = run([], `refuse_symlink ${dir} ${link}; echo not-reached`);
    expect(r.stderr).toContain(`refusing to use ${link}: it is a symlink (to /etc)`);
    expect(r.stdout).toBe("");
});

test("the declared files are checked before anything is sent", () => {
    const f = { content: "x", mode: "0644", owner: "root:root" } as const;
    expect(() => installFilesArray([{ ...f, path: "relative/x" }])).toThrow(/bad file path/);
    expect(() => installFilesArray([{ ...f, path: "/etc/../root/x" }])).toThrow(/bad file path/);
    expect(() =>
        installFilesArray([
            { ...f, path: "/etc/x" },
            { ...f, path: "/etc/x" },
        ]),
    ).toThrow(/declared twice/);
    expect(() => installFilesArray([{ ...f, path: "/etc/x", mode: "644" as never }])).toThrow(/bad mode/);
    expect(() => installFilesArray([{ ...f, path: "/etc/x", owner: "root;reboot" as never }])).toThrow(/bad owner/);
});
