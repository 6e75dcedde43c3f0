// The test app: a client against the API origin given in ?api=..., exposed on window for the tests.
import { createClient, installAxiosInterceptor } from "/freshtoken.js";

const params = new URLSearchParams(location.search);
const events = (window.__freshtoken_events = []);
const expired = (window.__expired = []);

const client = createClient({
  baseUrl: params.get("api"),
  proactiveRefresh: params.get("proactive") !== "0",
  onEvent: (event) => events.push(event),
  onSessionExpired: (info) => expired.push(info),
});
window.client = client;

if (window.axios) {
  window.http = window.axios.create({ baseURL: params.get("api") });
  window.removeInterceptor = installAxiosInterceptor(window.http, client);
}

// Run `count` calls at once and report each outcome as {status} or {error: name}.
window.burst = async (count, call) =>
  Promise.all(
    Array.from({ length: count }, () =>
      call().then(
        (status) => ({ status }),
        (err) => ({ error: err.name, status: err.response ? err.response.status : 0 }),
      ),
    ),
  );
window.fetchMe = (path = "/api/me") => client(path).then((r) => r.status);
window.axiosMe = (path = "/api/me") => window.http.get(path).then((r) => r.status);

document.body.dataset.ready = "yes";
