// The Firewall page: active rules with counters, the candidate (rules,
// policy, address sets), its diff, commit with commit-confirm, history.
import { api, attempt, field, h, messageBox, num, query, showNotice, table } from "./api.js";

function ruleText(r) {
  const parts = [];
  for (const k of ["in", "out", "src", "dst", "proto", "sport", "dport", "icmp", "tcp_flags"]) if (r[k] !== undefined && r[k] !== null) parts.push(`${k} ${r[k]}`);
  if (r.state) parts.push(`state ${r.state.join(",")}`);
  if (r.enabled === false) parts.push("(disabled)");
  return parts.join(" ") || "any";
}

// Pages of the largest size the API gives, followed until the last: a chain
// holds at most 4,096 enabled rules, so a few requests fetch any candidate.
const RULES_PER_PAGE = 1000;
const MAX_RULE_PAGES = 100;

// Every candidate rule, following next_cursor: {items, more}, where `more`
// says MAX_RULE_PAGES pages were not enough.
async function allRules() {
  const items = [];
  let cursor = null;
  for (let i = 0; i < MAX_RULE_PAGES; i++) {
    const page = await api("GET", "/api/v1/firewall/rules" + query({ limit: RULES_PER_PAGE, cursor }));
    items.push(...page.items);
    if (!page.next_cursor) return { items, more: false };
    cursor = page.next_cursor;
  }
  return { items, more: true };
}

export function firewall(root, ctx) {
  const activeErr = messageBox("fw-active-error");
  const active = h("div", {});
  const candErr = messageBox("fw-cand-error");
  const cand = h("div", {});
  const ruleForm = h(
    "form",
    { class: "row", id: "rule-form" },
    h("label", {}, "chain", h("select", { name: "chain" }, h("option", { value: "forward" }, "forward"), h("option", { value: "input" }, "input"))),
    h("label", {}, "in", h("input", { name: "in", class: "short" })),
    h("label", {}, "out", h("input", { name: "out", class: "short" })),
    h("label", {}, "src", h("input", { name: "src", placeholder: "prefix or @set" })),
    h("label", {}, "dst", h("input", { name: "dst", placeholder: "prefix or @set" })),
    h("label", {}, "proto", h("input", { name: "proto", class: "short", placeholder: "tcp" })),
    h("label", {}, "sport", h("input", { name: "sport", class: "short" })),
    h("label", {}, "dport", h("input", { name: "dport", class: "short", placeholder: "443" })),
    h("label", {}, "state", h("input", { name: "state", class: "short", placeholder: "new,established" })),
    h("label", {}, "action", h("select", { name: "action" }, ["accept", "drop", "reject"].map((a) => h("option", { value: a }, a)))),
    h("label", {}, "position", h("input", { name: "position", class: "short", type: "number", min: 1 })),
    h("label", {}, "comment", h("input", { name: "comment" })),
    h("button", { type: "submit" }, "Add rule"),
  );
  const policyForm = h(
    "form",
    { class: "row", id: "policy-form" },
    ...["forward", "input"].map((c) => h("label", {}, `${c} policy`, h("select", { name: c }, ["accept", "drop", "reject"].map((a) => h("option", { value: a }, a))))),
    h("button", { type: "submit" }, "Set policy"),
  );
  const diff = h("pre", { class: "diff", id: "fw-diff" });
  const commitErr = messageBox("fw-commit-error");
  const commitForm = h(
    "form",
    { class: "row", id: "commit-form" },
    h("label", {}, "comment", h("input", { name: "comment" })),
    h("label", {}, "roll back unless confirmed within (s)", h("input", { name: "confirm_within", class: "short", type: "number", min: 1, max: 86400 })),
    h("button", { type: "submit" }, "Commit"),
  );
  const pending = h("div", { id: "fw-pending" });
  const histErr = messageBox("fw-history-error");
  const history = h("div", {});
  const historyPager = h("div", { class: "row" });
  const historyCursors = [null]; // the cursor of each history page shown
  const setsErr = messageBox("fw-sets-error");
  const sets = h("div", {});
  const setForm = h(
    "form",
    { id: "set-form" },
    h("div", { class: "row" }, h("label", {}, "set name", h("input", { name: "name", required: true, placeholder: "blocklist" })), h("label", {}, "comment", h("input", { name: "comment" }))),
    h("label", { style: "display:flex" }, "prefixes (one per line, or separated by spaces or commas; replaces the set)", h("textarea", { name: "prefixes", placeholder: "198.18.200.0/24\n2001:db8:bad::/48" })),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Import set")),
  );
  root.append(
    h("section", { class: "card" }, h("h2", {}, "Active ruleset"), activeErr, active),
    h("section", { class: "card" }, h("h2", {}, "Candidate (not running until committed)"), candErr, cand, h("h2", {}, "Add a rule"), ruleForm, policyForm),
    h("section", { class: "card" }, h("h2", {}, "Diff: what a commit would change"), diff, commitForm, commitErr, pending),
    h("section", { class: "card" }, h("h2", {}, "History"), histErr, history, historyPager),
    h("section", { class: "card" }, h("h2", {}, "Address sets (candidate)"), setsErr, sets, setForm),
  );

  async function loadActive() {
    const a = await attempt(activeErr, () => api("GET", "/api/v1/firewall/active"));
    if (!a) return;
    const rows = a.rules.map((r) =>
      h(
        "tr",
        { "data-rule": r.id },
        h("td", {}, r.chain),
        h("td", { class: "num" }, r.position),
        h("td", {}, r.id),
        h("td", {}, ruleText(r)),
        h("td", {}, r.action),
        h("td", { class: "num hits" }, num(r.packets)),
        h("td", { class: "num" }, num(r.bytes)),
        h("td", {}, r.comment || ""),
      ),
    );
    for (const c of ["forward", "input"]) {
      const pc = a.policy_counters[c];
      rows.push(h("tr", { "data-policy": c }, h("td", {}, c), h("td", {}, "policy"), h("td", {}, ""), h("td", {}, "anything else"), h("td", {}, a.policy[c]), h("td", { class: "num hits" }, num(pc.packets)), h("td", { class: "num" }, num(pc.bytes)), h("td", {}, "")));
    }
    active.replaceChildren(
      h("p", { class: "muted" }, a.commit ? `Commit #${a.commit}` : "No commit yet: the empty ruleset (everything accepted)."),
      table(["chain", "#", "id", "match", "action", "packets", "bytes", "comment"], rows, { id: "fw-active" }),
    );
  }

  async function loadCandidate() {
    const [c, d] = await Promise.all([
      attempt(candErr, () => api("GET", "/api/v1/firewall/candidate")),
      attempt(commitErr, () => api("GET", "/api/v1/firewall/diff")),
    ]);
    if (c) {
      const rules = await attempt(candErr, () => allRules());
      if (rules) {
        cand.replaceChildren(
          rules.items.length
            ? table(
                ["chain", "#", "id", "match", "action", "comment", ""],
                rules.items.map((r) =>
                  h(
                    "tr",
                    { "data-rule": r.id },
                    h("td", {}, r.chain),
                    h("td", { class: "num" }, r.position),
                    h("td", {}, r.id),
                    h("td", {}, ruleText(r)),
                    h("td", {}, r.action),
                    h("td", {}, r.comment || ""),
                    h("td", {}, h("button", { class: "danger", onclick: () => attempt(candErr, () => api("DELETE", `/api/v1/firewall/rules/${r.id}`)).then((x) => x !== undefined && loadCandidate()) }, "Delete")),
                  ),
                ),
                { id: "fw-candidate" },
              )
            : h("p", { class: "muted", id: "fw-candidate" }, "No rules in the candidate."),
          h(
            "p",
            { class: "muted" },
            h("span", { id: "fw-candidate-count", class: rules.more ? "bad" : null }, `${num(rules.items.length)} rules` + (rules.more ? ` shown; the rest (past ${num(MAX_RULE_PAGES * RULES_PER_PAGE)}) are not.` : ".")),
            ` Policy: forward ${c.policy.forward}, input ${c.policy.input}.`,
          ),
        );
      }
      for (const ch of ["forward", "input"]) policyForm.querySelector(`[name="${ch}"]`).value = c.policy[ch];
      sets.replaceChildren(
        c.sets && c.sets.length
          ? table(["name", "prefixes", "comment"], c.sets.map((s) => h("tr", {}, h("td", {}, s.name), h("td", { class: "num" }, num((s.prefixes || []).length)), h("td", {}, s.comment || ""))), { id: "fw-sets" })
          : h("p", { class: "muted" }, "No address sets."),
      );
    }
    if (d) {
      diff.replaceChildren(...(d.lines.length ? d.lines.map((l) => h("div", { class: l.startsWith("+") ? "add" : l.startsWith("-") ? "del" : "" }, l)) : ["No changes against the active commit."]));
    }
  }

  async function loadHistory() {
    const cursor = historyCursors[historyCursors.length - 1];
    const path = "/api/v1/firewall/commits?limit=20" + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "");
    const r = await attempt(histErr, () => api("GET", path));
    if (!r) return;
    historyPager.replaceChildren(
      h("button", { class: "secondary", id: "fw-history-newer", disabled: historyCursors.length < 2, onclick: () => { historyCursors.pop(); loadHistory(); } }, "Newer"),
      h("button", { class: "secondary", id: "fw-history-older", disabled: !r.next_cursor, onclick: () => { historyCursors.push(r.next_cursor); loadHistory(); } }, "Older"),
      h("span", { class: "muted" }, `page ${historyCursors.length}`),
    );
    history.replaceChildren(
      r.items.length
        ? table(
            ["id", "when (UTC)", "author", "comment", "rules", "changes", ""],
            r.items.map((c) =>
              h(
                "tr",
                { "data-commit": c.id },
                h("td", {}, c.id + (c.active ? " (active)" : "")),
                h("td", {}, c.created_at.replace("T", " ").replace(/\.\d+Z$/, "")),
                h("td", { class: "author" }, c.author),
                h("td", { class: "comment" }, c.comment),
                h("td", {}, `${c.forward_rules} fwd, ${c.input_rules} in`),
                h("td", {}, c.diff.slice(0, 3).join("; ") + (c.diff.length > 3 ? ` (+${c.diff.length - 3})` : "")),
                h("td", {}, c.active ? "" : h("button", { class: "secondary", onclick: () => attempt(histErr, () => api("POST", `/api/v1/firewall/rollback/${c.id}`)).then((x) => x && refreshAll()) }, "Rollback")),
              ),
            ),
            { id: "fw-history" },
          )
        : h("p", { class: "muted" }, "No commits yet."),
    );
  }

  let wasPending = false;
  async function loadPending() {
    const p = await attempt(commitErr, () => api("GET", "/api/v1/firewall/confirm"));
    if (!p) return;
    if (!p.pending) {
      pending.replaceChildren();
      if (wasPending) {
        // Confirmed elsewhere or rolled back: show what happened.
        wasPending = false;
        refreshAll();
      }
      return;
    }
    wasPending = true;
    pending.replaceChildren(
      h(
        "div",
        { class: "pending" },
        h("span", {}, `Commit #${p.commit} rolls back to ${p.previous_commit ? "#" + p.previous_commit : "the empty ruleset"} in`),
        h("span", { class: "countdown", id: "fw-countdown" }, `${Math.ceil(p.seconds_left)} s`),
        h("button", { id: "fw-confirm", onclick: () => attempt(commitErr, () => api("POST", "/api/v1/firewall/confirm")).then((x) => x && (showNotice(commitErr, `Commit #${p.commit} confirmed.`), refreshAll())) }, "Confirm"),
      ),
    );
  }

  function refreshAll() {
    loadActive();
    loadCandidate();
    loadHistory();
    loadPending();
  }

  ruleForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { chain: field(ruleForm, "chain"), action: field(ruleForm, "action") };
    for (const k of ["in", "out", "src", "dst", "proto", "sport", "dport", "comment"]) if (field(ruleForm, k)) body[k] = field(ruleForm, k);
    if (field(ruleForm, "state")) body.state = field(ruleForm, "state").split(/[\s,]+/).filter(Boolean);
    if (field(ruleForm, "position")) body.position = Number(field(ruleForm, "position"));
    const r = await attempt(candErr, () => api("POST", "/api/v1/firewall/rules", body));
    if (r) {
      // After the reload: its own success clears the box.
      await loadCandidate();
      showNotice(candErr, `Added rule ${r.id} at ${r.chain} #${r.position}.`);
    }
  });
  policyForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await attempt(candErr, async () => {
      const c = await api("GET", "/api/v1/firewall/candidate");
      c.policy = { forward: field(policyForm, "forward"), input: field(policyForm, "input") };
      return api("PUT", "/api/v1/firewall/candidate", c);
    });
    if (r !== undefined) loadCandidate();
  });
  commitForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await attempt(commitErr, () =>
      api("POST", "/api/v1/firewall/commit" + query({ confirm_within: field(commitForm, "confirm_within") }), { comment: field(commitForm, "comment") }),
    );
    if (r) {
      showNotice(commitErr, `Committed #${r.commit}` + (r.confirm ? `; confirm within ${Math.ceil(r.confirm.seconds_left)} s or it rolls back.` : "."));
      refreshAll();
    }
  });
  setForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = field(setForm, "name");
    const prefixes = field(setForm, "prefixes").split(/[\s,]+/).filter(Boolean);
    const body = { prefixes };
    if (field(setForm, "comment")) body.comment = field(setForm, "comment");
    const r = await attempt(setsErr, () => api("PUT", `/api/v1/firewall/sets/${encodeURIComponent(name)}`, body));
    if (r !== undefined) {
      showNotice(setsErr, `Set ${name}: ${num(prefixes.length)} prefixes sent` + (r && r.duplicates_removed ? `, ${num(r.duplicates_removed)} duplicates removed.` : "."));
      loadCandidate();
    }
  });

  loadCandidate();
  loadHistory();
  ctx.every(2000, loadActive);
  ctx.every(1000, loadPending);
}
