"""OAuth2 external authentication through two gateway instances, with the real Python client.

Usage: python_oauth2.py PORT_1 PORT_2 LOGINS CA_FILE

Both instances listen with HTTPS (the client authenticates over TLS only), trusting CA_FILE.

For each login, a fresh `OAuth2Authentication` connects to one instance; its redirect handler
plays the user's browser *through the other instance* (as a browser behind a load balancer
would land there), in a background thread like a real browser. The client long-polls its token
server meanwhile, then runs a query, and the same token runs a query through the other instance.

Then the Web UI: a browser session signs in through one instance (the identity provider sends it
back there) and is then served by the other one with the same cookies; a second browser session
steps through the redirects by hand and sends the identity provider's callback to the other
instance (keeping the public `Host`, as a load balancer in front of both would).

Prints one JSON object: what each login and each UI visit saw.
"""

import json
import os
import sys
import threading

import requests
import trino
from trino.auth import OAuth2Authentication

port_1, port_2, logins, ca_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
# requests prefers these to a session's `verify` (the trino client sets that one).
os.environ["REQUESTS_CA_BUNDLE"] = ca_file
os.environ.pop("CURL_CA_BUNDLE", None)
ROWS = 2500
SQL = f"SELECT * FROM UNNEST(sequence(1, {ROWS}))"


def other(url, here, there):
    return url.replace(f"127.0.0.1:{here}/", f"127.0.0.1:{there}/", 1)


def browser_through(here, there, seen, threads):
    def handler(url):
        def visit():
            try:
                r = requests.get(other(url, here, there), allow_redirects=True, timeout=30,
                                 verify=ca_file)
                seen.append({
                    "opened": url,
                    "status": r.status_code,
                    "visited": [h.url for h in r.history] + [r.url],
                    "text": r.text[:200],
                })
            except Exception as e:  # reported, and the client's poll then fails
                seen.append({"opened": url, "exception": repr(e)})

        t = threading.Thread(target=visit)
        t.start()
        threads.append(t)

    return handler


def run(port, auth):
    conn = trino.dbapi.connect(
        host="127.0.0.1", port=int(port), user="alice", http_scheme="https", auth=auth,
        verify=ca_file,
    )
    cur = conn.cursor()
    cur.execute(SQL)
    rows = cur.fetchall()
    cur.execute("SELECT current_user")
    user = cur.fetchall()[0][0]
    return {"rows": len(rows), "first": rows[0][0], "last": rows[-1][0], "user": user,
            "query_id": cur.query_id}


out = {"logins": [], "ui": []}
for i in range(logins):
    here, there = (port_1, port_2) if i % 2 == 0 else (port_2, port_1)
    seen, threads = [], []
    auth = OAuth2Authentication(redirect_auth_url_handler=browser_through(here, there, seen, threads))
    result = {"client": here, "browser": there}
    try:
        result["first"] = run(here, auth)
        # The token the login got is good on the other instance too (no new login).
        result["second"] = run(there, auth)
    except Exception as e:
        result["exception"] = repr(e)
    for t in threads:
        t.join(30)
    result["browser_saw"] = seen
    out["logins"].append(result)

# Web UI, 1: sign in through one instance, then be served by the other.
for here, there in ((port_1, port_2), (port_2, port_1)):
    s = requests.Session()
    r = s.get(f"https://127.0.0.1:{here}/ui/", timeout=30, verify=ca_file)
    r2 = s.get(f"https://127.0.0.1:{there}/ui/", timeout=30, allow_redirects=False, verify=ca_file)
    out["ui"].append({
        "signed_in": r.status_code, "text": r.text[:300],
        "visited": [h.url for h in r.history] + [r.url],
        "other_instance": r2.status_code, "other_text": r2.text[:300],
    })

# Web UI, 2: the identity provider's answer taken to the other instance by hand.
for here, there in ((port_1, port_2), (port_2, port_1)):
    s = requests.Session()
    step = {"steps": []}
    r = s.get(f"https://127.0.0.1:{here}/ui/", timeout=30, allow_redirects=False, verify=ca_file)
    step["steps"].append(r.status_code)
    r = s.get(r.headers["Location"], timeout=30, allow_redirects=False, verify=ca_file)  # the identity provider
    step["steps"].append(r.status_code)
    # The callback reaches the other instance as through a load balancer: the public address
    # (Host) stays the one the login started on, which the coordinator checks its callback by.
    callback = other(r.headers["Location"], here, there)
    r = s.get(callback, timeout=30, allow_redirects=False, verify=ca_file,
              headers={"Host": f"127.0.0.1:{here}"})
    step["steps"].append(r.status_code)
    step["callback_text"] = r.text[:300]
    r = s.get(f"https://127.0.0.1:{there}/ui/", timeout=30, allow_redirects=False, verify=ca_file)
    step["steps"].append(r.status_code)
    step["text"] = r.text[:300]
    out["ui"].append(step)

print(json.dumps(out))
