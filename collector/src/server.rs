//! The collector's network shell: the mTLS gRPC listener for agents and the HTTP listener for the
//! dashboard and API, bound first (so callers learn the real ports) and then served until shutdown.
//!
//! TLS is terminated here rather than in tonic so that the handshake has a timeout and a concurrency
//! bound, and so that the client certificate's fingerprint is computed once per connection and
//! handed to every call as `PeerInfo`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use rustls::server::WebPkiClientVerifier;
use shadowai_proto::v1::agent_service_server::AgentServiceServer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tracing::{debug, info, warn};

use crate::identity::{CertificateAuthority, fingerprint, unix_ms};
use crate::ingest::{AgentApi, limits::Admission, validate::MAX_MESSAGE_BYTES};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; more connections wait in the kernel's accept queue.
const MAX_CONCURRENT_HANDSHAKES: usize = 256;

/// What the connection tells about the caller. Put into every gRPC request's extensions.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    /// The remote address of the TCP connection.
    pub remote_addr: Option<SocketAddr>,
    /// The verified client certificate, when the agent presented one.
    pub client_certificate: Option<ClientCertificate>,
}

/// A client certificate that chains to the collector CA (rustls verified it in the handshake).
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    /// SHA-256 of the DER, hex.
    pub fingerprint: String,
    /// End of validity, Unix ms.
    pub not_after_ms: i64,
}

/// A server-side TLS connection with its peer information.
pub struct TlsConnection {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: PeerInfo,
}

impl Connected for TlsConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The rustls configuration of the agent listener: the collector's server certificate, client
/// certificates verified against the collector CA but optional at the TLS layer (enrollment has
/// none; every other call refuses a caller without one), HTTP/2 only.
pub fn agent_tls_config(
    ca: &CertificateAuthority,
    server_names: &[String],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.certificate_der().clone())
        .context("collector CA certificate")?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("client certificate verifier")?;
    let (chain, key) =
        ca.issue_server_certificate(server_names, time::OffsetDateTime::now_utc())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("server certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections and completes TLS handshakes in the background, yielding ready
/// connections. Bounded: at most `MAX_CONCURRENT_HANDSHAKES` at a time, each with a timeout, at the
/// default handshake rate.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> ReceiverStream<Result<TlsConnection, io::Error>> {
    tls_incoming_paced(listener, config, Arc::new(Admission::default()))
}

/// [`tls_incoming`] at the handshake rate of `admission`: the accept loop takes one token per
/// connection and, when there is none, waits before accepting the next. Connections beyond the
/// rate stay in the kernel's accept queue (bounded by the listen backlog; a full queue makes
/// clients retry their SYN), so a reconnecting fleet is admitted at a steady rate.
pub fn tls_incoming_paced(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    admission: Arc<Admission>,
) -> ReceiverStream<Result<TlsConnection, io::Error>> {
    let (sender, receiver) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    tokio::spawn(async move {
        let mut handshakes = admission.handshake_bucket(std::time::Instant::now());
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            while let Err(wait) = handshakes.try_take(1.0, std::time::Instant::now()) {
                admission
                    .counters
                    .handshakes_paced
                    .fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(wait).await;
            }
            let (tcp, remote_addr) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            admission
                .counters
                .handshakes_admitted
                .fetch_add(1, Ordering::Relaxed);
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let stream =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            debug!(%remote_addr, error = %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            debug!(%remote_addr, "TLS handshake timed out");
                            return;
                        }
                    };
                let client_certificate = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|leaf| ClientCertificate {
                        fingerprint: fingerprint(leaf.as_ref()),
                        not_after_ms: x509_parser::parse_x509_certificate(leaf.as_ref())
                            .map(|(_, c)| c.validity().not_after.timestamp().saturating_mul(1000))
                            .unwrap_or(0),
                    });
                let peer = PeerInfo {
                    remote_addr: Some(remote_addr),
                    client_certificate,
                };
                let _ = sender.send(Ok(TlsConnection { stream, peer })).await;
            });
        }
    });
    ReceiverStream::new(receiver)
}

/// The agent gRPC service with its message limits and compression.
pub fn agent_service(api: AgentApi) -> AgentServiceServer<AgentApi> {
    AgentServiceServer::new(api)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
}

/// tonic answers OUT_OF_RANGE for a message over the decoding limit; the contract says a too-large
/// message is RESOURCE_EXHAUSTED. This layer rewrites that one code on trailers-only responses.
/// It also turns a protobuf decoding failure (a malformed message, invalid UTF-8 in a `string`
/// field), which tonic reports as INTERNAL, into INVALID_ARGUMENT: the caller sent it, not a bug
/// of ours (the message, which names the field, is kept).
#[derive(Clone)]
pub struct TooLargeIsResourceExhausted<S>(S);

impl<S> tower::Layer<S> for TooLargeIsResourceExhaustedLayer {
    type Service = TooLargeIsResourceExhausted<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TooLargeIsResourceExhausted(inner)
    }
}

/// Layer of [`TooLargeIsResourceExhausted`].
#[derive(Clone, Default)]
pub struct TooLargeIsResourceExhaustedLayer;

impl<S, B, R> tower::Service<http::Request<B>> for TooLargeIsResourceExhausted<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let future = self.0.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            let out_of_range = http::HeaderValue::from_static("11");
            if response.headers().get("grpc-status") == Some(&out_of_range) {
                response
                    .headers_mut()
                    .insert("grpc-status", http::HeaderValue::from_static("8"));
            }
            let internal = http::HeaderValue::from_static("13");
            let is_decode_error = response
                .headers()
                .get("grpc-message")
                .is_some_and(|m| m.as_bytes().starts_with(DECODE_ERROR_MESSAGE));
            if response.headers().get("grpc-status") == Some(&internal) && is_decode_error {
                response
                    .headers_mut()
                    .insert("grpc-status", http::HeaderValue::from_static("3"));
            }
            Ok(response)
        })
    }
}

/// How tonic's protobuf codec starts the (percent-encoded) message of a decoding failure.
const DECODE_ERROR_MESSAGE: &[u8] = b"failed%20to%20decode%20Protobuf%20message";

/// Listeners bound and ready to serve.
pub struct Bound {
    /// Address of the agent (gRPC, mTLS) listener.
    pub grpc_addr: SocketAddr,
    /// Address of the dashboard/API (HTTP) listener.
    pub http_addr: SocketAddr,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    http_tls: Option<Arc<rustls::ServerConfig>>,
}

impl Bound {
    /// Binds both listeners.
    pub async fn bind(grpc: SocketAddr, http: SocketAddr) -> anyhow::Result<Self> {
        let grpc_listener = TcpListener::bind(grpc)
            .await
            .with_context(|| format!("cannot listen for agents on {grpc}"))?;
        let http_listener = TcpListener::bind(http)
            .await
            .with_context(|| format!("cannot listen for the dashboard on {http}"))?;
        Ok(Self {
            grpc_addr: grpc_listener.local_addr()?,
            http_addr: http_listener.local_addr()?,
            grpc_listener,
            http_listener,
            http_tls: None,
        })
    }

    /// Serves the dashboard and API over TLS with `config` (see `dashboard_tls`).
    pub fn with_dashboard_tls(mut self, config: Option<Arc<rustls::ServerConfig>>) -> Self {
        self.http_tls = config;
        self
    }

    /// Serves agents and the dashboard until `shutdown` completes, then drains in-flight calls.
    pub async fn serve(
        self,
        api: AgentApi,
        tls: Arc<rustls::ServerConfig>,
        router: axum::Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_sender, _) = tokio::sync::broadcast::channel::<()>(1);
        let mut grpc_stop = stop_sender.subscribe();
        let mut http_stop = stop_sender.subscribe();
        let incoming = tls_incoming_paced(self.grpc_listener, tls, api.admission().clone());
        let grpc = tonic::transport::Server::builder()
            .timeout(Duration::from_secs(30))
            .http2_keepalive_interval(Some(Duration::from_secs(60)))
            .layer(crate::metrics::GrpcMetricsLayer)
            .layer(TooLargeIsResourceExhaustedLayer)
            .add_service(agent_service(api))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = grpc_stop.recv().await;
            });
        let http =
            crate::dashboard_tls::serve(self.http_listener, self.http_tls, router, async move {
                let _ = http_stop.recv().await;
            });
        info!(grpc = %self.grpc_addr, http = %self.http_addr, "collector serving");
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_sender.send(());
        });
        let (grpc, http) = tokio::join!(grpc, http);
        grpc.context("agent listener failed")?;
        http.context("dashboard listener failed")?;
        Ok(())
    }
}

/// The current time in Unix milliseconds (the shell's clock).
pub fn now_ms() -> i64 {
    unix_ms(time::OffsetDateTime::now_utc())
}
