// Dashboard, Interfaces, Routes, Neighbours and Connections. Each page is
// `page(root, ctx)`: it fills `root`; `ctx.every(ms, f)` runs f now and
// then every ms while the page is shown.
import { api, attempt, field, h, messageBox, num, query, showNotice, si, table } from "./api.js";
import { COLORS, drawPlot } from "./plot.js";

const WINDOW_MS = 5 * 60 * 1000;

// Rates per interface, kept across page changes: {name: [{t, pps, bps}]}.
const history = new Map();
let last = null; // {t, totals: {name: {packets, bytes}}}

function totals(iface) {
  let packets = 0;
  let bytes = 0;
  for (const c of Object.values(iface.counters.actions)) {
    packets += c.packets;
    bytes += c.bytes;
  }
  return { packets, bytes };
}

// Fold one /api/v1/stats answer into the rate history.
function sample(stats) {
  const t = Date.now();
  const now = {};
  for (const i of stats.interfaces) now[i.name] = totals(i);
  if (last) {
    const dt = (t - last.t) / 1000;
    for (const [name, c] of Object.entries(now)) {
      const p = last.totals[name];
      if (!p || dt <= 0) continue;
      // A counter that went down (daemon restart): no rate for this step.
      if (c.packets < p.packets) continue;
      const pts = history.get(name) || [];
      pts.push({ t, pps: (c.packets - p.packets) / dt, bps: ((c.bytes - p.bytes) * 8) / dt });
      while (pts.length && pts[0].t < t - WINDOW_MS) pts.shift();
      history.set(name, pts);
    }
  }
  last = { t, totals: now };
}

export function dashboard(root, ctx) {
  const err = messageBox("dash-error");
  const rates = h("div", {});
  const ppsCanvas = h("canvas", { class: "plot", id: "plot-pps", "aria-label": "packets per second" });
  const bpsCanvas = h("canvas", { class: "plot", id: "plot-bps", "aria-label": "bits per second" });
  const legend = h("div", { class: "legend" });
  const verdicts = h("div", {});
  const reasons = h("div", {});
  const state = h("div", { class: "kv", id: "dash-state" });
  const maps = h("div", {});
  root.append(
    err,
    h("section", { class: "card" }, h("h2", {}, "Interfaces (rates over the last second)"), rates),
    h(
      "div",
      { class: "grid" },
      h("section", { class: "card" }, h("h2", {}, "Packets/s"), ppsCanvas, legend),
      h("section", { class: "card" }, h("h2", {}, "Bits/s"), bpsCanvas, legend.cloneNode()),
    ),
    h(
      "div",
      { class: "grid" },
      h("section", { class: "card" }, h("h2", {}, "Verdicts"), verdicts),
      h("section", { class: "card" }, h("h2", {}, "Reasons (non-zero)"), reasons),
      h("section", { class: "card" }, h("h2", {}, "State"), state),
      h("section", { class: "card" }, h("h2", {}, "Map fill levels"), maps),
    ),
  );
  const legends = root.querySelectorAll(".legend");

  ctx.every(1000, async () => {
    const stats = await attempt(err, () => api("GET", "/api/v1/stats"));
    if (!stats) return;
    sample(stats);
    const names = stats.interfaces.map((i) => i.name);
    rates.replaceChildren(
      table(
        ["interface", "mode", "pps", "bit/s", "packets", "bytes"],
        stats.interfaces.map((i) => {
          const pts = history.get(i.name) || [];
          const r = pts[pts.length - 1] || { pps: 0, bps: 0 };
          const c = totals(i);
          return h(
            "tr",
            { "data-iface": i.name },
            h("td", {}, i.name),
            h("td", {}, i.mode || "-"),
            h("td", { class: "num pps" }, si(r.pps)),
            h("td", { class: "num bps" }, si(r.bps) + "b"),
            h("td", { class: "num packets" }, num(c.packets)),
            h("td", { class: "num" }, num(c.bytes)),
          );
        }),
        { id: "rates" },
      ),
    );
    const series = (key) => names.map((n) => ({ name: n, points: (history.get(n) || []).map((p) => [p.t, p[key]]) }));
    drawPlot(ppsCanvas, series("pps"), { windowMs: WINDOW_MS, format: si });
    drawPlot(bpsCanvas, series("bps"), { windowMs: WINDOW_MS, format: (v) => si(v) + "b" });
    for (const l of legends) {
      l.replaceChildren(...names.map((n, i) => h("span", {}, h("i", { style: `background:${COLORS[i % COLORS.length]}` }), n)));
    }
    const sum = (kind) => {
      const out = {};
      for (const i of stats.interfaces) {
        for (const [k, c] of Object.entries(i.counters[kind])) {
          out[k] = out[k] || { packets: 0, bytes: 0 };
          out[k].packets += c.packets;
          out[k].bytes += c.bytes;
        }
      }
      return out;
    };
    const rows = (o, all) =>
      Object.entries(o)
        .filter(([, c]) => all || c.packets > 0)
        .sort((a, b) => b[1].packets - a[1].packets)
        .map(([k, c]) => h("tr", {}, h("td", {}, k), h("td", { class: "num" }, num(c.packets)), h("td", { class: "num" }, num(c.bytes))));
    verdicts.replaceChildren(table(["action", "packets", "bytes"], rows(sum("actions"), true), { id: "verdicts" }));
    const r = rows(sum("reasons"), false);
    reasons.replaceChildren(r.length ? table(["reason", "packets", "bytes"], r, { id: "reasons" }) : h("p", { class: "muted" }, "No packets yet."));
    maps.replaceChildren(...mapFill(stats));
  });

  ctx.every(5000, async () => {
    const [health, ct] = await Promise.allSettled([api("GET", "/healthz"), api("GET", "/api/v1/conntrack?limit=1")]);
    const kv = [];
    if (health.status === "fulfilled") {
      const s = health.value;
      kv.push(["database", s.db], ["attached interfaces", s.attached_interfaces]);
      const k = s.kernel_sync;
      if (k && k.enabled) {
        kv.push(
          ["kernel sync", h("span", { class: k.in_sync ? "ok" : "bad", id: "sync-state" }, k.in_sync ? "in sync" : "NOT in sync")],
          ["synced routes", num(k.routes)],
          ["synced neighbours", num(k.neighbours)],
          ["snapshots / events / errors", `${num(k.snapshots)} / ${num(k.events)} / ${num(k.errors)}`],
        );
      } else {
        kv.push(["kernel sync", h("span", { id: "sync-state" }, "off (static FIB)")]);
      }
    } else {
      kv.push(["health", h("span", { class: "bad" }, health.reason.message)]);
    }
    if (ct.status === "fulfilled") {
      const c = ct.value;
      const pct = c.capacity ? ((100 * c.total) / c.capacity).toFixed(1) : "0";
      kv.push(["connections", h("span", { id: "ct-size" }, `${num(c.total)} / ${num(c.capacity)} (${pct} %)`)]);
    } else {
      kv.push(["connections", h("span", { class: "bad" }, ct.reason.message)]);
    }
    state.replaceChildren(...kv.flatMap(([k, v]) => [h("span", { class: "muted" }, k), h("span", {}, v)]));
  });
}

const MAP_LABELS = {
  routes_v4: "IPv4 routes",
  routes_v6: "IPv6 routes",
  nexthops: "next hops",
  nh_groups: "ECMP groups",
  neighbours: "neighbours",
  interfaces: "interfaces",
  tbl8_groups: "DIR-24-8 tbl8 groups",
};

// The map fill table of one /api/v1/stats answer: each forwarding map, and
// the DIR-24-8 tbl8 group pool when that lookup is loaded.
function mapFill(stats) {
  const fills = (stats.maps || []).map((m) => ({ ...m }));
  const dir24 = stats.route_lookup && stats.route_lookup.dir24;
  if (dir24) fills.push({ name: "tbl8_groups", entries: dir24.tbl8_groups_used, capacity: dir24.tbl8_groups });
  const rows = fills.map((m) => {
    const pct = m.capacity ? (100 * m.entries) / m.capacity : 0;
    return h(
      "tr",
      { "data-map": m.name },
      h("td", {}, MAP_LABELS[m.name] || m.name, " ", h("span", { class: "muted map-id" }, m.name)),
      h("td", { class: "num entries" }, num(m.entries)),
      h("td", { class: "num" }, num(m.capacity)),
      h("td", { class: "fill" }, h("progress", { max: m.capacity || 1, value: m.entries, class: pct >= 90 ? "full" : null, "aria-label": `${m.name} ${pct.toFixed(1)} % full` })),
      h("td", { class: "num" }, pct < 0.1 && m.entries > 0 ? "<0.1 %" : pct.toFixed(1) + " %"),
    );
  });
  const out = [table(["map", "used", "capacity", "fill", ""], rows, { id: "maps" })];
  if (!dir24) out.push(h("p", { class: "muted" }, "IPv4 lookup: LPM trie only (no tbl8 groups)."));
  else if (dir24.lpm_blocks) out.push(h("p", { class: "bad" }, `${num(dir24.lpm_blocks)} /24 blocks served by the LPM trie: no tbl8 group was free (raise --tbl8-groups).`));
  return out;
}

export function interfaces(root, ctx) {
  const err = messageBox("ifaces-error");
  const list = h("div", {});
  const form = h(
    "form",
    { class: "row", id: "attach-form" },
    h("label", {}, "interface", h("input", { name: "name", required: true, placeholder: "eth3" })),
    h("label", {}, "mode", modeSelect("mode")),
    h("button", { type: "submit" }, "Attach"),
  );
  root.append(err, h("section", { class: "card" }, h("h2", {}, "Interfaces"), list, h("h2", {}, "Attach another"), form));
  const attach = (name, mode) =>
    attempt(err, () => api("POST", `/api/v1/interfaces/${encodeURIComponent(name)}/attach`, { mode })).then((r) => r && refresh());
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    attach(field(form, "name"), field(form, "mode"));
  });
  async function refresh() {
    const items = await attempt(err, () => api("GET", "/api/v1/interfaces"));
    if (!items) return;
    list.replaceChildren(
      table(
        ["name", "ifindex", "mode", "attached", "wanted", "managed", "packets", "bytes", "drop", "pass", "redirect", "tx", ""],
        items.map((i) => {
          const a = i.counters.actions;
          const sel = modeSelect("mode", i.mode);
          const action = i.attached
            ? h("button", { class: "danger", onclick: () => attempt(err, () => api("POST", `/api/v1/interfaces/${encodeURIComponent(i.name)}/detach`)).then((r) => r && refresh()) }, "Detach")
            : h("span", {}, sel, " ", h("button", { onclick: () => attach(i.name, sel.value) }, "Attach"));
          return h(
            "tr",
            { "data-iface": i.name },
            h("td", {}, i.name),
            h("td", {}, i.ifindex ?? "-"),
            h("td", {}, i.mode || "-"),
            h("td", {}, i.attached ? "yes" : "no"),
            h("td", {}, i.wanted ? "yes" : "no"),
            h("td", {}, i.managed ? "yes" : "no"),
            h("td", { class: "num" }, num(i.counters.received.packets)),
            h("td", { class: "num" }, num(i.counters.received.bytes)),
            ...["drop", "pass", "redirect", "tx"].map((k) => h("td", { class: "num" }, num(a[k] && a[k].packets))),
            h("td", {}, action),
          );
        }),
        { id: "ifaces" },
      ),
    );
  }
  ctx.every(5000, refresh);
}

function modeSelect(name, current) {
  return h("select", { name }, ["native", "skb"].map((m) => h("option", { value: m, selected: m === current }, m)));
}

export function routes(root, ctx) {
  const err = messageBox("routes-error");
  const filters = h(
    "form",
    { class: "row", id: "fib-filter" },
    h("label", {}, "prefix", h("input", { name: "prefix", placeholder: "198.18.0.0/16" })),
    h("label", {}, "dev", h("input", { name: "dev", class: "short", placeholder: "eth2" })),
    h("label", {}, "per page", h("input", { name: "limit", class: "short", type: "number", min: 1, max: 1000, value: "100" })),
    h("button", { type: "submit" }, "Show"),
  );
  const fib = h("div", {});
  const pager = h("div", { class: "row" });
  const staticErr = messageBox("static-error");
  const staticList = h("div", {});
  const add = h(
    "form",
    { class: "row", id: "static-form" },
    h("label", {}, "prefix", h("input", { name: "prefix", required: true, placeholder: "198.18.9.0/24" })),
    h("label", {}, "gateway", h("input", { name: "gateway", placeholder: "198.18.2.2" })),
    h("label", {}, "dev", h("input", { name: "dev", class: "short", placeholder: "eth2" })),
    h("label", {}, "type", h("select", { name: "type" }, ["unicast", "blackhole", "unreachable", "prohibit"].map((t) => h("option", { value: t }, t)))),
    h("label", {}, "metric", h("input", { name: "metric", class: "short", type: "number", min: 0 })),
    h("label", {}, "comment", h("input", { name: "comment" })),
    h("button", { type: "submit" }, "Add route"),
  );
  root.append(
    h("section", { class: "card" }, h("h2", {}, "Forwarding table (what XDP routes)"), filters, err, fib, pager),
    h("section", { class: "card" }, h("h2", {}, "Static routes"), add, staticErr, staticList),
  );
  let cursors = [null]; // the cursor of each page shown so far
  async function load() {
    const q = { prefix: field(filters, "prefix"), dev: field(filters, "dev"), limit: field(filters, "limit"), cursor: cursors[cursors.length - 1] };
    const page = await attempt(err, () => api("GET", "/api/v1/routes" + query(q)));
    if (!page) return;
    fib.replaceChildren(
      table(
        ["prefix", "type", "next hops"],
        page.items.map((r) =>
          h("tr", { "data-prefix": r.prefix }, h("td", {}, r.prefix), h("td", {}, r.type), h("td", {}, r.nexthops.map((n) => [n.gateway ? `via ${n.gateway}` : "", n.dev ? `dev ${n.dev}` : ""].join(" ").trim()).join(", ") || "-")),
        ),
        { id: "fib" },
      ),
    );
    pager.replaceChildren(
      h("button", { class: "secondary", disabled: cursors.length < 2, onclick: () => { cursors.pop(); load(); } }, "Previous"),
      h("button", { class: "secondary", disabled: !page.next_cursor, onclick: () => { cursors.push(page.next_cursor); load(); } }, "Next"),
      h("span", { class: "muted" }, `page ${cursors.length}` + (page.total != null ? `, ${num(page.total)} routes in all` : "")),
    );
  }
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    cursors = [null];
    load();
  });
  async function loadStatic() {
    // Every page: static routes are few (each one is typed by an operator).
    const r = await attempt(staticErr, async () => {
      const all = { items: [] };
      let cursor = null;
      do {
        const page = await api("GET", "/api/v1/routes/static" + query({ limit: 1000, cursor }));
        all.items.push(...page.items);
        cursor = page.next_cursor;
      } while (cursor);
      return all;
    });
    if (!r) return;
    staticList.replaceChildren(
      r.items.length
        ? table(
            ["prefix", "type", "gateway", "dev", "metric", "installed", "comment", ""],
            r.items.map((s) =>
              h(
                "tr",
                { "data-prefix": s.prefix },
                h("td", {}, s.prefix),
                h("td", {}, s.type),
                h("td", {}, s.gateway || "-"),
                h("td", {}, s.dev || "-"),
                h("td", {}, s.metric ?? "-"),
                h("td", {}, s.installed ? "yes" : "no"),
                h("td", {}, s.comment || ""),
                h("td", {}, h("button", { class: "danger", onclick: () => attempt(staticErr, () => api("DELETE", "/api/v1/routes/static/" + encodeURIComponent(s.prefix))).then((x) => x !== undefined && (loadStatic(), load())) }, "Delete")),
              ),
            ),
            { id: "static-routes" },
          )
        : h("p", { class: "muted" }, "No static routes."),
    );
  }
  add.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { prefix: field(add, "prefix"), type: field(add, "type") };
    for (const k of ["gateway", "dev", "comment"]) if (field(add, k)) body[k] = field(add, k);
    if (field(add, "metric")) body.metric = Number(field(add, "metric"));
    const r = await attempt(staticErr, () => api("POST", "/api/v1/routes/static", body));
    if (r === undefined) return;
    showNotice(staticErr, `Added ${body.prefix}.`);
    loadStatic();
    // The kernel sync carries it into the FIB within moments.
    setTimeout(load, 500);
  });
  load();
  loadStatic();
}

export function neighbours(root, ctx) {
  const err = messageBox("neigh-error");
  const filters = h(
    "form",
    { class: "row", id: "neigh-filter" },
    h("label", {}, "dev", h("input", { name: "dev", class: "short" })),
    h("label", {}, "per page", h("input", { name: "limit", class: "short", type: "number", min: 1, max: 1000, value: "1000" })),
    h("button", { type: "submit" }, "Show"),
  );
  const list = h("div", {});
  const pager = h("div", { class: "row" });
  root.append(h("section", { class: "card" }, h("h2", {}, "Neighbours (next-hop MACs XDP uses)"), filters, err, list, pager));
  let cursors = [null]; // the cursor of each page shown so far
  async function load() {
    const cursor = cursors[cursors.length - 1];
    const page = await attempt(err, () => api("GET", "/api/v1/neighbours" + query({ dev: field(filters, "dev"), limit: field(filters, "limit"), cursor })));
    if (!page) return;
    list.replaceChildren(table(["address", "mac", "dev"], page.items.map((n) => h("tr", {}, h("td", {}, n.address), h("td", {}, n.mac), h("td", {}, n.dev))), { id: "neighbours" }));
    // The cursor is the offset of the page's first entry.
    const first = Number(cursor || 0);
    const total = page.total ?? page.items.length;
    pager.replaceChildren(
      h("button", { class: "secondary", disabled: cursors.length < 2, onclick: () => { cursors.pop(); load(); } }, "Previous"),
      h("button", { class: "secondary", disabled: !page.next_cursor, onclick: () => { cursors.push(page.next_cursor); load(); } }, "Next"),
      h(
        "span",
        { class: "muted", id: "neigh-count" },
        page.items.length ? `showing ${num(first + 1)}–${num(first + page.items.length)} of ${num(total)} neighbours` : `${num(total)} neighbours`,
      ),
    );
  }
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    cursors = [null];
    load();
  });
  ctx.every(5000, load);
}

export function connections(root, ctx) {
  const err = messageBox("ct-error");
  const filters = h(
    "form",
    { class: "row", id: "ct-filter" },
    h("label", {}, "src", h("input", { name: "src", placeholder: "198.18.1.0/24" })),
    h("label", {}, "dst", h("input", { name: "dst" })),
    h("label", {}, "proto", h("input", { name: "proto", class: "short", placeholder: "tcp" })),
    h("label", {}, "port", h("input", { name: "port", class: "short", type: "number", min: 0, max: 65535 })),
    h("label", {}, "state", h("input", { name: "state", class: "short", placeholder: "ESTABLISHED" })),
    h("button", { type: "submit" }, "Show"),
    h("button", { type: "button", class: "danger", id: "ct-flush" }, "Flush matching"),
  );
  const list = h("div", {});
  const pager = h("div", { class: "row" });
  root.append(h("section", { class: "card" }, h("h2", {}, "Connections"), filters, err, list, pager));
  const filter = () => ({ src: field(filters, "src"), dst: field(filters, "dst"), proto: field(filters, "proto"), port: field(filters, "port"), state: field(filters, "state") });
  let cursors = [null];
  async function load() {
    const page = await attempt(err, () => api("GET", "/api/v1/conntrack" + query({ ...filter(), limit: 100, cursor: cursors[cursors.length - 1] })));
    if (!page) return;
    list.replaceChildren(
      table(
        ["proto", "source", "destination", "state", "reply", "age s", "idle s", "expires s", "in", "out", "rule"],
        page.items.map((c) =>
          h(
            "tr",
            {},
            h("td", {}, c.proto),
            h("td", {}, `${c.src}${c.sport ? ":" + c.sport : ""}`),
            h("td", {}, `${c.dst}${c.dport ? ":" + c.dport : ""}`),
            h("td", {}, c.state),
            h("td", {}, c.seen_reply ? "yes" : "no"),
            h("td", { class: "num" }, c.age_s),
            h("td", { class: "num" }, c.idle_s),
            h("td", { class: "num" }, c.expires_in_s),
            h("td", {}, c.ifindex_orig || "box"),
            h("td", {}, c.ifindex_out || "box"),
            h("td", {}, c.rule || "policy"),
          ),
        ),
        { id: "conntrack" },
      ),
    );
    pager.replaceChildren(
      h("button", { class: "secondary", disabled: cursors.length < 2, onclick: () => { cursors.pop(); load(); } }, "Previous"),
      h("button", { class: "secondary", disabled: !page.next_cursor, onclick: () => { cursors.push(page.next_cursor); load(); } }, "Next"),
      h("span", { class: "muted" }, `${num(page.total)} connections of ${num(page.capacity)} (table size)`),
    );
  }
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    cursors = [null];
    load();
  });
  filters.querySelector("#ct-flush").addEventListener("click", async () => {
    const r = await attempt(err, () => api("DELETE", "/api/v1/conntrack" + query(filter())));
    if (r) {
      showNotice(err, `Flushed ${num(r.deleted)} connections.`);
      cursors = [null];
      load();
    }
  });
  load();
  ctx.every(5000, () => cursors.length === 1 && !err.classList.contains("notice") && load());
}

