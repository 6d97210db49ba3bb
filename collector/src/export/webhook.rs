//! The HTTPS webhook sink: a batch is one `POST` of a JSON array of OCSF events, acknowledged by a
//! 2xx answer. HTTP/1.1 over rustls (hyper's client connection; one kept-alive connection, made
//! again after any failure).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{ExportSetupError, SendError};

/// Where and how to POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// `https://host[:port]/path`.
    pub url: String,
    /// PEM of the only CA to trust (pinned); `None` trusts the Mozilla roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Value of the `Authorization` header, if the receiver wants one.
    pub authorization: Option<String>,
    /// Connect + request + answer, per batch.
    pub timeout: Duration,
}

pub(super) struct Webhook {
    uri: Uri,
    host: String,
    port: u16,
    authority: String,
    authorization: Option<header::HeaderValue>,
    timeout: Duration,
    tls: TlsConnector,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl Webhook {
    pub(super) fn new(settings: &WebhookSettings) -> Result<Webhook, ExportSetupError> {
        let invalid = |problem: &str| ExportSetupError::Invalid {
            what: "export.webhook.url",
            problem: problem.to_owned(),
        };
        let uri: Uri = settings.url.parse().map_err(|_| invalid("not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(invalid("must be an https:// URL"));
        }
        let host = uri
            .host()
            .ok_or_else(|| invalid("has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| invalid("has no host"))?;
        let authorization = settings
            .authorization
            .as_deref()
            .map(header::HeaderValue::from_str)
            .transpose()
            .map_err(|_| ExportSetupError::Invalid {
                what: "export.webhook.authorization",
                problem: "not a valid header value".into(),
            })?
            .map(|mut value| {
                value.set_sensitive(true);
                value
            });
        let tls = super::client_tls(settings.ca_pem.as_deref(), &[b"http/1.1"])?;
        Ok(Webhook {
            uri,
            host,
            port,
            authority,
            authorization,
            timeout: settings.timeout,
            tls: TlsConnector::from(tls),
            connection: None,
        })
    }

    pub(super) async fn send(&mut self, events: &[serde_json::Value]) -> Result<(), SendError> {
        let body = serde_json::to_vec(events)
            .map_err(|e| SendError::Refused(format!("cannot encode: {e}")))?;
        match tokio::time::timeout(self.timeout, self.post(body)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                if matches!(error, SendError::Transient(_)) {
                    self.connection = None;
                }
                Err(error)
            }
            Err(_) => {
                self.connection = None;
                Err(SendError::Transient("timed out".into()))
            }
        }
    }

    async fn post(&mut self, body: Vec<u8>) -> Result<(), SendError> {
        let reusable = match self.connection.take() {
            Some(mut sender) => sender.ready().await.is_ok().then_some(sender),
            None => None,
        };
        let mut sender = match reusable {
            Some(sender) => sender,
            None => self.connect().await?,
        };
        let path = self
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("shadowai-collector/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SendError::Refused(format!("cannot build the request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| SendError::Transient(format!("request failed: {e}")))?;
        let status = response.status();
        // Read (and bound) the answer so that the connection can be reused.
        let _ = http_body_util::Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await;
        if status.is_success() {
            self.connection = Some(sender);
            return Ok(());
        }
        if status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
        {
            return Err(SendError::Transient(format!("receiver answered {status}")));
        }
        self.connection = Some(sender);
        Err(SendError::Refused(format!("receiver answered {status}")))
    }

    async fn connect(&mut self) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| SendError::Transient(format!("cannot connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(self.host.clone())
            .map_err(|_| SendError::Refused("the URL's host is not a valid TLS name".into()))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| SendError::Transient(format!("TLS handshake failed: {e}")))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| SendError::Transient(format!("HTTP handshake failed: {e}")))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "webhook connection closed");
            }
        });
        Ok(sender)
    }
}
