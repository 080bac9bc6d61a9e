// The xdpgate admin UI: hash routing, the sign-in box, page lifecycle.
import { api, h, setToken, token, whenUnauthorized } from "./api.js";
import { firewall } from "./firewall.js";
import { connections, dashboard, interfaces, neighbours, routes } from "./pages.js";

// Uncaught errors are collected (and still reach the console), so tests
// and users can see them.
window.xdpgateErrors = [];
window.addEventListener("error", (e) => window.xdpgateErrors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => window.xdpgateErrors.push(String(e.reason && e.reason.message ? e.reason.message : e.reason)));

const PAGES = { dashboard, interfaces, routes, neighbours, firewall, connections };

let timers = [];

function stopTimers() {
  for (const t of timers) clearInterval(t);
  timers = [];
}

function show() {
  stopTimers();
  const name = (location.hash.replace(/^#\/?/, "") || "dashboard").split("?")[0];
  const page = PAGES[name] || dashboard;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.getAttribute("href") === "#/" + (PAGES[name] ? name : "dashboard"));
  const root = document.getElementById("page");
  root.replaceChildren();
  root.dataset.page = PAGES[name] ? name : "dashboard";
  document.title = `xdpgate: ${root.dataset.page}`;
  const mine = timers;
  const ctx = {
    // f now, then every ms (ms 0: only now) while this page is shown;
    // a run still going is not started again.
    every(ms, f) {
      let busy = false;
      const run = async () => {
        if (busy || timers !== mine) return;
        busy = true;
        try {
          await f();
        } finally {
          busy = false;
        }
      };
      run();
      if (ms > 0) mine.push(setInterval(run, ms));
    },
  };
  page(root, ctx);
}

function signedIn() {
  document.getElementById("signout").hidden = !token();
}

whenUnauthorized((e) => {
  const box = document.getElementById("signin");
  if (!box.hidden) return;
  document.getElementById("signin-why").replaceChildren(h("span", { class: "bad" }, e.message));
  box.hidden = false;
  document.getElementById("signin-token").focus();
});

document.getElementById("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const t = document.getElementById("signin-token").value.trim();
  setToken(t);
  const box = document.getElementById("signin");
  box.hidden = true;
  // A write-free request that checks the token (a wrong token is a 401
  // everywhere): the box comes back with the reason if it is refused.
  try {
    await api("GET", "/api/v1/firewall/confirm");
    document.getElementById("signin-token").value = "";
  } catch {
    // Shown by the sign-in box itself.
  }
  signedIn();
  show();
});

document.getElementById("signout").addEventListener("click", () => {
  setToken(null);
  signedIn();
  show();
});

window.addEventListener("hashchange", show);
signedIn();
show();
