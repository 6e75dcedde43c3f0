// freshtoken.js — the browser client of freshtoken.
//
// An ES module with no dependencies and no build step. It keeps the access
// token in memory only (a closure: never localStorage, never sessionStorage)
// and refreshes it through the server's cookie routes (`/auth/*`), where the
// refresh token lives in an HttpOnly cookie that this code never sees.
//
//   import { createClient } from "/static/freshtoken.js";
//   const api = createClient({ baseUrl: "", onSessionExpired: () => showLogin() });
//   await api.login("alice", "secret");     // or: await api.restore() after a reload
//   const res = await api("/api/me");       // a fetch-compatible function
//
// Refresh rules (the same as the Python client, DESIGN §6 and §7):
//   * proactive: a token that expires within the leeway is refreshed before use;
//   * on a 401 the client refreshes once and retries once; a second 401 goes
//     back to the caller;
//   * single-flight: one shared promise inside a tab, and one Web Lock
//     (`navigator.locks`) across the tabs of the origin; the winner hands the
//     new access token to the other tabs over a BroadcastChannel;
//   * a transient failure (network error, 5xx, 429) is retried with backoff
//     and keeps the session; a terminal answer (invalid_grant, 400/401/403)
//     ends it and calls `onSessionExpired` once.

const CSRF_HEADER = "X-Freshtoken-CSRF";
const INTERNALS = new WeakMap();

/** Base class of every error this module throws on purpose. */
export class FreshtokenError extends Error {
  constructor(message, { code = "freshtoken_error", status = 0, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "FreshtokenError";
    this.code = code;
    this.status = status;
  }
}

/** The server said the session is over (invalid_grant, 400/401/403). Log in again. */
export class SessionExpiredError extends FreshtokenError {
  constructor(message = "session expired", options = {}) {
    super(message, { code: "session_expired", ...options });
    this.name = "SessionExpiredError";
  }
}

/** A refresh failed transiently (network, 5xx, 429) and the retries ran out. The session is kept. */
export class RefreshFailedError extends FreshtokenError {
  constructor(message = "refresh failed", options = {}) {
    super(message, { code: "refresh_failed", ...options });
    this.name = "RefreshFailedError";
    this.transient = true;
  }
}

/** The login call was refused (bad credentials, rate limited, ...). */
export class LoginFailedError extends FreshtokenError {
  constructor(message = "login failed", options = {}) {
    super(message, { code: options.code || "login_failed", ...options });
    this.name = "LoginFailedError";
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function decodeClaims(jwt) {
  try {
    const part = jwt.split(".")[1];
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const padded = b64 + "===".slice((b64.length + 3) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

function retryAfterMs(response) {
  const value = response && response.headers.get("Retry-After");
  if (!value) return 0;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : 0;
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return {};
  }
}

/**
 * Create a client: a `fetch`-compatible function that attaches a fresh access
 * token to requests for the API origin(s), with helper methods attached.
 *
 * @param {object} options
 * @param {string} [options.baseUrl] the auth server ("" or omitted: this page's origin)
 * @param {(info: {reason: string, error?: string}) => void} [options.onSessionExpired]
 * @param {number} [options.leewaySeconds=30] refresh this long before expiry (capped at a
 *        quarter of the token's lifetime, so short-lived tokens are still used)
 * @param {boolean} [options.proactiveRefresh=true] refresh before expiry, not only on a 401
 * @param {string[]} [options.tokenOrigins] more origins that receive the bearer token
 * @param {number} [options.maxRetries=3] transient refresh failures retried this many times
 * @param {string} [options.clientId] client_id sent at login
 * @param {(event: object) => void} [options.onEvent] every event (no token values in them)
 * @param {typeof fetch} [options.fetch] the underlying fetch (default: globalThis.fetch)
 */
export function createClient(options = {}) {
  let { proactiveRefresh = true } = options;
  const {
    baseUrl = "",
    onSessionExpired = null,
    leewaySeconds = 30,
    tokenOrigins = [],
    maxRetries = 3,
    clientId = undefined,
    onEvent = null,
    loginPath = "/auth/login",
    refreshPath = "/auth/refresh",
    logoutPath = "/auth/logout",
    peerWaitMs = 150,
    lockHoldMs = 50,
  } = options;
  const fetchImpl = options.fetch || globalThis.fetch.bind(globalThis);
  const here = typeof location !== "undefined" ? location.href : "http://localhost/";
  const base = new URL(baseUrl || "/", here);
  const baseOrigin = base.origin;
  const allowedOrigins = new Set([baseOrigin, ...tokenOrigins.map((o) => new URL(o).origin)]);
  const endpoint = (path) => new URL(path, base).href;

  // --- state, all private to this closure -------------------------------------
  let accessToken = null;
  let expiresAt = 0; // ms since epoch (local clock)
  let receivedAt = 0; // when this tab took the token it holds
  let lifetimeMs = 0;
  let generation = 0;
  let inflight = null; // the one shared refresh promise of this tab
  let expiredNotified = false;
  let requestSeq = 0;
  let closed = false;
  const listeners = new Set();

  const lockName = `freshtoken:refresh:${baseOrigin}`;
  const channel =
    typeof BroadcastChannel === "function" ? new BroadcastChannel(`freshtoken:${baseOrigin}`) : null;
  const tabId = Math.random().toString(36).slice(2, 10);
  const peerWaiters = new Set();

  function emit(type, detail = {}) {
    const event = { type, time: Date.now(), generation, ...detail };
    for (const fn of [onEvent, ...listeners]) {
      if (!fn) continue;
      try {
        fn(event);
      } catch (err) {
        console.error("freshtoken: event listener failed", err);
      }
    }
  }

  function leewayMs() {
    return Math.min(leewaySeconds * 1000, lifetimeMs / 4);
  }

  function isFresh() {
    return accessToken !== null && Date.now() < expiresAt - leewayMs();
  }

  function isUsable() {
    return accessToken !== null && Date.now() < expiresAt;
  }

  function setToken(token, expiresInSeconds, source, absoluteExpiry) {
    accessToken = token;
    lifetimeMs = Math.max(0, Number(expiresInSeconds) || 0) * 1000;
    expiresAt = absoluteExpiry || Date.now() + lifetimeMs;
    receivedAt = Date.now();
    generation += 1;
    expiredNotified = false;
    emit("token", { source, expiresAt, expiresIn: lifetimeMs / 1000 });
  }

  function clearToken() {
    accessToken = null;
    expiresAt = 0;
    receivedAt = 0;
    lifetimeMs = 0;
  }

  function broadcast(message) {
    if (channel && !closed) channel.postMessage({ ...message, from: tabId });
  }

  function shareToken() {
    broadcast({ type: "token", accessToken, expiresAt, lifetimeMs });
  }

  function endSession(reason, detail = {}, { notify = true } = {}) {
    const had = accessToken !== null;
    clearToken();
    if (!notify) return had;
    emit("session-expired", { reason, ...detail });
    if (!expiredNotified) {
      expiredNotified = true;
      if (onSessionExpired) {
        try {
          onSessionExpired({ reason, ...detail });
        } catch (err) {
          console.error("freshtoken: onSessionExpired failed", err);
        }
      }
    }
    return had;
  }

  if (channel) {
    channel.onmessage = (message) => {
      const data = message.data || {};
      if (data.from === tabId) return;
      if (data.type === "token" && typeof data.accessToken === "string") {
        if (data.accessToken !== accessToken && data.expiresAt > expiresAt) {
          accessToken = data.accessToken;
          expiresAt = data.expiresAt;
          lifetimeMs = data.lifetimeMs;
          receivedAt = Date.now();
          generation += 1;
          expiredNotified = false;
          emit("token", { source: "other-tab", expiresAt, expiresIn: lifetimeMs / 1000 });
        }
        for (const waiter of peerWaiters) waiter();
      } else if (data.type === "need-token") {
        if (isFresh()) shareToken();
      } else if (data.type === "session-ended") {
        // Only if our token is older than the failure: a login that happened since wins.
        if (accessToken !== null && receivedAt <= data.sentAt) {
          endSession(data.reason || "ended-in-other-tab", { error: data.error });
        }
      }
    };
  }

  // --- the refresh itself ------------------------------------------------------

  async function callRefreshEndpoint(reason) {
    // One network refresh with bounded retries on transient failures.
    let lastError = null;
    for (let attempt = 0; attempt <= maxRetries; attempt += 1) {
      if (attempt > 0) {
        const backoff = Math.min(4000, 200 * 2 ** (attempt - 1));
        const jittered = backoff / 2 + Math.random() * (backoff / 2);
        await sleep(Math.max(jittered, lastError && lastError.retryAfter ? lastError.retryAfter : 0));
        emit("refresh-retry", { attempt, reason });
      }
      let response;
      try {
        response = await fetchImpl(endpoint(refreshPath), {
          method: "POST",
          credentials: "include",
          cache: "no-store",
          headers: { [CSRF_HEADER]: "1", Accept: "application/json" },
        });
      } catch (err) {
        lastError = { transient: true, message: `network error: ${err && err.message}`, cause: err };
        emit("refresh-failure", { transient: true, status: 0, error: "network_error", attempt });
        continue;
      }
      if (response.ok) {
        const body = await readJson(response);
        if (typeof body.access_token !== "string") {
          lastError = {
            transient: true,
            message: "refresh answer without access_token",
            status: response.status,
          };
          emit("refresh-failure", {
            transient: true,
            status: response.status,
            error: "bad_response",
            attempt,
          });
          continue;
        }
        return body;
      }
      const body = await readJson(response);
      const error = body.error || `http_${response.status}`;
      const transient = response.status >= 500 || response.status === 429 || response.status === 408;
      emit("refresh-failure", { transient, status: response.status, error, attempt });
      if (!transient) {
        throw new SessionExpiredError(body.error_description || `refresh refused: ${error}`, {
          status: response.status,
          code: "session_expired",
        });
      }
      lastError = {
        transient: true,
        message: `refresh failed: HTTP ${response.status}`,
        status: response.status,
        retryAfter: retryAfterMs(response),
      };
    }
    throw new RefreshFailedError(lastError ? lastError.message : "refresh failed", {
      status: (lastError && lastError.status) || 0,
      cause: lastError && lastError.cause,
    });
  }

  // Inside the cross-tab lock: refresh unless another tab (or this one) already did.
  async function refreshHoldingLock(staleToken, reason) {
    if (accessToken !== null && accessToken !== staleToken && isUsable()) {
      emit("refresh-skipped", { reason, why: "already-refreshed" });
      return accessToken;
    }
    emit("refresh-request", { reason });
    const sentAt = Date.now();
    let body;
    try {
      body = await callRefreshEndpoint(reason);
    } catch (err) {
      if (err instanceof SessionExpiredError) {
        broadcast({ type: "session-ended", reason: "invalid_grant", error: err.message, sentAt });
      }
      throw err;
    }
    setToken(body.access_token, body.expires_in, "refresh");
    shareToken();
    emit("refresh-success", { reason, expiresIn: Number(body.expires_in) || 0 });
    return accessToken;
  }

  function refresh(staleToken, reason, { notify = true } = {}) {
    if (accessToken !== null && accessToken !== staleToken && isUsable() && reason !== "manual") {
      return Promise.resolve(accessToken);
    }
    if (inflight) {
      emit("refresh-join", { reason });
      return inflight;
    }
    emit("refresh-start", { reason });
    const run = async () => {
      if (typeof navigator === "undefined" || !navigator.locks || !navigator.locks.request) {
        return refreshHoldingLock(staleToken, reason);
      }
      let outcome = null;
      await new Promise((resolve) => {
        navigator.locks
          .request(lockName, async () => {
            try {
              outcome = { token: await refreshHoldingLock(staleToken, reason) };
            } catch (err) {
              outcome = { err };
            }
            resolve();
            // Hold the lock a moment after broadcasting, so that the other tabs have the
            // new token before they get the lock, and do not refresh it a second time.
            await sleep(lockHoldMs);
          })
          .catch((err) => {
            if (!outcome) outcome = { err };
            resolve();
          });
      });
      if (outcome.err) throw outcome.err;
      return outcome.token;
    };
    inflight = run()
      .catch((err) => {
        if (err instanceof SessionExpiredError)
          endSession("invalid_grant", { error: err.message }, { notify });
        throw err;
      })
      .finally(() => {
        inflight = null;
      });
    return inflight;
  }

  // A token good enough to send now, refreshing first when needed.
  async function getFreshToken() {
    if (isFresh() || (!proactiveRefresh && accessToken !== null)) return accessToken;
    const stale = accessToken;
    try {
      return await refresh(stale, stale === null ? "no-token" : "expiring");
    } catch (err) {
      // Transient failure: a token that has not expired yet is still worth sending.
      if (err instanceof RefreshFailedError && isUsable()) return accessToken;
      throw err;
    }
  }

  function appliesTo(url) {
    try {
      return allowedOrigins.has(new URL(url, base).origin);
    } catch {
      return false;
    }
  }

  function withToken(request, token) {
    const headers = new Headers(request.headers);
    headers.set("Authorization", `Bearer ${token}`);
    return new Request(request, { headers });
  }

  // --- the public, fetch-compatible function -----------------------------------

  async function client(input, init) {
    const url = input instanceof Request ? input.url : new URL(String(input), base).href;
    const original = new Request(input instanceof Request ? input : url, init);
    const id = ++requestSeq;
    const method = original.method;
    const path = new URL(original.url).pathname;
    if (!appliesTo(original.url) || (init && init.freshtoken === false)) {
      return fetchImpl(original);
    }
    const token = await getFreshToken();
    emit("request", { id, method, path, attempt: 1 });
    const retryCopy = original.clone();
    let response = await fetchImpl(withToken(original, token));
    emit("response", { id, method, path, status: response.status, attempt: 1 });
    if (response.status !== 401) return response;

    emit("unauthorized", {
      id,
      method,
      path,
      wwwAuthenticate: response.headers.get("WWW-Authenticate") || "",
    });
    const fresh = await refresh(token, "401");
    emit("retry", { id, method, path });
    response = await fetchImpl(withToken(retryCopy, fresh));
    emit("response", { id, method, path, status: response.status, attempt: 2 });
    return response;
  }

  // --- helpers on the function --------------------------------------------------

  async function authPost(path, body) {
    const init = {
      method: "POST",
      credentials: "include",
      cache: "no-store",
      headers: { [CSRF_HEADER]: "1", Accept: "application/json" },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetchImpl(endpoint(path), init);
  }

  client.login = async (username, password, { scope } = {}) => {
    const payload = { username, password };
    if (clientId !== undefined) payload.client_id = clientId;
    if (scope !== undefined) payload.scope = scope;
    emit("login-start", {});
    let response;
    try {
      response = await authPost(loginPath, payload);
    } catch (err) {
      emit("login-failure", { status: 0, error: "network_error" });
      throw new LoginFailedError(`network error: ${err && err.message}`, {
        code: "network_error",
        cause: err,
      });
    }
    const body = await readJson(response);
    if (!response.ok || typeof body.access_token !== "string") {
      const error = body.error || `http_${response.status}`;
      emit("login-failure", { status: response.status, error });
      const message =
        error === "invalid_grant"
          ? "wrong username or password"
          : body.error_description || `login failed: ${error}`;
      const failure = new LoginFailedError(message, { code: error, status: response.status });
      failure.retryAfter = retryAfterMs(response) / 1000;
      throw failure;
    }
    setToken(body.access_token, body.expires_in, "login");
    shareToken();
    emit("login-success", { expiresIn: Number(body.expires_in) || 0, scope: body.scope || "" });
    return { expiresIn: Number(body.expires_in) || 0, scope: body.scope || "", tokenType: body.token_type };
  };

  client.logout = async () => {
    emit("logout-start", {});
    if (inflight) await inflight.catch(() => null); // let a refresh on the wire land first
    const sentAt = Date.now();
    let ok = false;
    try {
      const response = await authPost(logoutPath);
      ok = response.ok;
    } finally {
      clearToken();
      broadcast({ type: "session-ended", reason: "logout", sentAt });
      emit("logout", { ok });
    }
    return ok;
  };

  // After a reload: take a fresh token from another open tab, else refresh through
  // the cookie. Resolves true when signed in; false (no onSessionExpired) when not.
  client.restore = async () => {
    if (isFresh()) return true;
    if (channel && peerWaitMs > 0) {
      const got = await new Promise((resolve) => {
        const waiter = () => {
          if (isFresh()) finish(true);
        };
        const timer = setTimeout(() => finish(false), peerWaitMs);
        function finish(value) {
          clearTimeout(timer);
          peerWaiters.delete(waiter);
          resolve(value);
        }
        peerWaiters.add(waiter);
        broadcast({ type: "need-token" });
      });
      if (got) {
        emit("restore", { source: "other-tab" });
        return true;
      }
    }
    try {
      await refresh(accessToken, "restore", { notify: false });
      emit("restore", { source: "cookie" });
      return true;
    } catch (err) {
      if (err instanceof SessionExpiredError) return false;
      throw err;
    }
  };

  /** Refresh now (single-flight still applies). Resolves when a new token is held. */
  client.refresh = async () => {
    await refresh(accessToken, "manual");
  };

  /** Subscribe to events; returns the unsubscribe function. */
  client.on = (listener) => {
    listeners.add(listener);
    return () => listeners.delete(listener);
  };

  /** Stop listening to other tabs. */
  client.close = () => {
    closed = true;
    if (channel) channel.close();
  };

  Object.defineProperties(client, {
    /** true while an access token is held (it may be about to expire). */
    isAuthenticated: { get: () => accessToken !== null, enumerable: true },
    /** ms since the epoch when the held access token expires (0 when none). */
    expiresAt: { get: () => expiresAt, enumerable: true },
    /** the held token's lifetime in seconds, as the server announced it. */
    lifetime: { get: () => lifetimeMs / 1000, enumerable: true },
    /** rises by one each time a new access token is taken (login, refresh, other tab). */
    generation: { get: () => generation, enumerable: true },
    /** refresh ahead of expiry (true) or only after a 401 (false); may be changed at any time. */
    proactiveRefresh: {
      get: () => proactiveRefresh,
      set: (value) => {
        proactiveRefresh = Boolean(value);
      },
      enumerable: true,
    },
    /** true while a refresh of this tab is on its way. */
    refreshing: { get: () => inflight !== null, enumerable: true },
    /** the held token's claims, decoded but NOT verified (for display only). */
    claims: { get: () => (accessToken ? decodeClaims(accessToken) : null), enumerable: true },
  });

  INTERNALS.set(client, { getFreshToken, refresh, appliesTo, emit, currentToken: () => accessToken });
  return client;
}

/**
 * Give an axios instance the same behaviour: a fresh bearer token on each
 * request to the API origin(s); on a 401 one refresh (single-flight, shared
 * with the fetch client and the other tabs) and one retry. Pass
 * `{ freshtoken: false }` in a request config to opt out.
 * Returns a function that removes the interceptors.
 */
export function installAxiosInterceptor(axiosInstance, client) {
  const internals = INTERNALS.get(client);
  if (!internals) throw new TypeError("installAxiosInterceptor: pass a client made by createClient()");

  const urlOf = (config) => {
    const url = config.url || "";
    if (/^[a-z][a-z0-9+.-]*:/i.test(url) || !config.baseURL) return url;
    return config.baseURL.replace(/\/+$/, "") + "/" + url.replace(/^\/+/, "");
  };
  const setAuth = (config, token) => {
    const value = `Bearer ${token}`;
    if (config.headers && typeof config.headers.set === "function")
      config.headers.set("Authorization", value);
    else config.headers = { ...(config.headers || {}), Authorization: value };
  };
  const getAuth = (config) => {
    const headers = config.headers || {};
    const value = typeof headers.get === "function" ? headers.get("Authorization") : headers.Authorization;
    return typeof value === "string" && value.startsWith("Bearer ") ? value.slice(7) : null;
  };

  const requestId = axiosInstance.interceptors.request.use(async (config) => {
    if (config.freshtoken === false || !internals.appliesTo(urlOf(config))) return config;
    const token = await internals.getFreshToken();
    setAuth(config, token);
    internals.emit("request", {
      method: (config.method || "get").toUpperCase(),
      path: urlOf(config),
      via: "axios",
    });
    return config;
  });

  const responseId = axiosInstance.interceptors.response.use(undefined, async (error) => {
    const config = error && error.config;
    const response = error && error.response;
    if (
      !config ||
      !response ||
      response.status !== 401 ||
      config.freshtokenRetried ||
      config.freshtoken === false
    ) {
      throw error;
    }
    const used = getAuth(config);
    if (used === null || !internals.appliesTo(urlOf(config))) throw error;
    internals.emit("unauthorized", { path: urlOf(config), via: "axios" });
    await internals.refresh(used, "401");
    internals.emit("retry", { path: urlOf(config), via: "axios" });
    // The request interceptor runs again and attaches the new token.
    return axiosInstance.request({ ...config, freshtokenRetried: true });
  });

  return () => {
    axiosInstance.interceptors.request.eject(requestId);
    axiosInstance.interceptors.response.eject(responseId);
  };
}
