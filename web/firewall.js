// The Firewall page: active rules with counters, the candidate (rules
// added, edited in place, moved and deleted; policy; address sets imported,
// loaded back and deleted), its diff, commit with commit-confirm, history.
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

// The rule form's text fields, named as the API names the rule's fields.
const RULE_TEXT_FIELDS = ["in", "out", "src", "dst", "proto", "sport", "dport", "icmp", "tcp_flags", "comment"];

// The rule the form describes, in the API's shape. Empty fields are left
// out, so an edit that clears a field removes that match.
function formRule(form) {
  const body = { chain: field(form, "chain"), action: field(form, "action") };
  for (const k of RULE_TEXT_FIELDS) if (field(form, k)) body[k] = field(form, k);
  if (field(form, "state")) body.state = field(form, "state").split(/[\s,]+/).filter(Boolean);
  if (field(form, "position")) body.position = Number(field(form, "position"));
  body.enabled = form.querySelector('[name="enabled"]').checked;
  if (form.querySelector('[name="log"]').checked) body.log = true;
  return body;
}

// Fill the form with rule `r`, or with the defaults of a new rule.
function fillRuleForm(form, r) {
  for (const k of RULE_TEXT_FIELDS) form.querySelector(`[name="${k}"]`).value = r && r[k] !== undefined && r[k] !== null ? String(r[k]) : "";
  form.querySelector('[name="chain"]').value = r ? r.chain : "forward";
  form.querySelector('[name="action"]').value = r ? r.action : "accept";
  form.querySelector('[name="state"]').value = r && r.state ? r.state.join(",") : "";
  form.querySelector('[name="position"]').value = r ? r.position : "";
  form.querySelector('[name="enabled"]').checked = r ? r.enabled !== false : true;
  form.querySelector('[name="log"]').checked = Boolean(r && r.log);
}

// How many rules each chain of the candidate holds.
function chainLengths(rules) {
  const n = { forward: 0, input: 0 };
  for (const r of rules) n[r.chain] = (n[r.chain] || 0) + 1;
  return n;
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
    h("label", {}, "icmp", h("input", { name: "icmp", class: "short", placeholder: "8/0" })),
    h("label", {}, "tcp flags", h("input", { name: "tcp_flags", class: "short", placeholder: "syn,!ack" })),
    h("label", {}, "state", h("input", { name: "state", class: "short", placeholder: "new,established" })),
    h("label", {}, "action", h("select", { name: "action" }, ["accept", "drop", "reject"].map((a) => h("option", { value: a }, a)))),
    h("label", {}, "position", h("input", { name: "position", class: "short", type: "number", min: 1 })),
    h("label", {}, "comment", h("input", { name: "comment" })),
    h("label", { class: "check" }, h("input", { name: "enabled", type: "checkbox", checked: true }), "enabled"),
    h("label", { class: "check" }, h("input", { name: "log", type: "checkbox" }), "log"),
    h("button", { type: "submit", id: "rule-submit" }, "Add rule"),
    h("button", { type: "button", class: "secondary", id: "rule-cancel", hidden: true, onclick: () => stopEditing() }, "Cancel"),
  );
  const ruleFormTitle = h("h2", { id: "rule-form-title" }, "Add a rule");
  // The candidate rule the form is editing (null: the form adds a rule).
  let editing = null;
  function startEditing(r) {
    editing = r;
    fillRuleForm(ruleForm, r);
    ruleFormTitle.textContent = `Edit rule ${r.id}`;
    ruleForm.querySelector("#rule-submit").textContent = `Save rule ${r.id}`;
    ruleForm.querySelector("#rule-cancel").hidden = false;
    ruleForm.scrollIntoView({ block: "center" });
  }
  function stopEditing() {
    editing = null;
    fillRuleForm(ruleForm, null);
    ruleFormTitle.textContent = "Add a rule";
    ruleForm.querySelector("#rule-submit").textContent = "Add rule";
    ruleForm.querySelector("#rule-cancel").hidden = true;
  }
  // Move candidate rule `r` by `by` places in its chain (PUT with a
  // position moves it; the rest of the rule is sent as it is).
  async function moveRule(r, by) {
    const { position, ...rule } = r;
    const x = await attempt(candErr, () => api("PUT", `/api/v1/firewall/rules/${r.id}`, { ...rule, position: position + by }));
    if (x) {
      await loadCandidate();
      showNotice(candErr, `Moved rule ${x.id} to ${x.chain} #${x.position}.`);
    }
  }
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
    h("section", { class: "card" }, h("h2", {}, "Candidate (not running until committed)"), candErr, cand, ruleFormTitle, ruleForm, policyForm),
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
        const lengths = chainLengths(rules.items);
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
                    h(
                      "td",
                      { class: "actions" },
                      h("button", { class: "secondary rule-up", title: "Move up", "aria-label": `Move rule ${r.id} up`, disabled: r.position <= 1, onclick: () => moveRule(r, -1) }, "\u2191"),
                      h("button", { class: "secondary rule-down", title: "Move down", "aria-label": `Move rule ${r.id} down`, disabled: r.position >= lengths[r.chain], onclick: () => moveRule(r, 1) }, "\u2193"),
                      h("button", { class: "secondary rule-edit", onclick: () => startEditing(r) }, "Edit"),
                      h("button", { class: "danger rule-delete", onclick: () => attempt(candErr, () => api("DELETE", `/api/v1/firewall/rules/${r.id}`)).then((x) => x !== undefined && (editing && editing.id === r.id && stopEditing(), loadCandidate())) }, "Delete"),
                    ),
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
          ? table(
              ["name", "prefixes", "comment", ""],
              c.sets.map((s) =>
                h(
                  "tr",
                  { "data-set": s.name },
                  h("td", {}, s.name),
                  h("td", { class: "num" }, num((s.prefixes || []).length)),
                  h("td", {}, s.comment || ""),
                  h("td", { class: "actions" }, h("button", { class: "secondary set-edit", onclick: () => editSet(s.name) }, "Edit"), h("button", { class: "danger set-delete", onclick: () => deleteSet(s.name) }, "Delete")),
                ),
              ),
              { id: "fw-sets" },
            )
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

  // Load set `name` (every prefix) into the import form, to change and
  // import again.
  async function editSet(name) {
    const s = await attempt(setsErr, () => api("GET", `/api/v1/firewall/sets/${encodeURIComponent(name)}`));
    if (!s) return;
    setForm.querySelector('[name="name"]').value = s.name;
    setForm.querySelector('[name="comment"]').value = s.comment || "";
    setForm.querySelector('[name="prefixes"]').value = s.prefixes.join("\n");
    showNotice(setsErr, `Set ${s.name}: ${num(s.prefixes.length)} prefixes loaded below; Import set replaces them.`);
    setForm.scrollIntoView({ block: "center" });
  }
  // The API refuses (409) while a candidate rule uses the set.
  async function deleteSet(name) {
    const r = await attempt(setsErr, () => api("DELETE", `/api/v1/firewall/sets/${encodeURIComponent(name)}`));
    if (r === undefined) return;
    await loadCandidate();
    showNotice(setsErr, `Set ${name} deleted from the candidate.`);
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
    const body = formRule(ruleForm);
    const id = editing && editing.id;
    const r = await attempt(candErr, () => (id ? api("PUT", `/api/v1/firewall/rules/${id}`, body) : api("POST", "/api/v1/firewall/rules", body)));
    if (r) {
      if (id) stopEditing();
      // After the reload: its own success clears the box.
      await loadCandidate();
      showNotice(candErr, `${id ? "Saved" : "Added"} rule ${r.id} at ${r.chain} #${r.position}.`);
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
