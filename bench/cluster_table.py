#!/usr/bin/env python3
"""Renders the lines of `bench/run cluster` (bench/cluster.sh) in results.jsonl as Markdown.

   cluster_table.py results.jsonl

CPU comes from the ticks bench/run read in /proc/PID/stat at each phase boundary
("cluster-mark" lines), summed over the processes of a role: the K gateway nodes,
redis-server(s), the K members processes. "net of idle" subtracts the role's CPU
rate of the idle phase (heartbeats, node refreshes, reaping) over the window.
Latency quantiles merge the members' histograms (upper bounds of ~3 % buckets).
"""
import json
import statistics
import sys


def fmt(v, digits=0, unit=""):
    if v is None:
        return "–"
    if isinstance(v, float):
        v = round(v, digits) if digits else round(v)
    if isinstance(v, int) and abs(v) >= 10000:
        return f"{v:,}{unit}"
    return f"{v}{unit}"


class Run:
    def __init__(self, path):
        self.marks, self.members, self.finals, self.push, self.slowlog = {}, {}, {}, {}, []
        self.config, self.offline, self.listed, self.redis = {}, {}, None, {}
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                r = json.loads(line)
                s = r.get("scenario", "")
                if s == "cluster-config":
                    self.config = r
                elif s == "cluster-mark":
                    self.marks[r["at"]] = r
                elif s == "cluster-members":
                    if "phase" in r:
                        self.members[(r["node"], r["phase"])] = r
                    else:
                        self.finals[r["node"]] = r
                elif s == "cluster-push":
                    self.push[r["phase"]] = r
                elif s == "cluster-offline":
                    self.offline = r
                elif s == "cluster-slowlog":
                    self.slowlog.append(r)
                elif s == "cluster-listed":
                    self.listed = r
                elif s == "cluster-redis":
                    self.redis = r
        self.k = self.config.get("nodes", 0)

    def phase(self, name):
        return [self.members[(j, name)] for j in range(self.k) if (j, name) in self.members]

    def wall(self, a, b):
        return self.marks[b]["wall"] - self.marks[a]["wall"]

    def delta(self, a, b, key):
        """The growth of a per-process counter between two marks, summed (gone: their last)."""
        before, after = self.marks[a].get(key, []), self.marks[b].get(key, [])
        before = before + [0] * (len(after) - len(before))  # started in between: all of theirs
        total = 0
        for v0, v1 in zip(before, after):
            if v0 is not None and v1 is not None:
                total += v1 - v0
        return total

    def cpu(self, a, b, role):
        """CPU seconds of a role between two marks."""
        return self.delta(a, b, role + "_ticks") / self.marks[a]["hz"]

    def switches(self, a, b, units):
        """Context switches per unit of work between two marks: nodes / Redis."""
        if "nodes_switches" not in self.marks[a]:
            return "–"
        return (f"{fmt(self.delta(a, b, 'nodes_switches') / units, 2)} / "
                f"{fmt(self.delta(a, b, 'redis_switches') / units, 2)}") if units else "–"

    def net(self, a, b, role):
        """CPU seconds of a role between two marks minus its idle rate over the window."""
        rate = self.cpu("idle-start", "idle-end", role) / self.wall("idle-start", "idle-end")
        return self.cpu(a, b, role) - rate * self.wall(a, b)

    def has(self, *marks):
        return all(m in self.marks for m in marks)


def merged(lines):
    """p50 / p90 / p99 / p99.9 / max in µs of the members' latency histograms, merged."""
    counts, top = {}, 0
    for r in lines:
        for upper, n in r.get("latency_buckets", []):
            counts[upper] = counts.get(upper, 0) + n
        top = max(top, r.get("latency", {}).get("max_us", 0))
    total = sum(counts.values())
    if not total:
        return None
    out = {}
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)):
        rank, seen = min(int(q * total), total - 1), 0
        for upper in sorted(counts):
            seen += counts[upper]
            if seen > rank:
                out[name] = min(upper / 1000, top)
                break
    out["max"] = top
    out["count"] = total
    return out


def lat_text(m, unit="ms"):
    if not m:
        return "–"
    div = 1000 if unit == "ms" else 1
    d = 1 if unit == "ms" else 0
    return (f"p50 {fmt(m['p50'] / div, d)} / p90 {fmt(m['p90'] / div, d)} / p99 {fmt(m['p99'] / div, d)} / "
            f"p99.9 {fmt(m['p999'] / div, d)} / max {fmt(m['max'] / div, d)} {unit}")


def per_us(seconds, units):
    return seconds * 1e6 / units if units else None


def spread(values, digits=0):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    return (f"{fmt(statistics.mean(values), digits)} (min {fmt(min(values), digits)}, "
            f"max {fmt(max(values), digits)})")


def main():
    run = Run(sys.argv[1])
    c, k = run.config, run.k
    rows = []

    def add(phase, figure, value):
        rows.append(f"| {phase} | {figure} | {value} |")

    setups = run.phase("setup")
    held = sum(r["held"] for r in setups)
    add("config", "nodes × connections per node",
        f"{k} × {fmt(c.get('conns_per_node'))} = {fmt(k * c.get('conns_per_node', 0))} asked, "
        f"{fmt(c.get('inflight'))} setups in flight per load process; "
        f"node `--threads {c.get('node_threads')}`, `--node-ttl {c.get('node_ttl')}`; Redis: "
        f"{c.get('redis')} ({c.get('redis_processes')} process{'es' if c.get('redis_processes', 1) > 1 else ''})")
    if run.has("login-start", "login-end"):
        w = run.wall("login-start", "login-end")
        add("login", "**connections held cluster-wide** / time to log them all in",
            f"**{fmt(held)}** in **{fmt(w, 1)} s** ({fmt(held / w if w else None)}/s); "
            f"failed {fmt(sum(r['setup']['failed'] for r in setups))}")
        if run.listed:
            add("login", "Redis's room set counts them all, after the last login reply",
                f"{fmt(run.listed.get('user_count'))} of {fmt(run.listed.get('held'))} after "
                f"{fmt(run.listed.get('seconds_after_login'), 2)} s")
        add("login", "CPU per login: nodes / Redis / load clients",
            f"{fmt(per_us(run.cpu('login-start', 'login-end', 'nodes'), held), 1)} / "
            f"{fmt(per_us(run.cpu('login-start', 'login-end', 'redis'), held), 1)} / "
            f"{fmt(per_us(run.cpu('login-start', 'login-end', 'members'), held), 1)} µs "
            f"(cores {fmt(run.cpu('login-start', 'login-end', 'nodes') / w, 2)} / "
            f"{fmt(run.cpu('login-start', 'login-end', 'redis') / w, 2)} / "
            f"{fmt(run.cpu('login-start', 'login-end', 'members') / w, 2)})")
    add("memory", "**node RSS per connection**, right after its logins (mean, min, max over nodes)",
        f"**{spread([r.get('gateway_bytes_per_connection') for r in setups])} B**")
    if run.has("login-start", "idle-end"):
        a, b = run.marks["login-start"]["nodes_rss_kb"], run.marks["idle-end"]["nodes_rss_kb"]
        per = [(y - x) * 1024 / r["held"] for x, y, r in zip(a, b, setups) if r["held"]]
        add("memory", f"node RSS per connection after {fmt(c.get('idle_seconds'))} s held",
            f"{spread(per)} B (node RSS idle {fmt(statistics.mean(a) / 1024, 1)} MiB → "
            f"{fmt(statistics.mean(b) / 1024, 1)} MiB held)")
    add("memory", "load client RSS per connection",
        f"{spread([r.get('client_bytes_per_connection') for r in setups])} B")
    if run.has("login-start", "idle-end") and "slab_kb" in run.marks["login-start"] and held:
        a, b = run.marks["login-start"], run.marks["idle-end"]
        add("memory", "**kernel memory per connection, both ends** (/proc/meminfo `Slab` Δ; "
            "TCP buffer pages Δ from /proc/net/sockstat), login start → idle end",
            f"**{fmt((b['slab_kb'] - a['slab_kb']) * 1024 / held)} B** slab "
            f"(unreclaimable {fmt((b['sunreclaim_kb'] - a['sunreclaim_kb']) * 1024 / held)} B) + "
            f"{fmt((b['tcp_mem_pages'] - a['tcp_mem_pages']) * 4096 / held)} B TCP buffers; "
            f"TCP sockets in use {fmt(a['tcp_inuse'])} → {fmt(b['tcp_inuse'])}")
        add("memory", "the machine's memory per connection (MemAvailable Δ: nodes, load clients, "
            "Redis, kernel, and whatever else ran meanwhile)",
            f"{fmt((a['mem_available_kb'] - b['mem_available_kb']) * 1024 / held)} B "
            f"({fmt((a['mem_available_kb'] - b['mem_available_kb']) / 1048576, 2)} GiB in all; "
            f"{fmt(b['mem_available_kb'] / 1048576, 2)} GiB still available)")
    if run.redis.get("used_memory_peak_per_process"):
        add("memory", "Redis used_memory_peak per process (MiB)",
            " / ".join(fmt(v / 1048576, 1) for v in run.redis["used_memory_peak_per_process"]))
    if run.has("idle-start", "idle-end"):
        w = run.wall("idle-start", "idle-end")
        nodes = run.cpu("idle-start", "idle-end", "nodes")
        hb = c.get("heartbeat", 25)
        members = run.cpu("idle-start", "idle-end", "members")
        add("idle", f"held {fmt(c.get('idle_seconds'))} s, heartbeat every {fmt(hb)} s per connection: "
            "cores of nodes / Redis / load clients",
            f"{fmt(nodes / w, 3)} / {fmt(run.cpu('idle-start', 'idle-end', 'redis') / w, 3)} / "
            f"{fmt(members / w, 3)}; nodes {fmt(per_us(nodes / w, held), 2)} µs per connection per "
            f"second, **{fmt(per_us(nodes / w, held / hb if held else 0), 1)} µs per heartbeat** "
            f"(load clients {fmt(per_us(members / w, held / hb if held else 0), 1)} µs)")

    fan, push = run.phase("fanout"), run.push.get("fanout", {})
    if fan and push and run.has("fanout-start", "fanout-end"):
        m = push["messages"]
        got = sum(r["deliveries"] for r in fan)
        want = sum(r.get("expected", 0) for r in fan)
        last = max((r.get("last_delivery_ns", 0) for r in fan), default=0)
        span = (last - m["first_ns"]) / 1e9 if last else None
        w = run.wall("fanout-start", "fanout-end")
        nodes, redis = run.cpu("fanout-start", "fanout-end", "nodes"), run.cpu("fanout-start", "fanout-end", "redis")
        add("fan-out", "room pushes (node 0's API) accepted / offered; members per push",
            f"{fmt(m['answered_delivered'])} of {fmt(m['requested'])} at {fmt(m['send_rate'], 2)}/s "
            f"(target {fmt(m['target_rate'], 2)}); {fmt(sum(r['held'] for r in fan))} members")
        add("fan-out", "**deliveries/s cluster-wide** (first push → last delivery)",
            f"**{fmt(got / span if span else None)}** ({fmt(got)} of {fmt(want)} expected, lost "
            f"{fmt(sum(r.get('lost', 0) for r in fan))}, over {fmt(span, 2)} s)")
        add("fan-out", "**node CPU per delivery** (sum over nodes; net of idle)",
            f"**{fmt(per_us(nodes, got), 2)} µs** ({fmt(per_us(run.net('fanout-start', 'fanout-end', 'nodes'), got), 2)} µs)")
        add("fan-out", "Redis CPU per push (net of idle; few pushes: see room push); load client CPU per delivery",
            f"{fmt(per_us(redis, m['answered_delivered']))} µs "
            f"({fmt(per_us(run.net('fanout-start', 'fanout-end', 'redis'), m['answered_delivered']))} µs; "
            f"{fmt(redis * 1000)} ms in all, 10 ms ticks); "
            f"{fmt(per_us(run.cpu('fanout-start', 'fanout-end', 'members'), got), 2)} µs")
        add("fan-out", "cores over the window: nodes / Redis / load clients / pusher",
            f"{fmt(nodes / w, 2)} / {fmt(redis / w, 3)} / {fmt(run.cpu('fanout-start', 'fanout-end', 'members') / w, 2)} / "
            f"{fmt(push['cpu']['generator_cpu_seconds'] / w, 2)} over {fmt(w, 1)} s")
        add("fan-out", "delivery latency (push sent → frame read)", lat_text(merged(fan)))
        add("fan-out", "context switches per delivery: nodes / Redis",
            run.switches("fanout-start", "fanout-end", got))

    push = run.push.get("roompush", {})
    if push and run.has("roompush-start", "roompush-end"):
        m = push["messages"]
        sent, w = m["sent"], run.wall("roompush-start", "roompush-end")
        nodes, redis = run.cpu("roompush-start", "roompush-end", "nodes"), run.cpu("roompush-start", "roompush-end", "redis")
        add("room push", "pushes to an empty room through every node's API, as fast as answered",
            f"{fmt(sent)} at {fmt(m['send_rate'])}/s; HTTP errors {fmt(m['http_errors'])}; API "
            f"p50 {fmt(m['api_latency']['p50_us'] / 1000, 1)} / p99 {fmt(m['api_latency']['p99_us'] / 1000, 1)} ms")
        add("room push", "**Redis CPU per room push** (`SET NX` msgID + `PUBLISH` to every node; net of idle)",
            f"**{fmt(per_us(redis, sent), 1)} µs** ({fmt(per_us(run.net('roompush-start', 'roompush-end', 'redis'), sent), 1)} µs)")
        add("room push", "node CPU per room push, all nodes together (API + each node reading it); per node",
            f"{fmt(per_us(nodes, sent), 1)} µs; {fmt(per_us(nodes, sent * k), 1)} µs")
        old = run.config.get("old_imgate", "")
        if run.config.get("roompush_api") == "first" or old:
            # Per node: CPU per push of each node (node 0 serves the API when roompush_api is first).
            a, b = run.marks["roompush-start"], run.marks["roompush-end"]
            i0, i1 = run.marks.get("idle-start"), run.marks.get("idle-end")
            for j, (t0, t1) in enumerate(zip(a["nodes_ticks"], b["nodes_ticks"])):
                if t0 is None or t1 is None:
                    continue
                build = "old (" + old + ")" if old and j % 2 == 1 else "current"
                role = "serves the API" if run.config.get("roompush_api") == "first" and j == 0 else "no members of room 102"
                cpu = (t1 - t0) / a["hz"]
                net = "–"
                if i0 and i1 and i0["nodes_ticks"][j] is not None and i1["nodes_ticks"][j] is not None:
                    idle_rate = (i1["nodes_ticks"][j] - i0["nodes_ticks"][j]) / a["hz"] / run.wall("idle-start", "idle-end")
                    net = fmt(per_us(cpu - idle_rate * w, sent), 2) + " µs"
                add("room push", f"node {j} CPU per room push (net of its idle): {build}, {role}",
                    f"**{fmt(per_us(cpu, sent), 2)} µs** ({net}; {t1 - t0} ticks)")
        add("room push", "cores: nodes / Redis / pusher; context switches per push: nodes / Redis",
            f"{fmt(nodes / w, 2)} / {fmt(redis / w, 2)} / {fmt(push['cpu']['generator_cpu_seconds'] / w, 2)} over "
            f"{fmt(w, 1)} s; {run.switches('roompush-start', 'roompush-end', sent)}")

    for phase in sorted((p for p in run.push if p.startswith("unicast")), key=lambda p: run.push[p]["messages"]["target_rate"]):
        unicast_rows(run, phase, add)
    kill_rows(run, add)
    others = []
    for start in sorted((m for m in run.marks.values() if m["at"].endswith("-start")), key=lambda m: m["wall"]):
        a, b = start["at"], start["at"][:-6] + "-end"
        if b in run.marks and "machine_busy_ticks" in start:
            w = run.wall(a, b)
            ours = sum(run.cpu(a, b, role) for role in ("nodes", "redis", "members"))
            busy = (run.marks[b]["machine_busy_ticks"] - start["machine_busy_ticks"]) / start["hz"]
            others.append(f"{a[:-6]} {fmt(busy / w, 2)} / {fmt((busy - ours) / w, 2)}")
    if others:
        add("machine", "cores busy on the whole machine / outside nodes, Redis and load clients "
            "(the pusher, the kernel's softirq time charged to no process, other sessions), per phase",
            "; ".join(others))
    loads = [f"{m['load']}" for m in sorted(run.marks.values(), key=lambda m: m["wall"]) if m["at"].endswith("-start")]
    add("machine", "1-minute load average at each phase start (" +
        ", ".join(m["at"][:-6] for m in sorted(run.marks.values(), key=lambda m: m["wall"]) if m["at"].endswith("-start")) +
        ")", ", ".join(loads))

    print("| phase | figure | value |")
    print("|---|---|---|")
    print("\n".join(rows))


def unicast_rows(run, phase, add):
    uni, push = run.phase(phase), run.push[phase]
    if uni and run.has(phase + "-start", phase + "-end"):
        a, b = phase + "-start", phase + "-end"
        m = push["messages"]
        got = sum(r["deliveries"] for r in uni)
        w = run.wall(a, b)
        nodes, redis = run.cpu(a, b, "nodes"), run.cpu(a, b, "redis")
        label = f"unicast {fmt(m['target_rate'])}/s"
        add(label, "`/user/sendMessage` on node i to a user on node j ≠ i",
            f"{fmt(m['sent'])} sent at {fmt(m['send_rate'])}/s (target {fmt(m['target_rate'])}); "
            f"{fmt(got)} delivered, lost {fmt(sum(r.get('lost', 0) for r in uni))}, not online "
            f"{fmt(m['answered_not_online'])}, HTTP errors {fmt(m['http_errors'])}")
        add(label, "**latency across nodes** (API call sent → frame read on the other node)",
            f"**{lat_text(merged(uni))}**")
        add(label, "API latency (request → answer, after Redis)", lat_text(
            {"p50": m['api_latency']['p50_us'], "p90": m['api_latency']['p90_us'],
             "p99": m['api_latency']['p99_us'], "p999": m['api_latency']['p999_us'],
             "max": m['api_latency']['max_us']}))
        add(label, "**CPU per message: nodes (net of idle) / Redis (net of idle)** / pusher",
            f"**{fmt(per_us(nodes, m['sent']), 1)} ({fmt(per_us(run.net(a, b, 'nodes'), m['sent']), 1)}) / "
            f"{fmt(per_us(redis, m['sent']), 1)} ({fmt(per_us(run.net(a, b, 'redis'), m['sent']), 1)})** / "
            f"{fmt(per_us(push['cpu']['generator_cpu_seconds'], m['sent']), 1)} µs; cores {fmt(nodes / w, 2)} / "
            f"{fmt(redis / w, 3)} over {fmt(w, 1)} s")
        add(label, "context switches per message: nodes / Redis", run.switches(a, b, m["sent"]))


def kill_rows(run, add):
    c = run.config
    off = run.offline.get("offline")
    if off:
        add("kill", f"**SIGKILLed node's users unlisted everywhere** (`--node-ttl {c.get('node_ttl')}`)",
            f"**{fmt(off.get('seconds'), 2)} s** after the kill (still listed at {fmt(off.get('last_listed_seconds'), 2)} s) "
            f"for {fmt(run.offline.get('listed_before'))} users; {fmt(off.get('polls'))} polls of node 0 "
            f"(each p50 {fmt(off['poll_time']['p50_us'] / 1000, 1)} ms); other survivors "
            f"agree: {'yes' if off.get('everywhere') else 'NO'}")
        slow, inner = [], 0
        for s in run.slowlog:
            for e in s.get("entries", []):
                args = e[3] if len(e) > 3 else []
                if len(e) > 4 and e[4] == "?:0":  # a command run by a script (Redis 7 logs them too)
                    inner += 1
                    continue
                name = "reap.lua" if any("Removes dead nodes" in str(a) for a in args) else " ".join(
                    str(a) for a in args[:1])
                slow.append((e[2], name))
        slow.sort(reverse=True)
        add("kill", "Redis commands ≥ 1 ms during the kill (SLOWLOG), longest first",
            (", ".join(f"{name} {fmt(us / 1000, 1)} ms" for us, name in slow[:5]) or "none") +
            (f"; and {inner} commands ≥ 1 ms inside scripts" if inner else ""))
        if run.has("kill-start", "kill-end"):
            add("kill", "Redis CPU over the kill window (net of idle): the reap and the polls",
                f"{fmt(run.cpu('kill-start', 'kill-end', 'redis') * 1000, 0)} ms "
                f"({fmt(run.net('kill-start', 'kill-end', 'redis') * 1000, 0)} ms) over "
                f"{fmt(run.wall('kill-start', 'kill-end'), 1)} s")


if __name__ == "__main__":
    main()
