// Runs graphql-http's server audit (the GraphQL-over-HTTP spec's own conformance suite) against
// Keyway's /graphql, authenticated with a secret key (started by interop/graphql_http.sh).
// Fails on any MUST; prints each SHOULD and optional item that did not pass.
import { auditServer } from "graphql-http";
import { gql as kwGql } from "./keyway.mjs";

const KW = process.env.KEYWAY;
const OP = process.env.OPERATOR_TOKEN;

const gql = (key, query, variables) => kwGql(KW, key, query, variables);

const app = (await gql(OP, 'mutation { createApplication(input: {name: "audit"}) { id } }')).createApplication.id;
const key = (await gql(OP, "mutation($a: ID!) { createApiKey(input: {applicationId: $a, label: \"audit\"}) { secret } }", { a: app })).createApiKey.secret;

const results = await auditServer({
  url: `${KW}/graphql`,
  fetchFn: (input, init = {}) =>
    fetch(input, { ...init, headers: { ...(init.headers || {}), authorization: `Bearer ${key}` } }),
});
const count = (status) => results.filter((r) => r.status === status).length;
for (const r of results.filter((r) => r.status !== "ok")) {
  console.log(`${r.status.padEnd(6)} ${r.id} ${r.name}: ${r.reason}`);
}
console.log(`ok ${count("ok")}, MUST failed ${count("error")}, SHOULD failed ${count("warn")}, optional not done ${count("notice")}`);
process.exit(count("error") === 0 && count("warn") === 0 ? 0 : 1);
