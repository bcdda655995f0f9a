//! The stack's ceiling for `bench/proxy.sh`: actix-web in front of Keyway's own proxy client
//! (hyper's HTTP/1.1 connections in a per-thread pool, `keyway::upstream::proxy_client`), what
//! Keyway's raw proxy is built on, forwarding every request to one upstream with nothing else
//! (no authentication, credential, header rules, limits or request logs).
//! Whatever this forwarder reaches against nginx is the most Keyway's proxy could reach
//! without changing its HTTP stack; the gap between the two is Keyway's own work.
//!
//! `hyper` serves with hyper's own HTTP/1 server instead of actix-web (one single-threaded
//! runtime per core, each accepting on its own `SO_REUSEPORT` socket, as actix's workers do),
//! to see what the serving side costs.
//!
//!   floor <listen address> <upstream base URL> [actix|hyper]
//!
//! `FLOOR_WORKERS` sets the number of serving threads (default: one per core).

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use keyway::config::Config;
use keyway::upstream::proxy_client::{self, OutboundBody};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Headers each forwarder drops, both ways: the client sets its own, and the server frames
/// the (fully read) answer itself.
const REQUEST_HOP: &[&str] = &["host", "connection"];
const ANSWER_HOP: &[&str] = &["connection", "content-length", "transfer-encoding"];

/// Each worker's client and idle connections, as Keyway's proxy keeps them (the upstream is
/// an IP address, which Keyway's resolver never sees).
fn client() -> proxy_client::ProxyClient {
    proxy_client::per_thread(&Config::default()).expect("the proxy client builds")
}

async fn forward(base: web::Data<String>, req: HttpRequest, body: Bytes) -> HttpResponse {
    let uri = format!("{}{}", base.get_ref(), req.uri());
    let mut outbound = http::Request::builder()
        .method(req.method().as_str())
        .uri(uri);
    for (name, value) in req.headers() {
        if !REQUEST_HOP.contains(&name.as_str()) {
            outbound = outbound.header(name.as_str(), value.as_bytes());
        }
    }
    let Ok(outbound) = outbound.body(OutboundBody::full(body)) else {
        return HttpResponse::BadRequest().finish();
    };
    let Ok(answer) = client().request(outbound).await else {
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
        if !ANSWER_HOP.contains(&name.as_str()) {
            response.append_header((name.as_str(), value.as_bytes()));
        }
    }
    response.body(body.to_bytes())
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (listen, base) = (args[1].clone(), args[2].trim_end_matches('/').to_owned());
    match args.get(3).map(String::as_str) {
        Some("hyper") => hyper_served(listen.parse().map_err(std::io::Error::other)?, base),
        _ => actix_web::rt::System::new().block_on(actix_served(listen, base)),
    }
}

fn hyper_served(listen: std::net::SocketAddr, base: String) -> std::io::Result<()> {
    let base: &'static str = Box::leak(base.into_boxed_str());
    let workers: Vec<_> = (0..worker_count())
        .map(|_| {
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(accept(listen, base))
            })
        })
        .collect();
    for worker in workers {
        worker
            .join()
            .map_err(|_| std::io::Error::other("a worker panicked"))??;
    }
    Ok(())
}

async fn accept(listen: std::net::SocketAddr, base: &'static str) -> std::io::Result<()> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseport(true)?;
    socket.bind(listen)?;
    let listener = socket.listen(1024)?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let service = hyper::service::service_fn(move |req| forward_hyper(base, req));
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
        );
    }
}

async fn forward_hyper(
    base: &'static str,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, std::io::Error> {
    let (head, body) = req.into_parts();
    let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outbound = http::Request::builder()
        .method(head.method)
        .uri(format!("{base}{path}"));
    for (name, value) in &head.headers {
        if !REQUEST_HOP.contains(&name.as_str()) {
            outbound = outbound.header(name, value);
        }
    }
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let outbound = outbound
        .body(OutboundBody::full(body))
        .map_err(std::io::Error::other)?;
    let answer = client()
        .request(outbound)
        .await
        .map_err(std::io::Error::other)?;
    let (mut head, body) = answer.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    for name in ANSWER_HOP {
        head.headers.remove(*name);
    }
    Ok(http::Response::from_parts(head, Full::new(body)))
}

/// Serving threads: `FLOOR_WORKERS`, or one per core.
fn worker_count() -> usize {
    std::env::var("FLOOR_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

async fn actix_served(listen: String, base: String) -> std::io::Result<()> {
    let base = web::Data::new(base);
    HttpServer::new(move || {
        App::new()
            .app_data(base.clone())
            .default_service(web::to(forward))
    })
    .workers(worker_count())
    .bind(listen)?
    .run()
    .await
}
