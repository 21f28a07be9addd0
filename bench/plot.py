#!/usr/bin/env python3
"""Draws procreg_bench's results.json: latency against N, log-log.

    python3 bench/plot.py [results.json] [out.png]

Defaults: build/bench/results.json and docs/bench-latency.png. One panel per
medium (rows: tmpfs, disk) and operation (columns: insert, erase, find, list,
reap); in each, one line per procreg storage, the two system-call floors
(one table file, one file per record), SQLite and the seed (algocline's own
Rust code). A second figure, <out>-contention.png, shows total operations per
second against the number of processes; a third, <out>-multiwriter.png, the
multi-writer rows of procreg_turns_bench (processes taking strict turns,
procreg and the seed against N, per operation). Needs matplotlib (a development tool, not a dependency of
procreg: apt-get install python3-matplotlib).
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OPS = ["insert", "erase", "find", "list", "reap"]
MEDIA = ["tmpfs", "disk"]

# (label, how to pick the figure from a row, style)
SERIES = [
    ("json_table", lambda r: r["procreg_us"] if r["storage"] == "json_table" else None,
     dict(color="tab:blue", marker="o")),
    ("json_table, no shortcut", lambda r: r["procreg_us"] if r["storage"] == "json_table_nocache" else None,
     dict(color="tab:blue", marker="o", linestyle=":", alpha=0.6)),
    ("record_files", lambda r: r["procreg_us"] if r["storage"] == "record_files" else None,
     dict(color="tab:green", marker="s")),
    ("floor, one file", lambda r: r["floor_us"] if r["storage"] == "json_table" else None,
     dict(color="black", linestyle="--", marker=".")),
    ("floor, file per record", lambda r: r["floor_us"] if r["storage"] == "record_files" else None,
     dict(color="gray", linestyle="--", marker=".")),
    ("SQLite (WAL)", lambda r: r["sqlite_us"] if r["storage"] in ("json_table", "record_files") else None,
     dict(color="tab:red", marker="^")),
    ("seed (algocline, Rust)", lambda r: r.get("seed_us") if r["storage"] == "json_table" else None,
     dict(color="tab:orange", marker="D")),
]


def load(path):
    with open(path) as f:
        rows = json.load(f)
    machine = {}
    machine_path = os.path.join(os.path.dirname(path), "machine.json")
    if os.path.exists(machine_path):
        with open(machine_path) as f:
            machine = json.load(f)
    return rows, machine


def latency_figure(rows, machine, out):
    latency = [r for r in rows if "procs" not in r and "writers" not in r and r["storage"] != "claim_file"]
    media = [m for m in MEDIA if any(r["medium"] == m for r in latency)]
    fig, axes = plt.subplots(len(media), len(OPS), figsize=(4.2 * len(OPS), 3.6 * len(media)), squeeze=False)
    for i, medium in enumerate(media):
        for j, op in enumerate(OPS):
            ax = axes[i][j]
            for label, pick, style in SERIES:
                points = sorted({r["n"]: pick(r) for r in latency
                                 if r["medium"] == medium and r["op"] == op and pick(r) is not None}.items())
                if points:
                    ax.plot([p[0] for p in points], [p[1] for p in points], label=label, **style)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{op} — {medium}" + (" (fsync)" if medium == "disk" else ""))
            ax.set_xlabel("records (N)")
            if j == 0:
                ax.set_ylabel("median latency (µs)")
            ax.grid(True, which="both", alpha=0.25)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle("procreg: latency per operation (one transaction) against N — " + describe(machine), fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    fig.savefig(out, dpi=90)
    plt.close(fig)


def contention_figure(rows, machine, out):
    rows = [r for r in rows if "procs" in r]
    if not rows:
        return False
    media = [m for m in MEDIA if any(r["medium"] == m for r in rows)]
    fig, axes = plt.subplots(1, len(media), figsize=(6 * len(media), 4), squeeze=False)
    for i, medium in enumerate(media):
        ax = axes[0][i]
        for storage, color in (("json_table", "tab:blue"), ("record_files", "tab:green")):
            pts = sorted((r["procs"], r["ops_per_s"], r.get("floor_ops_per_s")) for r in rows
                         if r["medium"] == medium and r["storage"] == storage)
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=color, label=storage)
            if all(p[2] for p in pts):
                ax.plot([p[0] for p in pts], [p[2] for p in pts], linestyle="--", color=color, alpha=0.6,
                        label=f"floor ({storage})")
        sq = sorted({(r["procs"], r["sqlite_ops_per_s"]) for r in rows
                     if r["medium"] == medium and r.get("sqlite_ops_per_s")})
        if sq:
            ax.plot([p[0] for p in sq], [p[1] for p in sq], marker="^", color="tab:red", label="SQLite (WAL)")
        n = rows[0]["n"]
        ax.set_title(f"{medium}: insert+erase on one registry of {n} records")
        ax.set_xlabel("processes")
        ax.set_ylabel("total operations / s")
        ax.set_yscale("log")
        ax.set_xticks(sorted({r["procs"] for r in rows}))
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8)
    fig.suptitle("procreg: contention — " + describe(machine), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return True


def multiwriter_figure(rows, machine, out):
    rows = [r for r in rows if "writers" in r]
    if not rows:
        return False
    writers = sorted({r["writers"] for r in rows})
    fig, axes = plt.subplots(len(writers), len(OPS), figsize=(4.2 * len(OPS), 3.6 * len(writers)), squeeze=False)
    series = [
        ("procreg json_table, op", "procreg_us", dict(color="tab:blue", marker="o")),
        ("procreg json_table, turn", "turn_us", dict(color="tab:blue", marker="o", linestyle=":", alpha=0.6)),
        ("seed (algocline), op", "seed_us", dict(color="tab:orange", marker="D")),
        ("seed (algocline), turn", "seed_turn_us", dict(color="tab:orange", marker="D", linestyle=":", alpha=0.6)),
    ]
    for i, p in enumerate(writers):
        for j, op in enumerate(OPS):
            ax = axes[i][j]
            for label, field, style in series:
                points = sorted((r["n"], r[field]) for r in rows
                                if r["writers"] == p and r["op"] == op and r.get(field) is not None)
                if points:
                    ax.plot([q[0] for q in points], [q[1] for q in points], label=label, **style)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{op} — {p} processes taking turns")
            ax.set_xlabel("records (N)")
            if j == 0:
                ax.set_ylabel("µs (op: median inside; turn: wall / turns)")
            ax.grid(True, which="both", alpha=0.25)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle("procreg vs the seed, every transaction reading the other's write (tmpfs) — " + describe(machine),
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return True


def describe(machine):
    if not machine:
        return "machine unknown"
    fs = ", ".join(f"{m['medium']}={m['filesystem']}" for m in machine.get("media", []))
    return f"{machine.get('cpus')} CPUs, {machine.get('cpu_model')}, {machine.get('kernel')}, {fs}"


def main(argv):
    src = argv[1] if len(argv) > 1 else "build/bench/results.json"
    out = argv[2] if len(argv) > 2 else "docs/bench-latency.png"
    rows, machine = load(src)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    latency_figure(rows, machine, out)
    print(f"plot: wrote {out}")
    root, ext = os.path.splitext(out)
    contention_out = (root[: -len("-latency")] if root.endswith("-latency") else root) + "-contention" + ext
    if contention_figure(rows, machine, contention_out):
        print(f"plot: wrote {contention_out}")
    multiwriter_out = (root[: -len("-latency")] if root.endswith("-latency") else root) + "-multiwriter" + ext
    if multiwriter_figure(rows, machine, multiwriter_out):
        print(f"plot: wrote {multiwriter_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
