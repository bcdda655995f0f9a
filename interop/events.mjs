// Drives Keyway's events through clients nobody here wrote (started by interop/events.sh):
// the `graphql-ws` npm client subscribes over graphql-transport-ws, and a webhook receiver
// checks every delivery with the `standardwebhooks` npm package, the scheme's own verifier.
// Exits non-zero at the first step that does not do what it should.
import http from "node:http";
import { createClient } from "graphql-ws";
import { Webhook } from "standardwebhooks";
import WebSocket from "ws";
import { gql as kwGql } from "./keyway.mjs";

const KW = process.env.KEYWAY;
const OP = process.env.OPERATOR_TOKEN;
const RECEIVER_PORT = Number(process.env.RECEIVER_PORT);
const WS_URL = KW.replace(/^http/, "ws") + "/graphql/ws";

function check(what, ok, detail) {
  console.log(`${ok ? "ok    " : "FAILED"} ${what}${ok || detail === undefined ? "" : `: ${JSON.stringify(detail)}`}`);
  if (!ok) process.exit(1);
}

const gql = (key, query, variables) => kwGql(KW, key, query, variables);

function withTimeout(promise, ms, what) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)),
  ]);
}

// The receiver: verifies each delivery and keeps the verified payloads.
const delivered = [];
const failures = [];
let webhook;
const receiver = http.createServer((req, res) => {
  let body = "";
  req.on("data", (chunk) => (body += chunk));
  req.on("end", () => {
    try {
      delivered.push({ headers: req.headers, payload: webhook.verify(body, req.headers) });
      res.writeHead(204).end();
    } catch (err) {
      failures.push(String(err));
      res.writeHead(400).end();
    }
  });
});
await new Promise((resolve) => receiver.listen(RECEIVER_PORT, "127.0.0.1", resolve));

const app = (await gql(OP, 'mutation { createApplication(input: {name: "interop events", redirectUris: ["http://localhost:3000/done"]}) { id } }')).createApplication.id;
const key = (await gql(OP, "mutation($a: ID!) { createApiKey(input: {applicationId: $a, label: \"events\"}) { secret } }", { a: app })).createApiKey.secret;
await gql(key, 'mutation { createIntegration(input: {serviceId: "twilio", clientId: "unused", clientSecret: "unused-secret"}) { id } }');
const endpoint = (await gql(key, "mutation($u: String!) { createWebhook(input: {url: $u, eventTypes: [\"connection.created\", \"connection.deleted\"]}) { secret webhook { id } } }", { u: `http://127.0.0.1:${RECEIVER_PORT}/hooks` })).createWebhook;
webhook = new Webhook(endpoint.secret);

// 1. A wrong key: the client reports the server's 4403 close and no event.
const refused = createClient({ url: WS_URL, webSocketImpl: WebSocket, connectionParams: { authorization: "Bearer kw_sk_not-a-real-key" }, retryAttempts: 0, lazy: false, onNonLazyError: () => {} });
const refusal = await withTimeout(
  new Promise((resolve) => refused.on("closed", (event) => resolve(event))),
  5000,
  "close of a refused connection_init",
);
check("graphql-ws: a wrong key is closed with 4403", refusal.code === 4403, { code: refusal.code, reason: refusal.reason });
await refused.dispose();

// 2. The right key: a subscription, then a change; the event arrives through the client.
const client = createClient({ url: WS_URL, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${key}` }, keepAlive: 1000, retryAttempts: 0 });
const events = [];
let acknowledged;
const ack = new Promise((resolve) => (acknowledged = resolve));
client.on("connected", () => acknowledged());
let twoArrived;
const two = new Promise((resolve) => (twoArrived = resolve));
const unsubscribe = client.subscribe(
  { query: "subscription { connectionEvents(filter: {consumerId: \"dana\"}) { eventId type connectionId consumerId serviceId } }" },
  {
    next: (result) => {
      if (result.errors) check("subscription results carry no errors", false, result.errors);
      events.push(result.data.connectionEvents);
      if (events.length === 2) twoArrived();
    },
    error: (err) => check("subscription stays open", false, String(err?.code ?? err)),
    complete: () => {},
  },
);
await withTimeout(ack, 5000, "connection_ack");
// The server registers the subscription when it reads `subscribe`; a moment for that.
await new Promise((r) => setTimeout(r, 300));
const created = (await gql(key, 'mutation { createConnection(input: {consumerId: "dana", serviceId: "twilio", credentials: {fields: {account_sid: "AC0123456789abcdef0123456789abcdef", auth_token: "interop-secret-token"}}}) { id } }')).createConnection.id;
await gql(key, 'mutation { createConnection(input: {consumerId: "someone-else", serviceId: "twilio", credentials: {fields: {account_sid: "AC0123456789abcdef0123456789abcdef", auth_token: "interop-secret-token"}}}) { id } }');
await gql(key, "mutation($id: ID!) { deleteConnection(id: $id) { id } }", { id: created });
await withTimeout(two, 5000, "the subscription's events");
// Keep-alive pings go out every second; the socket must stay up across them.
await new Promise((r) => setTimeout(r, 2500));
const types = events.map((e) => e.type);
check("graphql-ws: events arrive in commit order", types[0] === "connection.created" && types.includes("connection.deleted"), types);
check("graphql-ws: only the filtered consumer's events", events.every((e) => e.consumerId === "dana" && e.connectionId === created), events);
check("graphql-ws: no credential in an event", !JSON.stringify(events).includes("interop-secret-token"));
unsubscribe();
await client.dispose();

// 3. Webhooks: each delivery verifies with the scheme's own library.
for (let i = 0; i < 50 && delivered.length < 2; i++) await new Promise((r) => setTimeout(r, 100));
check("standardwebhooks: no delivery failed verification", failures.length === 0, failures);
const hookTypes = delivered.map((d) => d.payload.type);
check("standardwebhooks: the subscribed types were delivered and verified", hookTypes.filter((t) => t === "connection.created").length === 2 && hookTypes.includes("connection.deleted"), hookTypes);
check("standardwebhooks: webhook-id is the event id", delivered.some((d) => d.headers["webhook-id"] === events[0].eventId), { ids: delivered.map((d) => d.headers["webhook-id"]), event: events[0].eventId });
check("standardwebhooks: a tampered body is refused", (() => {
  try {
    const d = delivered[0];
    webhook.verify(JSON.stringify({ ...d.payload, type: "connection.revoked" }), d.headers);
    return false;
  } catch {
    return true;
  }
})());
receiver.close();
console.log("all checks passed");
