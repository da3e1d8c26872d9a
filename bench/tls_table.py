#!/usr/bin/env python3
"""Renders bench/run tls's results.jsonl: wss beside ws, old and new gateway.

   tls_table.py results.jsonl

Rows: gateway RSS per idle logged-in connection (wss set up 512 at a time per
client thread and one at a time, ws); gateway CPU per
connect + upgrade + login over ws, over wss with a full TLS handshake and with a
resumed one; gateway CPU per fan-out delivery (wss, ws). The resumed figure
takes out the few full handshakes of the --tls-resume run (each client
thread's first) at the full run's cost per setup.
"""
import json
import sys


def fmt(v, digits=0):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    return f"{v:,.{digits}f}"


def get(r, *path):
    for k in path:
        if not isinstance(r, dict) or k not in r:
            return None
        r = r[k]
    return r


def resumed_cost(resume_run, full_run):
    """Gateway µs per resumed setup: the run's setup CPU minus its full handshakes."""
    cpu = get(resume_run, "setup", "cpu", "gateway_cpu_seconds")
    full = get(resume_run, "setup", "tls", "full_handshakes")
    resumed = get(resume_run, "setup", "tls", "resumed_handshakes")
    per_full = get(full_run, "setup", "cpu", "gateway_cpu_us_per_setup")
    if cpu is None or cpu < 0 or not resumed or full is None or per_full is None:
        return None
    return (cpu * 1e6 - full * per_full) / resumed


def main():
    runs = {}
    for line in open(sys.argv[1]):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if str(r.get("scenario", "")).startswith("tls-"):
            runs[(r["scenario"], r.get("side", "new"))] = r
    sides = [s for s in ("old", "new") if any(k[1] == s for k in runs)]
    if not sides:
        print("(no tls-* runs)")
        return

    def run(scenario, side):
        return runs.get((f"tls-{scenario}", side))

    def handshakes(side):
        r = run("hold-wss-resume", side)
        full, resumed = get(r, "setup", "tls", "full_handshakes"), get(r, "setup", "tls", "resumed_handshakes")
        return f"{fmt(resumed)} resumed, {fmt(full)} full" if full is not None else "–"

    def ratio(a, b):
        return a / b if a is not None and b else None

    n_hold = get(run("hold-wss", sides[-1]), "held")
    n_fan = get(run("fanout-wss", sides[-1]), "members")
    rows = [
        (f"gateway RSS per idle logged-in **wss** connection, B ({fmt(n_hold)} held; set up 512 "
         "at a time per client thread)",
         lambda s: get(run("hold-wss", s), "gateway", "bytes_per_connection"), 0),
        ("same, set up one at a time per client thread (`--inflight 1`), B",
         lambda s: get(run("hold-wss-seq", s), "gateway", "bytes_per_connection"), 0),
        ("same, **ws**, B", lambda s: get(run("hold-ws", s), "gateway", "bytes_per_connection"), 0),
        ("gateway CPU per connect + **full** TLS handshake + upgrade + login, µs",
         lambda s: get(run("hold-wss", s), "setup", "cpu", "gateway_cpu_us_per_setup"), 1),
        ("gateway CPU per connect + **resumed** TLS handshake + upgrade + login, µs",
         lambda s: resumed_cost(run("hold-wss-resume", s), run("hold-wss", s)), 1),
        ("resumed / full", lambda s: ratio(resumed_cost(run("hold-wss-resume", s), run("hold-wss", s)),
                                           get(run("hold-wss", s), "setup", "cpu",
                                               "gateway_cpu_us_per_setup")), 2),
        ("handshakes of the --tls-resume run", handshakes, None),
        ("same as full, one at a time per client thread, µs",
         lambda s: get(run("hold-wss-seq", s), "setup", "cpu", "gateway_cpu_us_per_setup"), 1),
        ("gateway CPU per connect + upgrade + login over ws, µs",
         lambda s: get(run("hold-ws", s), "setup", "cpu", "gateway_cpu_us_per_setup"), 1),
        (f"gateway CPU per fan-out delivery, **wss**, µs ({fmt(n_fan)} members)",
         lambda s: get(run("fanout-wss", s), "deliveries", "gateway_cpu_us_per_delivery"), 2),
        ("same, **ws**, µs", lambda s: get(run("fanout-ws", s), "deliveries", "gateway_cpu_us_per_delivery"), 2),
        ("wss / ws per delivery",
         lambda s: ratio(get(run("fanout-wss", s), "deliveries", "gateway_cpu_us_per_delivery"),
                         get(run("fanout-ws", s), "deliveries", "gateway_cpu_us_per_delivery")), 2),
        ("deliveries lost (wss, ws)",
         lambda s: f"{fmt(get(run('fanout-wss', s), 'deliveries', 'lost'))}, "
                   f"{fmt(get(run('fanout-ws', s), 'deliveries', 'lost'))}", None),
        ("generator CPU per setup: full, resumed, ws, µs",
         lambda s: ", ".join(fmt(get(run(m, s), "setup", "cpu", "generator_cpu_us_per_setup"))
                             for m in ("hold-wss", "hold-wss-resume", "hold-ws")), None),
        ("generator RSS per held connection: wss, ws, B",
         lambda s: f"{fmt(get(run('hold-wss', s), 'client', 'bytes_per_connection'))}, "
                   f"{fmt(get(run('hold-ws', s), 'client', 'bytes_per_connection'))}", None),
        ("TLS", lambda s: " ".join(filter(None, (get(run("hold-wss", s), "setup", "tls", "version"),
                                                 get(run("hold-wss", s), "setup", "tls", "cipher"))))
         or None, None),
        ("load average before (first run)",
         lambda s: get(run("hold-ws", s), "load_average_before"), 2),
    ]
    labels = {s: next((r.get("side_label") for (sc, sd), r in runs.items() if sd == s and r.get("side_label")), s)
              for s in sides}
    head = "| figure | " + " | ".join(labels[s] for s in sides) + (" | new / old |" if len(sides) == 2 else " |")
    print(head)
    print("|---" * (len(sides) + 1 + (len(sides) == 2)) + "|")
    for title, value, digits in rows:
        vals = [value(s) for s in sides]
        cells = [fmt(v, digits or 0) if digits is not None or isinstance(v, str) else fmt(v) for v in vals]
        line = f"| {title} | " + " | ".join(cells)
        if len(sides) == 2:
            old, new = vals
            line += " | " + (f"{new / old:.2f}" if digits is not None and isinstance(old, (int, float))
                             and isinstance(new, (int, float)) and old else "")
        print(line + " |")
    bad = [f"{sc} ({sd})" for (sc, sd), r in sorted(runs.items()) if not r.get("ok")]
    if bad:
        print(f"\nnot ok (see the .out files): {', '.join(bad)}")


if __name__ == "__main__":
    main()
