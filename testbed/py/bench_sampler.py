# The benchmark's memory sampler, run on a guest by bench/lib/sampler.ts (testbed/lib/guest.ts's
# guestPythonCommand): once a second, RSS and PSS of every process from /proc/PID/smaps_rollup, grouped
# as synapse / postgres / nginx / other, their CPU seconds, and Synapse's main pid (a change = a
# restart), as one JSON line. The sampler and its ssh session are left out. Ends by itself after
# sys.argv[2] seconds, or at its first write after the ssh session is gone.
import json, os, sys, time
me = os.getpid()
# Leave out the sampler and its ssh session (sshd's per-connection processes).
skip = {me}
p = os.getppid()
while p > 1:
    try:
        cmd = open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace")
        if not cmd.startswith("sshd") or "listener" in cmd or cmd.startswith("/usr/sbin/sshd"): break
        skip.add(p)
        p = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        break
def kb(pid):
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"): rss = int(line.split()[1])
                elif line.startswith("Pss:"): pss = int(line.split()[1])
    except OSError:
        return None
    return rss, pss
TCK = os.sysconf("SC_CLK_TCK")
deadline = time.time() + float(sys.argv[2])
nxt = time.time()
while time.time() < deadline:
    groups = {k: [0, 0, 0, 0.0] for k in ("synapse", "postgres", "nginx", "other")}
    syn_pid = None
    for d in os.listdir("/proc"):
        if not d.isdigit(): continue
        pid = int(d)
        if pid in skip: continue
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        m = kb(pid)
        if m is None: continue
        try:
            st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            cpu = (int(st[11]) + int(st[12])) / TCK
        except (OSError, ValueError, IndexError):
            cpu = 0.0
        if "synapse.app.homeserver" in cmd:
            g = "synapse"; syn_pid = pid
        elif "synapse.app.generic_worker" in cmd:
            g = "synapse"  # worker mode: Synapse's memory is all of its processes
        elif comm == "postgres" or cmd.startswith("postgres:") or "/postgresql/" in cmd.split(" ")[0]:
            g = "postgres"
        elif comm == "nginx":
            g = "nginx"
        else:
            g = "other"
        groups[g][0] += m[0]; groups[g][1] += m[1]; groups[g][2] += 1; groups[g][3] += cpu
    try:
        sys.stdout.write(json.dumps({"t": time.time(), "g": groups, "synapsePid": syn_pid}) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        break
    nxt += 1.0
    time.sleep(max(0.0, nxt - time.time()))
