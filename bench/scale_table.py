#!/usr/bin/env python3
"""Renders `bench/run cluster-scale` (bench/cluster.sh) as Markdown: how one appID's
cross-node unicasts spread over the masters of a Redis Cluster.

   scale_table.py RUN_DIR...     (each with the results.jsonl of one cluster_scenario)

Per run (gateway side × masters) and unicast rate:
- measured: unicasts sent per second (and delivered, lost), the latency across nodes, the
  nodes' CPU per unicast, and per master its Redis CPU per unicast (CPU time of all its
  threads from /proc/PID/task/*/schedstat between the phase's marks, minus that master's own
  rate in the idle phase, divided by the unicasts sent cluster-wide) and its share of the
  Redis CPU of all masters; "balanced" when every share is within ±25 % of the mean share;
- derived: the Redis ceiling, 1 core / (the busiest master's CPU per unicast): the unicasts/s
  at which that master would be at 100 % of a core (Redis runs commands on one thread). When
  the shares are even it is the sum of what each master carries at 1 core; an uneven master
  caps it. On a 2-core machine shared with the nodes and load clients, three masters cannot
  all saturate, so this ceiling is computed, not observed.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_table import Run, fmt, merged  # noqa: E402


def per_process_seconds(run, a, b, key):
    """CPU seconds per process of one role between two marks, from *_cpu_ns (else ticks)."""
    ns_key = key + "_cpu_ns"
    if ns_key in run.marks[a] and None not in run.marks[a][ns_key] + run.marks[b][ns_key]:
        return [(y - x) / 1e9 for x, y in zip(run.marks[a][ns_key], run.marks[b][ns_key])]
    hz = run.marks[a]["hz"]
    return [(y - x) / hz for x, y in zip(run.marks[a][key + "_ticks"], run.marks[b][key + "_ticks"])]


def main():
    rows, summary = [], {}
    for d in sys.argv[1:]:
        path = os.path.join(d, "results.jsonl")
        if not os.path.exists(path):
            print(f"(no results in {d})")
            continue
        run = Run(path)
        c = run.config
        name = os.path.basename(os.path.normpath(d))
        side = name.split("-")[1] if name.startswith("scale-") else name
        masters = c.get("redis_processes", 1)
        if not run.has("idle-start", "idle-end"):
            print(f"({name}: no idle phase; the run stopped early)")
            continue
        idle_w = run.wall("idle-start", "idle-end")
        idle = [s / idle_w for s in per_process_seconds(run, "idle-start", "idle-end", "redis")]
        phases = sorted((p for p in run.push if p.startswith("unicast")),
                        key=lambda p: run.push[p]["messages"]["target_rate"])
        for phase in phases:
            a, b = phase + "-start", phase + "-end"
            if not run.has(a, b):
                continue
            m = run.push[phase]["messages"]
            sent = m["sent"]
            if not sent:
                continue
            uni = run.phase(phase)
            got = sum(r["deliveries"] for r in uni)
            lost = sum(r.get("lost", 0) for r in uni)
            w = run.wall(a, b)
            raw = per_process_seconds(run, a, b, "redis")
            net = [max(0.0, s - r * w) for s, r in zip(raw, idle)]
            us = [s * 1e6 / sent for s in net]
            total = sum(us)
            shares = [u / total * 100 if total else 0 for u in us]
            mean = 100 / len(shares)
            worst = max(abs(s - mean) / mean * 100 for s in shares)
            ceiling = 1e6 / max(us) if max(us) > 0 else None
            nodes = run.net(a, b, "nodes") * 1e6 / sent
            lat = merged(uni)
            carried = sent >= 0.9 * m["requested"] and lost == 0
            rows.append(
                f"| {side} | {masters} | {fmt(m['target_rate'])} | {fmt(m['send_rate'])}"
                f"{'' if carried else ' (not carried)'} | {fmt(got)} / lost {fmt(lost)} | "
                f"{fmt(lat['p50'] / 1000, 1) if lat else '–'} / {fmt(lat['p99'] / 1000, 1) if lat else '–'} | "
                f"{fmt(nodes, 1)} | {fmt(total, 1)} | "
                f"{' / '.join(fmt(u, 1) for u in us)} | {' / '.join(fmt(s, 0) + ' %' for s in shares)} | "
                f"{'yes' if worst <= 25 else 'no'} ({fmt(worst, 0)} %) | "
                f"{' / '.join(fmt(s / w, 2) for s in raw)} | {fmt(ceiling)} |")
            summary.setdefault(side, {}).setdefault(masters, {})[m["target_rate"]] = {
                "carried": carried, "sent_rate": m["send_rate"], "ceiling": ceiling, "top": max(shares)}
    print("| gateway | masters | target/s | **sent/s (measured)** | delivered | latency p50 / p99 ms | "
          "nodes CPU µs per unicast (net of idle) | Redis CPU µs per unicast, all masters | "
          "**per master µs per unicast** (net of idle) | **share of Redis CPU** | within ±25 % of the mean | "
          "cores per master (measured) | **ceiling, derived**: 1 core / busiest master's µs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    # Redis CPU per unicast falls as the rate grows (more commands per wake-up), so the
    # master counts are compared at one rate: the highest that every run of the side carried.
    if summary:
        print()
        print("| gateway | compared at (the highest rate every master count carried) | masters | "
              "busiest master's share | **ceiling, derived** | ceiling / 1 master's |")
        print("|---|---|---|---|---|---|")
        for side, runs in sorted(summary.items()):
            common = set.intersection(*({r for r, v in by_rate.items() if v["carried"]}
                                        for by_rate in runs.values()))
            if not common:
                print(f"| {side} | no rate carried by every run | | | | |")
                continue
            rate = max(common)
            one = runs.get(1, {}).get(rate, {}).get("ceiling")
            for masters in sorted(runs):
                v = runs[masters][rate]
                ratio = v["ceiling"] / one if one and v["ceiling"] else None
                print(f"| {side} | {fmt(rate)}/s | {masters} | {fmt(v['top'], 0)} % | "
                      f"{fmt(v['ceiling'])}/s | {fmt(ratio, 2) + '×' if ratio else '–'} |")

    # At saturation every master runs at one core, so the masters are compared at the same
    # load each: M masters at M x r unicasts/s against one master at r (each master then
    # runs about r/s worth of commands, batched alike per wake-up). Pairs of rates present
    # in SCALE_RATES (e.g. "2000 6000") that both runs carried.
    pairs = []
    for side, runs in sorted(summary.items()):
        for masters in sorted(m for m in runs if m > 1):
            for rate, one_v in sorted(runs.get(1, {}).items()):
                v = runs[masters].get(rate * masters)
                if not v or not one_v["carried"] or not v["carried"]:
                    continue
                if not one_v["ceiling"] or not v["ceiling"]:
                    continue
                pairs.append(f"| {side} | {masters} | {fmt(rate * masters)}/s vs one master at "
                             f"{fmt(rate)}/s | {fmt(v['top'], 0)} % | {fmt(v['ceiling'])}/s vs "
                             f"{fmt(one_v['ceiling'])}/s | **{fmt(v['ceiling'] / one_v['ceiling'], 2)}×** |")
    if pairs:
        print()
        print("| gateway | masters | compared at the same load per master | busiest master's share | "
              "**ceiling, derived** | ceiling / 1 master's |")
        print("|---|---|---|---|---|---|")
        print("\n".join(pairs))


if __name__ == "__main__":
    main()
