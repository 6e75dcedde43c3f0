// The freshtoken demo page. No inline script or style: the page is served with
// a strict Content-Security-Policy, so everything lives in this module.
import { createClient, SessionExpiredError } from "/static/freshtoken.js";

const $ = (id) => document.getElementById(id);

// Every client event, for people poking around in the console and for the browser tests.
const eventLog = (window.__freshtoken_events = []);
const record = (type, detail = {}) => eventLog.push({ type, time: Date.now(), ...detail });

const state = {
  refreshes: 0,
  replayed: false,
  refreshRow: null,
  waiting: 0,
  requestRows: new Map(),
};

const client = createClient({
  onSessionExpired: (info) => {
    record("demo:session-expired", { reason: info.reason });
    showSignedOut(noticeFor(info));
  },
  onEvent: (event) => {
    eventLog.push(event);
    onClientEvent(event);
  },
});
window.freshtokenDemo = { client };

// --- views ------------------------------------------------------------------------

function setState(name) {
  document.body.dataset.state = name;
}

function setStatus(text, tone) {
  $("status-text").textContent = text;
  $("status").dataset.tone = tone;
}

function noticeFor(info) {
  if (state.replayed) {
    return {
      text:
        "The server saw an old refresh token replayed and revoked the whole session " +
        "(reuse detection). Sign in again.",
      tone: "bad",
    };
  }
  if (info.reason === "logout") return { text: "You signed out in another tab.", tone: "warn" };
  return { text: "Your session has ended on the server. Sign in again.", tone: "warn" };
}

function showSignedOut(notice) {
  $("app-view").hidden = true;
  $("login-view").hidden = false;
  const box = $("session-notice");
  if (notice) {
    box.textContent = notice.text;
    box.dataset.tone = notice.tone;
    box.hidden = false;
  } else {
    box.hidden = true;
  }
  setStatus("Signed out", "muted");
  setState("signed-out");
  $("username").focus();
}

function showSignedIn() {
  state.replayed = false;
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  $("session-notice").hidden = true;
  updateFacts();
  setState("signed-in");
}

function updateFacts() {
  const claims = client.claims || {};
  const user = displayName(claims);
  $("fact-user").textContent = user;
  $("fact-session").textContent = claims.sid ? String(claims.sid) : "—";
  $("fact-session").title = claims.sid ? String(claims.sid) : "";
  $("fact-scope").textContent = claims.scope || "—";
  $("fact-refreshes").textContent = String(state.refreshes);
  if (client.lifetime) $("ttl-note").textContent = `${formatSeconds(client.lifetime)} seconds`;
  if (client.isAuthenticated) setStatus(`Signed in as ${user}`, "ok");
}

// The access token names the user by id; remember the name typed at sign-in for display.
// (Only the name: no token is ever written to storage.)
const NAME_KEY = "freshtoken-demo:username";

function displayName(claims) {
  if (!claims.sub) return "—";
  if (claims.preferred_username) return String(claims.preferred_username);
  const remembered = localStorage.getItem(NAME_KEY);
  if (remembered) return remembered;
  return `user ${String(claims.sub).slice(0, 8)}`;
}

function formatSeconds(value) {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

// --- the countdown ------------------------------------------------------------------

function tick() {
  const card = document.querySelector(".token-card");
  if (!card || $("app-view").hidden) return;
  const lifetimeMs = client.lifetime * 1000;
  const left = Math.max(0, client.expiresAt - Date.now());
  $("countdown-value").textContent = (left / 1000).toFixed(1);
  const fill = lifetimeMs > 0 ? Math.min(1, left / lifetimeMs) : 0;
  $("countdown-bar").style.setProperty("--fill", fill.toFixed(3));
  let phase = "ok";
  let label = "valid";
  if (client.refreshing) {
    phase = "refreshing";
    label = "refreshing";
  } else if (!client.isAuthenticated || left === 0) {
    phase = "expired";
    label = "expired";
  } else if (fill < 0.25) {
    phase = "low";
    label = "expiring";
  }
  card.dataset.phase = phase;
  const badge = $("token-badge");
  badge.textContent = label;
  badge.dataset.tone = { ok: "ok", low: "warn", expired: "bad", refreshing: "info" }[phase];
}

setInterval(tick, 100);

// --- the timeline ---------------------------------------------------------------------

const MAX_ROWS = 80;

function clock(time) {
  const d = new Date(time);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function addRow(kind, tone, text, note = "") {
  const list = $("timeline");
  const row = document.createElement("li");
  row.dataset.kind = kind;
  const when = document.createElement("span");
  when.className = "when";
  when.textContent = clock(Date.now());
  const badge = document.createElement("span");
  badge.className = "badge";
  const what = document.createElement("span");
  what.className = "what";
  row.append(when, badge, what);
  setRow(row, { kind, tone, text, note });
  list.prepend(row);
  while (list.children.length > MAX_ROWS) list.lastElementChild.remove();
  $("timeline-empty").hidden = true;
  return row;
}

function setRow(row, { kind, tone, text, note }) {
  const badge = row.querySelector(".badge");
  const what = row.querySelector(".what");
  if (kind !== undefined) {
    badge.textContent = kind;
    row.dataset.kind = kind;
  }
  if (tone !== undefined) badge.dataset.tone = tone;
  if (text !== undefined) {
    what.textContent = text;
    if (note) {
      const small = document.createElement("small");
      small.textContent = note;
      what.append(small);
    }
  }
}

const REASONS = {
  expiring: "token about to expire",
  "no-token": "no token yet",
  401: "after a 401",
  restore: "page load",
  manual: "on request",
};

function statusTone(status) {
  if (status >= 200 && status < 300) return "ok";
  if (status === 401 || status === 429) return "warn";
  return "bad";
}

function onClientEvent(event) {
  switch (event.type) {
    case "request": {
      if (event.attempt === 1 && event.id !== undefined) {
        const row = addRow("request", "muted", `${event.method} ${event.path}`, `#${event.id} sending`);
        state.requestRows.set(event.id, row);
      }
      break;
    }
    case "response": {
      const row = state.requestRows.get(event.id);
      const text = `${event.method} ${event.path}`;
      const note = event.status === 401 ? `#${event.id} access token rejected` : `#${event.id}`;
      if (event.attempt === 1 && row) {
        setRow(row, { kind: String(event.status), tone: statusTone(event.status), text, note });
      } else {
        const retryRow = state.requestRows.get(`retry-${event.id}`);
        if (retryRow) {
          setRow(retryRow, {
            kind: String(event.status),
            tone: statusTone(event.status),
            text,
            note: `#${event.id} after one retry`,
          });
        }
      }
      break;
    }
    case "retry": {
      const row = addRow(
        "retry",
        "info",
        `${event.method} ${event.path}`,
        `#${event.id} retrying once with the new token`,
      );
      state.requestRows.set(`retry-${event.id}`, row);
      break;
    }
    case "refresh-start":
      state.waiting = 0;
      // A page load that finds no session is not news; a restored one gets its own row.
      state.refreshRow =
        event.reason === "restore"
          ? null
          : addRow("refresh", "info", "Refreshing through the cookie", REASONS[event.reason] || "");
      break;
    case "refresh-join":
      state.waiting += 1;
      if (state.refreshRow) {
        setRow(state.refreshRow, {
          text: "Refreshing through the cookie",
          note: `shared by ${state.waiting + 1} requests`,
        });
      }
      break;
    case "refresh-retry":
      if (state.refreshRow)
        setRow(state.refreshRow, {
          tone: "warn",
          text: "Refresh failed transiently",
          note: `retry ${event.attempt}`,
        });
      break;
    case "refresh-success":
      state.refreshes += 1;
      if (state.refreshRow) {
        const shared = state.waiting > 0 ? `, shared by ${state.waiting + 1} requests` : "";
        setRow(state.refreshRow, {
          kind: "refreshed",
          tone: "ok",
          text: "New access token",
          note: `valid ${formatSeconds(event.expiresIn)} s${shared}`,
        });
      }
      state.refreshRow = null;
      updateFacts();
      break;
    case "refresh-failure":
      if (!event.transient && state.refreshRow) {
        setRow(state.refreshRow, {
          kind: "refused",
          tone: "bad",
          text: "Refresh refused",
          note: event.error,
        });
        state.refreshRow = null;
      }
      break;
    case "refresh-skipped":
      if (state.refreshRow) {
        setRow(state.refreshRow, {
          kind: "shared",
          tone: "info",
          text: "Another tab already refreshed",
          note: "using its token, no second refresh",
        });
        state.refreshRow = null;
      }
      break;
    case "token":
      if (event.source === "other-tab") {
        addRow("shared", "info", "New token from another tab", "via BroadcastChannel");
        // Signed in elsewhere (another tab's login): this tab follows.
        if (document.body.dataset.state === "signed-out") showSignedIn();
      }
      updateFacts();
      break;
    case "session-expired":
      addRow(
        "ended",
        "bad",
        "Session ended",
        event.reason === "logout" ? "signed out elsewhere" : event.reason,
      );
      break;
    case "login-success":
      addRow("login", "ok", "Signed in", `access token valid ${formatSeconds(event.expiresIn)} s`);
      break;
    case "restore":
      addRow(
        "restored",
        "ok",
        "Session restored",
        event.source === "cookie" ? "through the refresh cookie" : "from another open tab",
      );
      break;
    default:
      break;
  }
}

// --- actions ------------------------------------------------------------------------

async function callApi() {
  try {
    const response = await client("/api/me");
    record("demo:api-result", { ok: response.ok, status: response.status });
    if (response.ok) updateFacts();
    return response.status;
  } catch (err) {
    record("demo:api-result", { ok: false, status: 0, error: err.name });
    if (!(err instanceof SessionExpiredError)) addRow("error", "bad", "Request failed", err.message);
    return 0;
  }
}

// The attacker route sits under /auth so that the browser sends it the refresh cookie
// (whose Path is /auth).
async function replayOldToken() {
  return fetch("/auth/demo/replay-old-token", {
    method: "POST",
    credentials: "include",
    headers: { "X-Freshtoken-CSRF": "1", Accept: "application/json" },
  });
}

async function withBusy(button, action) {
  button.disabled = true;
  try {
    return await action();
  } finally {
    button.disabled = false;
  }
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("login-error");
  error.hidden = true;
  await withBusy($("login-button"), async () => {
    try {
      const username = $("username").value.trim();
      await client.login(username, $("password").value);
      localStorage.setItem(NAME_KEY, username);
      $("password").value = "";
      showSignedIn();
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    }
  });
});

$("btn-call").addEventListener("click", () => withBusy($("btn-call"), callApi));

$("btn-burst").addEventListener("click", () =>
  withBusy($("btn-burst"), () => Promise.all(Array.from({ length: 10 }, callApi))),
);

$("btn-tab").addEventListener("click", () => {
  window.open(location.href, "_blank", "noopener");
});

$("btn-replay").addEventListener("click", () =>
  withBusy($("btn-replay"), async () => {
    addRow("attack", "bad", "Attacker replays an old refresh token", "the server plays the thief");
    const response = await replayOldToken();
    const body = await response.json().catch(() => ({}));
    record("demo:replay", { status: response.status, ...body });
    if (!response.ok) {
      addRow(
        "error",
        "bad",
        "Replay failed",
        body.error_description || body.error || `HTTP ${response.status}`,
      );
      return;
    }
    if (body.reuse_detected) {
      state.replayed = true;
      addRow("reuse", "bad", "Reuse detected", body.session_revoked ? "the whole session is revoked" : "");
    }
    // The page finds out at its next refresh: the session is gone.
    try {
      await client.refresh();
    } catch {
      // onSessionExpired has already shown the sign-in form.
    }
  }),
);

$("btn-logout").addEventListener("click", () =>
  withBusy($("btn-logout"), async () => {
    await client.logout().catch(() => false);
    localStorage.removeItem(NAME_KEY);
    addRow("logout", "muted", "Signed out", "cookie cleared, session revoked");
    showSignedOut(null);
  }),
);

$("btn-clear").addEventListener("click", () => {
  $("timeline").replaceChildren();
  state.requestRows.clear();
  $("timeline-empty").hidden = false;
});

$("proactive").addEventListener("change", (event) => {
  client.proactiveRefresh = event.target.checked;
  addRow(
    "setting",
    "muted",
    event.target.checked ? "Refreshing ahead of expiry" : "Refreshing only after a 401",
    "",
  );
});

// --- start: restore the session through the cookie (or from another tab) -------------

(async () => {
  let restored = false;
  try {
    restored = await client.restore();
  } catch (err) {
    addRow("error", "bad", "Could not reach the server", err.message);
  }
  if (restored) showSignedIn();
  else showSignedOut(null);
  record("demo:ready", { signedIn: restored });
})();
