//! The HTTP(S) server: `/metrics`, `/` and `/healthz`.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::snapshot::Snapshots;
use crate::web_config::WebConfig;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything a request needs.
pub struct Exporter {
    pub snapshots: Snapshots,
    pub web: Option<WebConfig>,
}

fn response(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_str(content_type).expect("static content type"));
    r
}

/// OpenMetrics when the scraper asks for it (Prometheus does, first), else
/// the classic text format — what curl and older scrapers get.
fn wants_openmetrics(req: &Request<Incoming>) -> bool {
    req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/openmetrics-text"))
}

const LANDING: &str = "<!doctype html><html><head><title>twscope</title></head><body>\
<h1>twscope</h1><p>TCP ephemeral-port exhaustion exporter: TIME_WAIT, per-destination source-port \
headroom, close rates and time to exhaustion.</p>\
<ul><li><a href=\"metrics\">metrics</a></li><li><a href=\"healthz\">healthz</a></li></ul></body></html>\n";

async fn handle(exporter: Arc<Exporter>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(response(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n"));
    }
    // Liveness probes carry no credentials and learn nothing from the answer.
    if req.uri().path() == "/healthz" {
        return Ok(response(StatusCode::OK, "text/plain", "ok\n"));
    }
    if let Some(web) = &exporter.web {
        let header = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        // bcrypt is deliberately slow: keep it off the async workers.
        let authorized = if web.auth_required() {
            let header = header.map(str::to_string);
            let exporter = exporter.clone();
            tokio::task::spawn_blocking(move || exporter.web.as_ref().is_some_and(|w| w.authorized(header.as_deref())))
                .await
                .unwrap_or(false)
        } else {
            true
        };
        if !authorized {
            let mut r = response(StatusCode::UNAUTHORIZED, "text/plain", "Unauthorized\n");
            r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"twscope\""));
            return Ok(r);
        }
    }
    Ok(match req.uri().path() {
        "/" => response(StatusCode::OK, "text/html; charset=utf-8", LANDING),
        "/metrics" => match exporter.snapshots.get().await {
            Ok(snapshot) if wants_openmetrics(&req) => response(StatusCode::OK, OPENMETRICS, snapshot.openmetrics.clone()),
            Ok(snapshot) => response(StatusCode::OK, prometheus_client::encoding::prometheus_text::CONTENT_TYPE, snapshot.text.clone()),
            Err(e) => response(StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("{e}\n")),
        },
        _ => response(StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics\n"),
    })
}

/// Serves until `shutdown` resolves.
pub async fn serve(listener: std::net::TcpListener, exporter: Exporter, shutdown: impl std::future::Future<Output = ()>) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let tls = exporter.web.as_ref().and_then(|w| w.tls.clone()).map(TlsAcceptor::from);
    let exporter = Arc::new(exporter);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                // Out of descriptors and the like: keep serving the others.
                Err(_) => continue,
            },
            () = &mut shutdown => return Ok(()),
        };
        let exporter = exporter.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(exporter.clone(), req));
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(acceptor) => {
                    // A failed handshake (plain HTTP to a TLS port, wrong CA) ends this connection only.
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
            }
        });
    }
}
