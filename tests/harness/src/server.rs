//! A small HTTP/1.1 server on loopback that records every request it receives.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::HarnessError;

/// Upper bound of a recorded request body; larger bodies are cut.
const MAX_RECORDED_BODY: usize = 1024 * 1024;

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct RecordedHttpRequest {
    /// HTTP method.
    pub method: Method,
    /// Path and query, e.g. `/.swg/continue?x=1`.
    pub path_and_query: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body (at most 1 MiB).
    pub body: Bytes,
}

type Handler = dyn Fn(&RecordedHttpRequest) -> Response<Bytes> + Send + Sync;

/// An HTTP/1.1 server on `127.0.0.1` with an ephemeral port that responds to every request with a
/// handler and records it. Stops when dropped.
pub struct RecordingServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedHttpRequest>>>,
    accept_loop: JoinHandle<()>,
}

impl std::fmt::Debug for RecordingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for RecordingServer {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl RecordingServer {
    /// Binds `127.0.0.1:0` and serves every connection with `handler`.
    ///
    /// # Errors
    /// [`HarnessError::Io`] if binding fails.
    pub async fn start<F>(handler: F) -> Result<Self, HarnessError>
    where
        F: Fn(&RecordedHttpRequest) -> Response<Bytes> + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(HarnessError::io("cannot bind 127.0.0.1:0"))?;
        let addr = listener
            .local_addr()
            .map_err(HarnessError::io("cannot read the server address"))?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);

        let recorded = Arc::clone(&requests);
        let accept_loop = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = Arc::clone(&handler);
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let handler = Arc::clone(&handler);
                        let recorded = Arc::clone(&recorded);
                        async move { Ok::<_, Infallible>(serve(request, &*handler, &recorded).await) }
                    });
                    if let Err(error) = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!(%error, "recording server connection ended with an error");
                    }
                });
            }
        });

        Ok(RecordingServer {
            addr,
            requests,
            accept_loop,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedHttpRequest> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

async fn serve(
    request: http::Request<Incoming>,
    handler: &Handler,
    recorded: &Mutex<Vec<RecordedHttpRequest>>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let mut body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            tracing::debug!(%error, "reading a request body failed");
            Bytes::new()
        }
    };
    body.truncate(MAX_RECORDED_BODY);
    let request = RecordedHttpRequest {
        method: parts.method,
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned()),
        headers: parts.headers,
        body,
    };

    let response = handler(&request);
    recorded
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(request);
    response.map(Full::new)
}
