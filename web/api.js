// The REST API client and small DOM helpers shared by every page.
const TOKEN_KEY = "xdpgate.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// An API error: the answer's `error.message` and `details`, or what went
// wrong on the way.
export class ApiError extends Error {
  constructor(status, message, details) {
    super(message);
    this.status = status;
    this.details = details || [];
  }
}

// Called with the error when the API answers 401 (app.js shows the sign-in box).
let onUnauthorized = () => {};
export function whenUnauthorized(f) {
  onUnauthorized = f;
}

// `method path` with an optional JSON body; resolves to the JSON answer,
// rejects with an ApiError.
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "cannot reach the xdpgate API: " + e.message);
  }
  const text = await resp.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!resp.ok) {
    const err = json && json.error;
    const e = err
      ? new ApiError(resp.status, err.message, err.details)
      : new ApiError(resp.status, `${method} ${path} answered ${resp.status}: ${text.slice(0, 200)}`);
    if (resp.status === 401) onUnauthorized(e);
    throw e;
  }
  return json;
}

// h("td", {class: "num"}, "12") builds an element; attributes starting
// with "on" are listeners.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    // Through the CSSOM: the CSP refuses style attributes.
    else if (k === "style") el.style.cssText = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// A detail of an error: a string, or an object with a `message` and
// more fields (index, rule, ...).
function detailText(d) {
  if (typeof d === "string") return d;
  if (d && typeof d === "object") {
    const rest = Object.entries(d).filter(([k]) => k !== "message");
    const extra = rest.map(([k, v]) => `${k} ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
    return (d.message || "") + (extra ? ` (${extra})` : "");
  }
  return JSON.stringify(d);
}

// Show `e` in `box` (an element whose contents it replaces), in words.
export function showError(box, e) {
  box.replaceChildren();
  box.hidden = false;
  box.className = "error";
  box.setAttribute("role", "alert");
  const status = e.status ? ` (HTTP ${e.status})` : "";
  box.append(h("strong", {}, e.message || String(e)), status);
  if (e.details && e.details.length) {
    box.append(h("ul", {}, e.details.map((d) => h("li", {}, detailText(d)))));
  }
}

export function clearBox(box) {
  box.replaceChildren();
  box.hidden = true;
}

export function showNotice(box, text) {
  box.replaceChildren(text);
  box.hidden = false;
  box.className = "notice";
  box.removeAttribute("role");
}

// An empty, hidden message box.
export function messageBox(id) {
  const b = h("div", { id });
  b.hidden = true;
  return b;
}

// Run an async action, showing its error (or clearing old ones) in `box`.
export async function attempt(box, f) {
  try {
    const r = await f();
    clearBox(box);
    return r;
  } catch (e) {
    showError(box, e);
    return undefined;
  }
}

export function table(headers, rows, attrs) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      attrs || {},
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { class: /^(packets|bytes|pps|bit\/s|#|count|size)/.test(x) ? "num" : null }, x)))),
      h("tbody", {}, rows),
    ),
  );
}

export function num(n) {
  return Number(n || 0).toLocaleString("en-US");
}

// 1234567 -> "1.23 M" (SI).
export function si(n) {
  const v = Number(n || 0);
  const units = ["", " k", " M", " G", " T"];
  let i = 0;
  let x = v;
  while (Math.abs(x) >= 1000 && i < units.length - 1) {
    x /= 1000;
    i++;
  }
  return (i === 0 ? x.toFixed(0) : x.toFixed(2)) + units[i];
}

// A query string from the non-empty fields of `o`.
export function query(o) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(o)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
  const s = p.toString();
  return s ? "?" + s : "";
}

// The value of the form field named `name` inside `root`, trimmed.
export function field(root, name) {
  const el = root.querySelector(`[name="${name}"]`);
  return el ? el.value.trim() : "";
}
