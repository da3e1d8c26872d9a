#!/usr/bin/env python3
"""Renders bench/run's results.jsonl as the Markdown table of bench/README.md."""
import json
import sys


def fmt(v, unit=""):
    if v is None:
        return "–"
    if isinstance(v, float):
        v = round(v) if abs(v) >= 100 else round(v, 2)
    if isinstance(v, int) and abs(v) >= 10000:
        v = f"{v:,}"
    return f"{v}{unit}"


def row(r):
    m, s = r.get("mode"), r.get("setup", {})
    name = r.get("scenario", m)
    setup = f"{fmt(s.get('logged_in'))} in {fmt(s.get('seconds'))} s ({fmt(s.get('logins_per_second'))}/s)"
    if s.get("stopped_early"):
        setup += f", stopped: {s['stopped_early']}"
    fails = ", ".join(f"{k} {v}" for k, v in r.get("failures", {}).items()) or "0"
    if m == "hold":
        g, c, k = r.get("gateway", {}), r.get("client", {}), r.get("kernel_slab", {})
        result = (f"gateway {fmt(g.get('bytes_per_connection'))} B/conn (RSS {fmt(g.get('rss_before_kb'))} → "
                  f"{fmt(g.get('rss_held_kb'))} kB); client {fmt(c.get('bytes_per_connection'))} B/conn; "
                  f"kernel slab {fmt(k.get('bytes_per_connection_both_ends'))} B/conn (both ends)")
    elif m in ("fanout", "unicast"):
        d, msg = r.get("deliveries", {}), r.get("messages", {})
        lat = d.get("latency", {})
        result = (f"{fmt(r.get('members'))} members; {fmt(msg.get('sent'))} msgs at {fmt(msg.get('send_rate'))}/s "
                  f"(target {fmt(msg.get('target_rate'))}); {fmt(d.get('per_second'))} deliveries/s; "
                  f"lost {fmt(d.get('lost'))}; p50/p90/p99/max {fmt(lat.get('p50_us'))}/{fmt(lat.get('p90_us'))}/"
                  f"{fmt(lat.get('p99_us'))}/{fmt(lat.get('max_us'))} µs")
        if m == "fanout":
            result += f"; {fmt(r.get('settle', {}).get('presence_frames'))} enter pushes while joining"
    elif m == "churn":
        res = r.get("residue", {})
        result = (f"{fmt(s.get('started'))} connections at {fmt(r.get('rate'))}/s for {fmt(r.get('duration'))} s; "
                  f"endings: {', '.join(f'{k} {v}' for k, v in r.get('endings', {}).items())}; residue: "
                  f"{', '.join(f'{k} {v:+d}' for k, v in res.items())}; back to baseline: {r.get('back_to_baseline')}")
    else:
        result = ""
    return f"| {name} | {setup} | {fails} | {result} | {'yes' if r.get('ok') else 'no'} |"


def main():
    print("| scenario | connect + login | failures | result | accounting ok |")
    print("|---|---|---|---|---|")
    with open(sys.argv[1]) as f:
        for line in f:
            line = line.strip()
            if line:
                print(row(json.loads(line)))


if __name__ == "__main__":
    main()
