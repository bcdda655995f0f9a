"""Drives Keyway through a whole connect -> proxy -> refresh -> revoke cycle against the
oidc-provider started by `interop/oidc.sh`, as a browser and an application backend would,
and exits non-zero at the first step that does not do what it should."""
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urljoin, urlparse

import requests

KW = os.environ["KEYWAY"]
AS = os.environ["ISSUER"]
OP = os.environ["OPERATOR_TOKEN"]
AUTH = os.environ.get("CLIENT_AUTH", "basic")
TTL = int(os.environ["AT_TTL"])


def gql(key, query, variables=None):
    answer = requests.post(f"{KW}/graphql", json={"query": query, "variables": variables or {}},
                           headers={"authorization": f"Bearer {key}"}).json()
    if answer.get("errors"):
        sys.exit(f"GraphQL error: {answer['errors']}")
    return answer["data"]


def check(what, ok):
    print(("ok    " if ok else "FAILED"), what)
    if not ok:
        sys.exit(1)


app = gql(OP, 'mutation { createApplication(input: {name: "interop", redirectUris: ["http://localhost:3000/done"]}) { id } }')["createApplication"]["id"]
key = gql(OP, 'mutation($a: ID!) { createApiKey(input: {applicationId: $a, label: "interop"}) { secret } }', {"a": app})["createApiKey"]["secret"]
provider = {
    "service_id": "acme-sso", "name": "Acme SSO", "unified_api": "sso", "auth_type": "oauth2",
    "oauth": {"authorize_url": f"{AS}/auth", "token_url": f"{AS}/token", "revoke_url": f"{AS}/token/revocation",
              "default_scopes": ["openid", "offline_access"], "pkce": True, "client_auth": AUTH,
              "authorize_params": {"prompt": "consent"}},
    "base_url": AS, "injection": {"type": "bearer"},
}
gql(key, 'mutation($p: JSON) { createIntegration(input: {serviceId: "acme-sso", clientId: "keyway", clientSecret: "keyway-client-secret-0123456789", customProvider: $p}) { id } }', {"p": provider})
url = gql(key, 'mutation { createConnectLink(input: {consumerId: "dana", serviceId: "acme-sso", redirectUri: "http://localhost:3000/done"}) { url } }')["createConnectLink"]["url"]

# The browser: the provider's login and consent pages, until it sends us back to Keyway.
browser = requests.Session()
page = browser.get(url, allow_redirects=False)
for _ in range(10):
    location = page.headers.get("location")
    if page.status_code in (302, 303) and location:
        location = urljoin(page.url, location)
        if location.startswith(KW):
            break
        page = browser.get(location, allow_redirects=False)
        continue
    form = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    prompt = re.search(r'name="prompt" value="(\w+)"', page.text)
    if not form:
        sys.exit(f"stuck at {page.status_code} {page.url}")
    page = browser.post(urljoin(page.url, form.group(1)), allow_redirects=False,
                        data={"prompt": prompt.group(1) if prompt else "login", "login": "dana", "password": "x"})
check("the provider's answer carries iss (RFC 9207)", "iss" in parse_qs(urlparse(location).query))
back = browser.get(location, allow_redirects=False)
query = parse_qs(urlparse(back.headers.get("location", "")).query)
check(f"Keyway's callback returns a connection ({query})", "connection_id" in query)
conn = query["connection_id"][0]

me = lambda: requests.get(f"{KW}/proxy/{conn}/me", headers={"authorization": f"Bearer {key}"})
answer = me()
check(f"the proxy calls the provider's userinfo with the token ({answer.status_code})", answer.status_code == 200)
token = gql(key, 'query($i: ID!) { connectionCredentials(id: $i) { accessToken } }', {"i": conn})["connectionCredentials"]["accessToken"]
requests.post(f"{AS}/token/revocation", data={"token": token, "client_id": "keyway", "client_secret": "keyway-client-secret-0123456789"})
answer = me()
check(f"a token the provider revoked is refreshed once and the call retried ({answer.status_code})", answer.status_code == 200)
time.sleep(TTL / 2 + 2)
with ThreadPoolExecutor(50) as pool:
    statuses = list(pool.map(lambda _: me().status_code, range(50)))
check(f"50 concurrent calls past half the token's life all succeed ({set(statuses)})", statuses == [200] * 50)
state = gql(key, 'mutation($i: ID!) { revokeConnection(id: $i) { state } }', {"i": conn})["revokeConnection"]["state"]
check("revocation reaches the provider and the connection is revoked", state == "REVOKED")
