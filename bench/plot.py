"""Memory over time, tuned vs defaults: bench/results/samples.json -> PNG (python3 + matplotlib).

usage: plot.py SAMPLES.json OUT.png [TUNED-LABEL]
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

samples_file, out = sys.argv[1], sys.argv[2]
data = json.load(open(samples_file))
tuned_label = sys.argv[3] if len(sys.argv) > 3 else "bench1, tuned"
runs = [("tuned", tuned_label, "tab:blue"), ("defaults", "bench2, stock defaults", "tab:orange")]

fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 9), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
for key, label, color in runs:
    s = data.get(key)
    if not s:
        continue
    t = [x["t"] for x in s]
    ax1.plot(t, [x["mb"]["total"] for x in s], color=color, lw=2, label=f"{label}: total PSS")
    cg = [(x["t"], x["cgroup"]["rssMb"] + x["cgroup"]["shmemMb"]) for x in s if x.get("cgroup")]
    if cg:
        ax1.plot([a for a, _ in cg], [b for _, b in cg], color=color, lw=1, ls="--", alpha=0.7, label=f"{label}: cgroup rss+shmem")
    for g, ls in (("synapse", "-"), ("postgres", "--"), ("nginx", ":")):
        ax2.plot(t, [x["mb"][g] for x in s], color=color, ls=ls, lw=1.5, label=f"{label}: {g}")
    # Phase boundaries (when the phase changes between samples).
    prev = None
    for x in s:
        if x["phase"] != prev and prev is not None and x["phase"] != "cleanup":
            for ax in (ax1, ax2):
                ax.axvline(x["t"], color=color, alpha=0.35, lw=1)
            ax1.annotate(x["phase"], (x["t"], 0.98), xycoords=("data", "axes fraction"), color=color,
                         fontsize=8, rotation=90, va="top", ha="right")
        prev = x["phase"]

ax1.axhline(450, color="green", ls=":", lw=1.5, label="target: steady <= 450 MB")
ax1.axhline(600, color="red", ls=":", lw=1.5, label="target: peak <= 600 MB")
ax1.axhline(1024, color="black", ls="-.", lw=1, label="guest memory cap (1 GiB)")
ax1.set_ylabel("MB")
ax1.set_title("Memory of the whole service during the standard workload (1 s samples)")
ax1.legend(fontsize=8, loc="lower right")
ax1.set_ylim(0, 1100)
ax1.grid(alpha=0.3)
ax2.set_ylabel("PSS, MB")
ax2.set_xlabel("seconds since sampling started (baseline, setup, messages, idle)")
ax2.legend(fontsize=7, ncol=2, loc="upper left")
ax2.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(out, dpi=110)
print(out)
