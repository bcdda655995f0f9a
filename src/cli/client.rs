//! The scripting client: `keyway connections …` against a running server, with
//! `KEYWAY_URL` and `KEYWAY_API_KEY`. Tables for people, `--json` for scripts; a clear
//! message and a non-zero exit on any error.

use anyhow::{Context, bail};
use serde_json::{Value, json};

struct Client {
    url: String,
    key: String,
    http: reqwest::Client,
}

impl Client {
    fn from_env() -> anyhow::Result<Self> {
        let url = std::env::var("KEYWAY_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
        let key = std::env::var("KEYWAY_API_KEY")
            .context("set KEYWAY_API_KEY to a secret key (kw_sk_…)")?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            key,
            http,
        })
    }

    async fn query(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}/graphql", self.url))
            .bearer_auth(&self.key)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .with_context(|| format!("cannot reach Keyway at {}", self.url))?;
        let status = response.status();
        let body: Value = response.json().await.context("Keyway sent no JSON")?;
        if let Some(error) = body["errors"].get(0) {
            let code = error["extensions"]["code"].as_str().unwrap_or("ERROR");
            let message = error["message"].as_str().unwrap_or("request failed");
            bail!("{code}: {message} (HTTP {})", status.as_u16());
        }
        Ok(body["data"].clone())
    }
}

pub struct ListArgs {
    pub status: Option<String>,
    pub consumer: Option<String>,
    pub service: Option<String>,
    pub page_size: u32,
    pub start: Start,
    pub json: bool,
}

/// Where a listing starts.
pub enum Start {
    /// A page number, from 1.
    Page(u32),
    /// Right after a cursor printed by an earlier page.
    After(String),
}

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let filter =
        json!({ "status": args.status, "consumerId": args.consumer, "serviceId": args.service });
    // The API pages by cursor (a page number would make the database count past every row
    // before it); page N is reached by walking the N - 1 pages before it, cursors only.
    let (number, mut after) = match args.start {
        Start::Page(number) => (Some(number), None),
        Start::After(cursor) => (None, Some(cursor)),
    };
    for _ in 1..number.unwrap_or(1) {
        let data = client
            .query(
                "query($first: Int, $after: String, $filter: ConnectionFilter) {
                   connections(first: $first, after: $after, filter: $filter) { pageInfo { hasNextPage endCursor } } }",
                json!({ "first": args.page_size, "after": after, "filter": filter }),
            )
            .await?;
        let info = &data["connections"]["pageInfo"];
        let Some(end) = info["endCursor"].as_str() else {
            break; // nothing at all: every page is empty
        };
        after = Some(end.to_owned());
        if info["hasNextPage"] != true {
            break; // past the last page: the page asked for is empty
        }
    }
    let data = client
        .query(
            "query($first: Int, $after: String, $filter: ConnectionFilter) {
               connections(first: $first, after: $after, filter: $filter) {
                 totalCount pageInfo { hasNextPage endCursor }
                 edges { node { id consumerId serviceId state environment userEmail updatedAt } }
               } }",
            json!({ "first": args.page_size, "after": after, "filter": filter }),
        )
        .await?;
    let page = &data["connections"];
    if args.json {
        println!("{}", serde_json::to_string_pretty(page)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = page["edges"]
        .as_array()
        .map(|edges| {
            edges
                .iter()
                .map(|e| {
                    let n = &e["node"];
                    let s = |k: &str| n[k].as_str().unwrap_or("").to_owned();
                    vec![
                        s("id"),
                        s("consumerId"),
                        s("serviceId"),
                        s("state").to_lowercase(),
                        s("userEmail"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    print_table(&["ID", "CONSUMER", "SERVICE", "STATE", "EMAIL"], &rows);
    let total = page["totalCount"].as_u64().unwrap_or(0);
    match number {
        Some(number) => println!(
            "page {number} of {}: {} of {total} connection(s)",
            total.div_ceil(u64::from(args.page_size)).max(1),
            rows.len()
        ),
        None => println!("{} of {total} connection(s)", rows.len()),
    }
    if page["pageInfo"]["hasNextPage"] == true {
        let cursor = page["pageInfo"]["endCursor"].as_str().unwrap_or("");
        match number {
            Some(number) => println!("next page: --page {}, or --cursor {cursor}", number + 1),
            None => println!("next page: --cursor {cursor}"),
        }
    }
    Ok(())
}

pub async fn get_credentials(service: &str, consumer: &str, json_out: bool) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let data = client
        .query(
            "query($filter: ConnectionFilter) { connections(first: 1, filter: $filter) { edges { node { id } } } }",
            json!({ "filter": { "serviceId": service, "consumerId": consumer, "status": "callable" } }),
        )
        .await?;
    let Some(id) = data["connections"]["edges"][0]["node"]["id"].as_str() else {
        bail!("NOT_FOUND: no callable {service} connection for consumer {consumer}");
    };
    let data = client
        .query(
            "query($id: ID!) { connectionCredentials(id: $id) { connectionId authType accessToken tokenType expiresAt scopes instanceUrl apiKey username password fields } }",
            json!({ "id": id }),
        )
        .await?;
    let creds = &data["connectionCredentials"];
    if json_out {
        println!("{}", serde_json::to_string_pretty(creds)?);
        return Ok(());
    }
    let mut rows = Vec::new();
    for key in [
        "connectionId",
        "authType",
        "accessToken",
        "tokenType",
        "expiresAt",
        "instanceUrl",
        "apiKey",
        "username",
        "password",
    ] {
        if let Some(value) = creds[key].as_str() {
            rows.push(vec![key.to_owned(), value.to_owned()]);
        }
    }
    print_table(&["FIELD", "VALUE"], &rows);
    Ok(())
}

fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!("{}", line(headers.to_vec()));
    for row in rows {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
}
