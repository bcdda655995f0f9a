//! Applications: created and changed by operators, redirect URIs kept exactly.

use serde_json::json;

use crate::db_test;

db_test!(create_update_and_list, |app| async {
    let op = app.operator.clone();
    let data = app
        .ok(&op, "mutation { createApplication(input: {name: \"Acme prod\", redirectUris: [\"https://app.acme.com/cb\", \"http://localhost:3000/cb\", \"https://app.acme.com/cb\"], defaultRedirectUri: \"https://app.acme.com/cb\", requestsPerMinute: 600}) { id name redirectUris defaultRedirectUri requestsPerMinute requestsPerMonth createdAt } }", json!({}))
        .await;
    let created = &data["createApplication"];
    assert_eq!(
        created["redirectUris"],
        json!(["https://app.acme.com/cb", "http://localhost:3000/cb"])
    );
    assert_eq!(created["requestsPerMinute"], 600);
    assert!(created["requestsPerMonth"].is_null());
    let id = created["id"].as_str().unwrap();

    // Replacing the list drops a default that is no longer allowed; null clears a limit.
    let data = app
        .ok(&op, "mutation($id: ID!) { updateApplication(id: $id, input: {name: \"Acme\", redirectUris: [\"https://new.acme.com/cb\"], requestsPerMinute: null}) { name redirectUris defaultRedirectUri requestsPerMinute } }", json!({ "id": id }))
        .await;
    assert_eq!(
        data["updateApplication"],
        json!({
            "name": "Acme", "redirectUris": ["https://new.acme.com/cb"],
            "defaultRedirectUri": null, "requestsPerMinute": null
        })
    );

    for i in 0..3 {
        app.ok(
            &op,
            "mutation($n: String!) { createApplication(input: {name: $n}) { id } }",
            json!({ "n": format!("app {i}") }),
        )
        .await;
    }
    let page1 = app.ok(&op, "{ applications(first: 3) { totalCount pageInfo { hasNextPage endCursor } edges { node { name } } } }", json!({})).await;
    assert_eq!(page1["applications"]["totalCount"], 4);
    assert_eq!(page1["applications"]["pageInfo"]["hasNextPage"], true);
    let cursor = page1["applications"]["pageInfo"]["endCursor"].clone();
    let page2 = app.ok(&op, "query($a: String) { applications(first: 3, after: $a) { pageInfo { hasNextPage } edges { node { name } } } }", json!({ "a": cursor })).await;
    assert_eq!(
        page2["applications"]["edges"],
        json!([{ "node": { "name": "app 2" } }])
    );
    assert_eq!(page2["applications"]["pageInfo"]["hasNextPage"], false);

    let data = app
        .ok(
            &op,
            "query($id: ID!) { node(id: $id) { ... on Application { name } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["node"]["name"], "Acme");
});
