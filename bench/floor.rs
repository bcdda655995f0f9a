//! The stack's ceiling for `bench/proxy.sh`: actix-web in front of hyper-util's pooled client,
//! the two libraries Keyway's raw proxy is built on, forwarding every request to one upstream
//! with nothing else (no authentication, credential, header rules, limits or request logs).
//! Whatever this forwarder reaches against nginx is the most Keyway's proxy could reach
//! without changing its HTTP stack; the gap between the two is Keyway's own work.
//!
//!   floor <listen address> <upstream base URL>

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Upstream = Client<HttpConnector, Full<Bytes>>;

thread_local! {
    // One pool per worker, as Keyway's proxy keeps.
    static CLIENT: Upstream = {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        Client::builder(TokioExecutor::new()).build(http)
    };
}

async fn forward(base: web::Data<String>, req: HttpRequest, body: Bytes) -> HttpResponse {
    let uri = format!("{}{}", base.get_ref(), req.uri());
    let mut outbound = http::Request::builder().method(req.method().as_str()).uri(uri);
    for (name, value) in req.headers() {
        if name != "host" && name != "connection" {
            outbound = outbound.header(name.as_str(), value.as_bytes());
        }
    }
    let Ok(outbound) = outbound.body(Full::new(body)) else {
        return HttpResponse::BadRequest().finish();
    };
    let Ok(answer) = CLIENT.with(Upstream::clone).request(outbound).await else {
        return HttpResponse::BadGateway().finish();
    };
    let (head, body) = answer.into_parts();
    let Ok(body) = body.collect().await else {
        return HttpResponse::BadGateway().finish();
    };
    let status = actix_web::http::StatusCode::from_u16(head.status.as_u16())
        .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
    let mut response = HttpResponse::build(status);
    for (name, value) in &head.headers {
        if name != "connection" && name != "content-length" && name != "transfer-encoding" {
            response.append_header((name.as_str(), value.as_bytes()));
        }
    }
    response.body(body.to_bytes())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (listen, base) = (args[1].clone(), args[2].trim_end_matches('/').to_owned());
    let base = web::Data::new(base);
    HttpServer::new(move || {
        App::new()
            .app_data(base.clone())
            .default_service(web::to(forward))
    })
    .bind(listen)?
    .run()
    .await
}
