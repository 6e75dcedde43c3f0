"""A separate process for the cross-process tests: waits for a go-file, then makes
one request through TokenAuth with a shared store, and prints the outcome as JSON."""

from __future__ import annotations

import json
import os
import sys
import time

from freshtoken.client import FileStore, OAuth2Refresher, RedisStore, Retry, TokenAuth


def main() -> int:
    lib, store_spec, token_url, url, go_file = sys.argv[1:6]
    if store_spec.startswith("redis://"):
        redis_url, _, key = store_spec.partition("#")
        store = RedisStore(redis_url, key=key)
    else:
        store = FileStore(store_spec)
    events = []
    auth = TokenAuth(
        OAuth2Refresher(token_url),
        store,
        retry=Retry(attempts=3, base_delay=0.01, max_delay=0.05),
        on_event=lambda e: events.append(e.kind),
    )
    deadline = time.monotonic() + 30
    while go_file != "-" and not os.path.exists(go_file):
        if time.monotonic() > deadline:
            print(json.dumps({"error": "no go"}))
            return 1
        time.sleep(0.002)
    if lib == "requests":
        import requests

        with requests.Session() as s:
            s.auth = auth
            status = s.get(url, timeout=30).status_code
    else:
        module = __import__(lib)
        with module.Client(auth=auth, timeout=30) as c:
            status = c.get(url).status_code
    tokens = auth.session.tokens
    print(
        json.dumps(
            {
                "status": status,
                "events": events,
                "generation": None if tokens is None else tokens.generation,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
