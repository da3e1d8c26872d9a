#!/usr/bin/env python3
"""Renders bench/run's results.jsonl as the Markdown table of bench/README.md.

   table.py results.jsonl             # one row per run
   table.py --compare results.jsonl   # bench/run compare: old and new gateway side by side
   table.py --history results.jsonl   # bench/run history / history-redis: history off vs on,
                                      # fill, recovery (embedded and Redis mode)
"""
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
    if s.get("cpu", {}).get("gateway_cpu_us_per_setup") is not None:
        setup += f"; gateway CPU {fmt(s['cpu']['gateway_cpu_us_per_setup'])} µs/setup"
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
        if d.get("gateway_cpu_us_per_delivery") is not None:
            result += f"; gateway CPU {fmt(d['gateway_cpu_us_per_delivery'])} µs/delivery"
        if m == "fanout":
            result += f"; {fmt(r.get('settle', {}).get('presence_frames'))} enter pushes while joining"
    elif m == "churn":
        res = r.get("residue", {})
        result = (f"{fmt(s.get('started'))} connections at {fmt(r.get('rate'))}/s for {fmt(r.get('duration'))} s; "
                  f"endings: {', '.join(f'{k} {v}' for k, v in r.get('endings', {}).items())}; residue: "
                  f"{', '.join(f'{k} {v:+d}' for k, v in res.items())}; back to baseline: {r.get('back_to_baseline')}")
    elif m == "recovery":
        rc = r.get("recovery", {})
        pc = rc.get("per_client_ms", {})
        result = (f"{fmt(rc.get('caught_up'))} of {fmt(rc.get('clients'))} clients recovered "
                  f"{fmt(rc.get('pushes_received'))} of {fmt(rc.get('pushes_expected'))} missed pushes in "
                  f"{fmt(rc.get('seconds'))} s (per client p50/p99 {fmt(pc.get('p50'))}/{fmt(pc.get('p99'))} ms); "
                  f"duplicates {fmt(rc.get('duplicates'))}, gaps {fmt(rc.get('gaps'))}, "
                  f"recovered true {fmt(rc.get('recovered_true'))}; gateway CPU "
                  f"{fmt(rc.get('gateway_cpu_us_per_client'))} µs/client")
    elif m == "fill":
        g, f = r.get("gateway", {}), r.get("fill", {})
        result = (f"{fmt(get(f, 'pushes', 'sent'))} pushes to {fmt(f.get('rooms'))} rooms; "
                  f"{fmt(g.get('stored_pushes'))} kept; RSS {fmt(g.get('rss_bytes_per_stored_push'))} B and "
                  f"imgate_history_bytes {fmt(g.get('metric_bytes_per_stored_push'))} B per kept push "
                  f"(RSS {fmt(g.get('rss_bytes_per_message'))} B per push sent)")
    else:
        result = ""
    return f"| {name} | {setup} | {fails} | {result} | {'yes' if r.get('ok') else 'no'} |"


# ---- compare: two gateways side by side (bench/run compare) -------------------

def get(r, *path):
    for key in path:
        if not isinstance(r, dict):
            return None
        r = r.get(key)
    return r


def series_at(r, second):
    for sample in get(r, "gateway", "rss_after_teardown_series") or []:
        if sample.get("s") == second:
            return sample.get("rss_kb")
    return None


def num(v, digits=0):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if digits == 0 or abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ratio(old, new):
    if not isinstance(old, (int, float)) or not isinstance(new, (int, float)) or isinstance(old, bool):
        return "–"
    if old == 0:
        return "–" if new != 0 else "1.00×"
    return f"{new / old:.2f}×"


def delivery_rows():
    return [
        ("API messages accepted /s", lambda r: get(r, "messages", "send_rate"), 1),
        ("messages skipped (API behind the offered rate)", lambda r: get(r, "messages", "skipped"), 0),
        ("deliveries /s (client side)", lambda r: get(r, "deliveries", "per_second"), 0),
        ("**gateway CPU per delivery, µs**", lambda r: get(r, "deliveries", "gateway_cpu_us_per_delivery"), 2),
        ("generator CPU per delivery, µs", lambda r: get(r, "deliveries", "generator_cpu_us_per_delivery"), 2),
        ("gateway / generator cores while sending",
         lambda r: None if get(r, "cpu_while_sending") is None else
         f"{num(get(r, 'cpu_while_sending', 'gateway_cores'), 2)} / {num(get(r, 'cpu_while_sending', 'generator_cores'), 2)}", None),
        ("delivery latency p50 / p99, ms",
         lambda r: None if get(r, "deliveries", "latency") is None else
         f"{num(get(r, 'deliveries', 'latency', 'p50_us') / 1000, 1)} / {num(get(r, 'deliveries', 'latency', 'p99_us') / 1000, 1)}", None),
        ("lost", lambda r: get(r, "deliveries", "lost"), 0),
    ]


def api_rows():
    def ms(*path):
        return lambda r: None if get(r, "api_probe", *path) is None else get(r, "api_probe", *path) / 1000

    def spread(name):
        return lambda r: None if get(r, "api_probe", name) is None else \
            f"{num(get(r, 'api_probe', name, 'p50_us') / 1000, 2)} / {num(get(r, 'api_probe', name, 'max_us') / 1000, 1)}"
    return [
        ("**/system/state p99, ms**", ms("system_state", "p99_us"), 2),
        ("/system/state p50 / max, ms", spread("system_state"), None),
        ("**/user/sendMessage p99, ms**", ms("send_message", "p99_us"), 2),
        ("/user/sendMessage p50 / max, ms", spread("send_message"), None),
        ("probe requests answered / failed",
         lambda r: None if get(r, "api_probe") is None else
         f"{num(get(r, 'api_probe', 'system_state', 'count') + get(r, 'api_probe', 'send_message', 'count'))}"
         f" / {num(get(r, 'api_probe', 'errors'))}", None),
    ]


# (scenario, title(old, new), rows): a row is (figure, value(run), digits); digits None: text, no ratio.
def compare_spec():
    setup_rows = [
        ("connect + upgrade + login /s (client side)", lambda r: get(r, "setup", "logins_per_second"), 0),
        ("**gateway CPU per setup, µs**", lambda r: get(r, "setup", "cpu", "gateway_cpu_us_per_setup"), 1),
        ("generator CPU per setup, µs", lambda r: get(r, "setup", "cpu", "generator_cpu_us_per_setup"), 1),
    ]
    return [
        ("hold", lambda r: f"hold: {num(r.get('held'))} idle logged-in connections, "
                           f"{num(r.get('presence_frames'))} enter pushes", [
            ("**gateway RSS per connection, B**", lambda r: get(r, "gateway", "bytes_per_connection"), 0),
            ("gateway RSS idle before, kB", lambda r: get(r, "gateway", "rss_before_kb"), 0),
            ("gateway RSS held, kB", lambda r: get(r, "gateway", "rss_held_kb"), 0),
            ("gateway RSS 1 s after the last close, kB", lambda r: series_at(r, 1), 0),
            ("gateway RSS 5 s after the last close, kB", lambda r: series_at(r, 5), 0),
            ("**gateway RSS 10 s after the last close, kB**", lambda r: series_at(r, 10), 0),
            ("  (10 s after) − idle before, kB",
             lambda r: None if series_at(r, 10) is None or get(r, "gateway", "rss_before_kb") is None
             else series_at(r, 10) - get(r, "gateway", "rss_before_kb"), 0),
        ] + setup_rows),
        ("hold-solo", lambda r: f"connect + upgrade + login, each user alone in its room: "
                                f"{num(get(r, 'setup', 'logged_in'))} setups", setup_rows),
        ("fanout", lambda r: f"fan-out, high rate: {num(r.get('members'))} members, "
                             f"{num(get(r, 'messages', 'target_rate'))} msg/s offered for "
                             f"{num(get(r, 'messages', 'send_for'))} s", delivery_rows()),
        ("fanout-mod", lambda r: f"fan-out, moderate rate: {num(r.get('members'))} members, "
                                 f"{num(get(r, 'messages', 'target_rate'))} msg/s offered for "
                                 f"{num(get(r, 'messages', 'send_for'))} s", delivery_rows()),
        ("fanout-api", lambda r: f"fan-out to {num(r.get('members'))} members, "
                                 f"{num(get(r, 'messages', 'target_rate'))} msg/s asked for "
                                 f"{num(get(r, 'messages', 'send_for'))} s, the API probed "
                                 f"{num(get(r, 'api_probe', 'rate'))} times/s meanwhile",
         api_rows() + delivery_rows()),
        ("unicast", lambda r: f"unicast: {num(get(r, 'messages', 'target_rate'))} msg/s to random members "
                              f"of {num(r.get('members'))} held", [
            ("messages sent /s", lambda r: get(r, "messages", "send_rate"), 0),
            ("latency p50, µs", lambda r: get(r, "deliveries", "latency", "p50_us"), 0),
            ("**latency p99, µs**", lambda r: get(r, "deliveries", "latency", "p99_us"), 0),
            ("latency p99.9 / max, µs",
             lambda r: None if get(r, "deliveries", "latency") is None else
             f"{num(get(r, 'deliveries', 'latency', 'p999_us'))} / {num(get(r, 'deliveries', 'latency', 'max_us'))}", None),
            ("**gateway CPU per message, µs**", lambda r: get(r, "deliveries", "gateway_cpu_us_per_delivery"), 2),
            ("generator CPU per message, µs", lambda r: get(r, "deliveries", "generator_cpu_us_per_delivery"), 2),
            ("lost", lambda r: get(r, "deliveries", "lost"), 0),
        ]),
    ]


def compare(path):
    runs, labels = {}, {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            side = r.get("side")
            if side not in ("old", "new"):
                continue
            runs[(r.get("scenario"), side)] = r
            labels.setdefault(side, r.get("side_label", side))
    old_label, new_label = labels.get("old", "old"), labels.get("new", "new")
    print(f"| figure | old: {old_label} | new: {new_label} | new/old |")
    print("|---|---|---|---|")
    for scenario, title, rows in compare_spec():
        old, new = runs.get((scenario, "old")), runs.get((scenario, "new"))
        if old is None and new is None:
            continue
        heading = title(new or old)
        print(f"| ***{heading}*** | | | |")
        for figure, value, digits in rows:
            ov = value(old) if old else None
            nv = value(new) if new else None
            if digits is None:
                print(f"| {figure} | {ov or '–'} | {nv or '–'} | |")
            else:
                print(f"| {figure} | {num(ov, digits)} | {num(nv, digits)} | {ratio(ov, nv)} |")
        load = lambda r: "–" if r is None or r.get("load_average_before") is None else f"{r['load_average_before']:.2f}"
        print(f"| load average (1 min) before the run | {load(old)} | {load(new)} | |")
        okv = lambda r: "–" if r is None else ("yes" if r.get("ok") else "no" + (f" ({r['error']})" if r.get("error") else ""))
        print(f"| imgate-bench accounting ok | {okv(old)} | {okv(new)} | |")


# ---- history: off vs on (bench/run history) ------------------------------------

def mean(values):
    values = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sum(values) / len(values) if values else None


def each(runs, value, digits):
    """The mean of value(run) over runs, and each run's value in file order."""
    values = [value(r) for r in runs]
    m = mean(values)
    shown = num(m, digits)
    if len(values) > 1:
        shown += " (" + ", ".join(num(v, digits) for v in values) + ")"
    return m, shown


def history(path):
    runs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                runs.append(json.loads(line))
    pick = lambda scenario, side: [r for r in runs if r.get("scenario") == scenario and r.get("side") == side]
    off, on = pick("history-fanout", "off"), pick("history-fanout", "on")
    if off or on:
        first = (off or on)[0]
        print(f"| fan-out, {num(first.get('members'))} members, {num(get(first, 'messages', 'target_rate'))} msg/s "
              f"offered for {num(get(first, 'messages', 'send_for'))} s (mean of {max(len(off), len(on))} runs each; "
              f"each run in brackets, in the order run) | history off | history on | on/off |")
        print("|---|---|---|---|")
        for figure, value, digits in delivery_rows():
            if digits is None:
                print(f"| {figure} | {'; '.join(str(value(r) or '–') for r in off)} | "
                      f"{'; '.join(str(value(r) or '–') for r in on)} | |")
                continue
            mo, so = each(off, value, digits)
            mn, sn = each(on, value, digits)
            print(f"| {figure} | {so} | {sn} | {ratio(mo, mn)} |")
        print(f"| load average (1 min) before each run | "
              f"{', '.join(num(r.get('load_average_before'), 2) for r in off)} | "
              f"{', '.join(num(r.get('load_average_before'), 2) for r in on)} | |")
        print(f"| imgate-bench accounting ok | {', '.join(num(bool(r.get('ok'))) for r in off)} | "
              f"{', '.join(num(bool(r.get('ok'))) for r in on)} | |")
        print()
    fo, fn = pick("history-fill", "off"), pick("history-fill", "on")
    if fo or fn:
        f = (fn or fo)[0]
        print(f"| fill: {num(get(f, 'fill', 'requested'))} pushes of {num(get(f, 'fill', 'message_bytes'))}-byte "
              f"texts to {num(get(f, 'fill', 'rooms'))} empty rooms | history off | history on | |")
        print("|---|---|---|---|")
        rows = [
            ("pushes kept (imgate_history_pushes, delta)", lambda r: get(r, "gateway", "stored_pushes"), 0),
            ("**imgate_history_bytes per kept push, B**", lambda r: get(r, "gateway", "metric_bytes_per_stored_push"), 0),
            ("gateway RSS delta, kB", lambda r: None if get(r, "gateway", "rss_delta_bytes") is None
             else get(r, "gateway", "rss_delta_bytes") / 1024, 0),
            ("gateway RSS delta per push sent, B", lambda r: get(r, "gateway", "rss_bytes_per_message"), 0),
            ("**gateway RSS delta per kept push, B**", lambda r: get(r, "gateway", "rss_bytes_per_stored_push"), 0),
            ("evictions (history_max_bytes reached)", lambda r: get(r, "history_after", "evictions"), 0),
            ("API pushes /s", lambda r: get(r, "fill", "per_second"), 0),
            ("gateway CPU per API push, µs", lambda r: get(r, "cpu_while_sending", "gateway_cpu_us_per_message"), 1),
        ]
        for figure, value, digits in rows:
            _, so = each(fo, value, digits)
            _, sn = each(fn, value, digits)
            print(f"| {figure} | {so} | {sn} | |")
        d_off = mean([get(r, "gateway", "rss_delta_bytes") for r in fo])
        d_on = mean([get(r, "gateway", "rss_delta_bytes") for r in fn])
        kept = mean([get(r, "gateway", "stored_pushes") for r in fn])
        if d_off is not None and d_on is not None and kept:
            print(f"| **RSS per kept push, net of the off run, B** | | {num((d_on - d_off) / kept)} | |")
        print()
    rec = [r for r in runs if r.get("scenario") == "history-recovery"]
    if rec:
        print("| recovery run | clients × missed | recovery time (first reconnect → all caught up) | "
              "per client p50 / p99 | pushes /s | gateway CPU per client (connect + login + replay) | "
              "per replayed push | join: gateway CPU per setup | exactly once, consecutive, recovered: true |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rec:
            rc = r.get("recovery", {})
            missed = get(r, "missed_pushes", "sent")
            exact = (rc.get("pushes_received") == rc.get("pushes_expected") and rc.get("duplicates") == 0
                     and rc.get("gaps") == 0 and rc.get("wrong_clients") == 0)
            print(f"| {r.get('repeat', '')} | {num(rc.get('clients'))} × {num(missed)} | "
                  f"**{num(rc.get('seconds') * 1000 if rc.get('seconds') is not None else None)} ms** | "
                  f"{num(get(rc, 'per_client_ms', 'p50'))} / {num(get(rc, 'per_client_ms', 'p99'))} ms | "
                  f"{num(rc.get('pushes_per_second'))} | {num(rc.get('gateway_cpu_us_per_client'), 1)} µs | "
                  f"{num(rc.get('gateway_cpu_us_per_push'), 2)} µs | "
                  f"{num(get(r, 'setup', 'cpu', 'gateway_cpu_us_per_setup'), 1)} µs | "
                  f"{'yes' if exact else 'NO'} ({num(rc.get('pushes_received'))} of {num(rc.get('pushes_expected'))}, "
                  f"dup {num(rc.get('duplicates'))}, gaps {num(rc.get('gaps'))}; ok {num(bool(r.get('ok')))}) |")
    if any(str(r.get("scenario", "")).startswith("history-redis-") for r in runs):
        history_redis(runs)


# ---- history in Redis mode (bench/run history-redis) --------------------------

def per_us(seconds, units):
    if not isinstance(seconds, (int, float)) or not units or seconds < 0:
        return None
    return seconds * 1e6 / units


def answered(r):
    a, b = get(r, "messages", "answered_delivered"), get(r, "messages", "answered_not_online")
    return (a or 0) + (b or 0) if a is not None or b is not None else None


def history_redis(runs):
    pick = lambda scenario, side=None: [r for r in runs if r.get("scenario") == scenario
                                        and (side is None or r.get("side") == side)]
    idle = pick("history-redis-idle")
    idle_rate = None
    if idle and idle[0].get("wall_seconds"):
        idle_rate = idle[0]["redis_cpu_seconds"] / idle[0]["wall_seconds"]
    off, on = pick("history-redis-fanout", "off"), pick("history-redis-fanout", "on")

    def redis_net(r):  # Redis CPU over the sending window minus its idle rate
        c, w = get(r, "cpu_while_sending", "redis_cpu_seconds"), get(r, "cpu_while_sending", "wall_seconds")
        if c is None or w is None or idle_rate is None:
            return None
        return c - idle_rate * w

    if off or on:
        first = (off or on)[0]
        print(f"| Redis mode, one node: fan-out, {num(first.get('members'))} members, "
              f"{num(get(first, 'messages', 'target_rate'))} msg/s offered for {num(get(first, 'messages', 'send_for'))} s "
              f"(mean of {max(len(off), len(on))} runs each; each run in brackets, in the order run) "
              f"| history off | history on | on/off |")
        print("|---|---|---|---|")
        rows = delivery_rows()[:5] + [
            ("Redis CPU per push (over the sending window), µs",
             lambda r: per_us(get(r, "cpu_while_sending", "redis_cpu_seconds"), answered(r)), 1),
            (f"**Redis CPU per push, net of its idle {num(idle_rate * 1000 if idle_rate is not None else None, 1)} ms/s, µs**",
             lambda r: per_us(redis_net(r), answered(r)), 1),
        ]
        for figure, value, digits in rows:
            mo, so = each(off, value, digits)
            mn, sn = each(on, value, digits)
            print(f"| {figure} | {so} | {sn} | {ratio(mo, mn)} |")
        pooled = lambda rs: per_us(sum(redis_net(r) or 0 for r in rs), sum(answered(r) or 0 for r in rs))
        po, pn = pooled(off), pooled(on)
        print(f"| Redis CPU per push, net, pooled (all runs' CPU / all runs' pushes), µs | {num(po, 1)} | "
              f"{num(pn, 1)} | {ratio(po, pn)} |")
        print(f"| Redis CPU over the sending window, ms (10 ms ticks) | "
              f"{', '.join(num((get(r, 'cpu_while_sending', 'redis_cpu_seconds') or 0) * 1000) for r in off)} | "
              f"{', '.join(num((get(r, 'cpu_while_sending', 'redis_cpu_seconds') or 0) * 1000) for r in on)} | |")
        cores = lambda r: (f"{num(get(r, 'cpu_while_sending', 'gateway_cores'), 2)} / "
                           f"{num(get(r, 'cpu_while_sending', 'generator_cores'), 2)} / "
                           f"{num(get(r, 'cpu_while_sending', 'redis_cores'), 3)}")
        print(f"| gateway / generator / redis cores while sending | {'; '.join(cores(r) for r in off)} | "
              f"{'; '.join(cores(r) for r in on)} | |")
        lat = lambda r: (f"{num(get(r, 'deliveries', 'latency', 'p50_us') / 1000, 1)} / "
                         f"{num(get(r, 'deliveries', 'latency', 'p99_us') / 1000, 1)}"
                         if get(r, "deliveries", "latency") else "–")
        print(f"| delivery latency p50 / p99, ms | {'; '.join(lat(r) for r in off)} | "
              f"{'; '.join(lat(r) for r in on)} | |")
        print(f"| lost | {', '.join(num(get(r, 'deliveries', 'lost')) for r in off)} | "
              f"{', '.join(num(get(r, 'deliveries', 'lost')) for r in on)} | |")
        print(f"| load average (1 min) before each run | "
              f"{', '.join(num(r.get('load_average_before'), 2) for r in off)} | "
              f"{', '.join(num(r.get('load_average_before'), 2) for r in on)} | |")
        print(f"| imgate-bench accounting ok | {', '.join(num(bool(r.get('ok'))) for r in off)} | "
              f"{', '.join(num(bool(r.get('ok'))) for r in on)} | |")
        print()
    mo, mn = pick("history-redis-memory", "off"), pick("history-redis-memory", "on")
    fo, fn = pick("history-redis-fill", "off"), pick("history-redis-fill", "on")
    if mo or mn:
        f = (fn or fo or [{}])[0]
        print(f"| Redis mode, fill: {num(get(f, 'fill', 'requested'))} pushes of {num(get(f, 'fill', 'message_bytes'))}-byte "
              f"texts to {num(get(f, 'fill', 'rooms'))} empty rooms, one node | history off | history on |")
        print("|---|---|---|")
        delta = lambda m, a: (m.get(a + "_after") - m.get(a + "_before")
                              if isinstance(m.get(a + "_after"), (int, float)) and isinstance(m.get(a + "_before"), (int, float))
                              else None)
        per_kept = lambda m, a: delta(m, a) / m["stored_pushes"] if m.get("stored_pushes") and delta(m, a) is not None else None
        memory_rows = [
            ("entries kept in Redis (sum of LLEN over the stream lists) / stream lists",
             lambda m: f"{num(m.get('stored_pushes'))} / {num(m.get('log_keys'))}"),
            ("Redis `used_memory` before → after, B",
             lambda m: f"{num(m.get('used_memory_before'))} → {num(m.get('used_memory_after'))}"),
            ("Redis `used_memory` delta, B", lambda m: num(delta(m, "used_memory"))),
            ("**Redis `used_memory` delta per kept push, B**", lambda m: num(per_kept(m, "used_memory"))),
            ("Redis `used_memory_dataset` delta per kept push, B", lambda m: num(per_kept(m, "used_memory_dataset"))),
            ("Redis `used_memory_rss` delta per kept push, B", lambda m: num(per_kept(m, "used_memory_rss"))),
            ("`MEMORY USAGE` of one stream list / its entries, B",
             lambda m: num(m["memory_usage_one_log"] / (m["stored_pushes"] / m["log_keys"]))
             if m.get("memory_usage_one_log") and m.get("log_keys") and m.get("stored_pushes") else "–"),
        ]
        for figure, value in memory_rows:
            print(f"| {figure} | {'; '.join(value(m) for m in mo) or '–'} | {'; '.join(value(m) for m in mn) or '–'} |")
        fill_rows = [
            ("gateway RSS delta per push sent, B",
             lambda r: get(r, "gateway", "rss_bytes_per_message"), 0),
            ("API pushes /s", lambda r: get(r, "fill", "per_second"), 0),
            ("gateway CPU per API push, µs", lambda r: get(r, "cpu_while_sending", "gateway_cpu_us_per_message"), 1),
            ("**Redis CPU per API push, µs**", lambda r: get(r, "cpu_while_sending", "redis_cpu_us_per_message"), 1),
            ("gateway / generator / redis cores", lambda r: None, None),
        ]
        for figure, value, digits in fill_rows:
            if digits is None:
                c = lambda r: (f"{num(get(r, 'cpu_while_sending', 'gateway_cores'), 2)} / "
                               f"{num(get(r, 'cpu_while_sending', 'generator_cores'), 2)} / "
                               f"{num(get(r, 'cpu_while_sending', 'redis_cores'), 2)}")
                print(f"| {figure} | {'; '.join(c(r) for r in fo)} | {'; '.join(c(r) for r in fn)} |")
                continue
            _, so = each(fo, value, digits)
            _, sn = each(fn, value, digits)
            print(f"| {figure} | {so} | {sn} |")
        if mo and mn and mn[0].get("stored_pushes") and delta(mo[0], "used_memory") is not None:
            net = (delta(mn[0], "used_memory") - delta(mo[0], "used_memory")) / mn[0]["stored_pushes"]
            print(f"| **Redis `used_memory` per kept push, net of the off run, B** | | {num(net)} |")
        print()
    rec = pick("history-redis-recovery")
    if rec:
        print("| recovery run | clients × missed | back on | recovery time (first reconnect → all caught up) | "
              "per client p50 / p99 | pushes /s | CPU per client (connect + login + replay): node recovering / "
              "the other node / Redis | join: node A / Redis CPU per setup | cores: node recovering / generator / Redis "
              "| exactly once, consecutive, recovered: true |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rec:
            rc = r.get("recovery", {})
            cpu = rc.get("cpu", {})
            other = "-other-" in str(r.get("repeat", ""))  # bench/run's repeat tag: N-other-i / N-same-i
            here, there = ("node_b", "gateway") if other else ("gateway", "node_b")
            exact = (rc.get("pushes_received") == rc.get("pushes_expected") and rc.get("duplicates") == 0
                     and rc.get("gaps") == 0 and rc.get("wrong_clients") == 0)
            print(f"| {r.get('repeat', '')} | {num(rc.get('clients'))} × {num(get(r, 'missed_pushes', 'sent'))} | "
                  f"{'node B (left node A)' if other else 'node A (the node left)'} | "
                  f"**{num(rc.get('seconds') * 1000 if rc.get('seconds') is not None else None)} ms** | "
                  f"{num(get(rc, 'per_client_ms', 'p50'))} / {num(get(rc, 'per_client_ms', 'p99'))} ms | "
                  f"{num(rc.get('pushes_per_second'))} | "
                  f"{num(cpu.get(here + '_cpu_us_per_client'), 1)} / {num(cpu.get(there + '_cpu_us_per_client'), 1)} / "
                  f"{num(cpu.get('redis_cpu_us_per_client'), 1)} µs | "
                  f"{num(get(r, 'setup', 'cpu', 'gateway_cpu_us_per_setup'), 1)} / "
                  f"{num(get(r, 'setup', 'cpu', 'redis_cpu_us_per_setup'), 1)} µs | "
                  f"{num(cpu.get(here + '_cores'), 2)} / {num(cpu.get('generator_cores'), 2)} / "
                  f"{num(cpu.get('redis_cores'), 2)} | "
                  f"{'yes' if exact else 'NO'} ({num(rc.get('pushes_received'))} of {num(rc.get('pushes_expected'))}, "
                  f"dup {num(rc.get('duplicates'))}, gaps {num(rc.get('gaps'))}, recovered true "
                  f"{num(rc.get('recovered_true'))}; ok {num(bool(r.get('ok')))}) |")
        print()


def main():
    if sys.argv[1] == "--compare":
        compare(sys.argv[2])
        return
    if sys.argv[1] == "--history":
        history(sys.argv[2])
        return
    rows = []
    with open(sys.argv[1]) as f:
        for line in f:
            line = line.strip()
            if line:
                r = json.loads(line)
                if "mode" not in r:  # bench/run's own lines (history-redis: Redis figures)
                    continue
                if r.get("scenario", "").startswith("cluster-"):  # bench/cluster_table.py
                    continue
                if r.get("side"):
                    r["scenario"] = f"{r.get('scenario')} ({r['side']}{', ' + r['repeat'] if r.get('repeat') else ''})"
                rows.append(row(r))
    if rows:
        print("| scenario | connect + login | failures | result | accounting ok |")
        print("|---|---|---|---|---|")
        print("\n".join(rows))


if __name__ == "__main__":
    main()
