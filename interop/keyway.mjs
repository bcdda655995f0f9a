// What the interop drivers share: GraphQL calls to the Keyway under test.

/** Runs `query` at `${base}/graphql` with `key`; throws on any GraphQL error. */
export async function gql(base, key, query, variables = {}) {
  const answer = await fetch(`${base}/graphql`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ query, variables }),
  }).then((r) => r.json());
  if (answer.errors) throw new Error(`GraphQL error: ${JSON.stringify(answer.errors)}`);
  return answer.data;
}
