//! TLS listeners (SPEC 6, SPEC 10 "TLS"): generated certificates, ALPN `http/1.1` and `h2`,
//! many SSE streams on one HTTP/2 connection, the certificate chosen by SNI (the first one
//! without SNI or for an unknown name), TLS 1.2 and 1.3.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, ProtocolVersion, RootCertStore, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A self-signed certificate for one name, written as PEM files.
struct Cert {
    der: CertificateDer<'static>,
    cert_file: PathBuf,
    key_file: PathBuf,
}

fn generate_cert(dir: &std::path::Path, name: &str) -> Cert {
    let generated =
        rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("generate a certificate");
    let cert_file = dir.join(format!("{name}.pem"));
    let key_file = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert_file, generated.cert.pem()).expect("write the certificate");
    std::fs::write(&key_file, generated.signing_key.serialize_pem()).expect("write the key");
    Cert {
        der: generated.cert.der().clone(),
        cert_file,
        key_file,
    }
}

/// A proxy with one TLS listener holding the certificates for `a.test` (first) and `b.test`,
/// in front of `origin`.
struct TlsProxy {
    proxy: Proxy,
    a: Cert,
    b: Cert,
}

async fn start_tls_proxy(origin: &Origin) -> TlsProxy {
    let dir = temp_dir("tls");
    let a = generate_cert(&dir, "a.test");
    let b = generate_cert(&dir, "b.test");
    let yaml = format!(
        "listeners:\n  - bind: 127.0.0.1:0\n    tls:\n      certs:\n        \
         - {{ cert: '{}', key: '{}' }}\n        - {{ cert: '{}', key: '{}' }}\n\
         admin:\n  bind: 127.0.0.1:0\n\
         routes:\n  - path: /events\n    upstream: {}\n    heartbeat: 0\n",
        a.cert_file.display(),
        a.key_file.display(),
        b.cert_file.display(),
        b.key_file.display(),
        origin.url("/stream"),
    );
    TlsProxy {
        proxy: Proxy::start(&yaml).await,
        a,
        b,
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client that trusts exactly `trusted`, offers `alpn` and speaks the given TLS versions.
fn client_config(
    trusted: &[&Cert],
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots.add(cert.der.clone()).expect("trust the certificate");
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A client that accepts any certificate, so that a test can look at which one it got.
fn inspecting_client_config() -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
        .with_no_client_auth()
}

async fn connect(
    addr: std::net::SocketAddr,
    config: ClientConfig,
    name: &str,
) -> TlsStream<TcpStream> {
    let tcp = within("connect", TcpStream::connect(addr))
        .await
        .expect("connect to the TLS listener");
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    within(
        "the TLS handshake",
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("TLS handshake")
}

/// The certificate the server presented on `tls`.
fn presented(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref()
        .1
        .peer_certificates()
        .expect("a server certificate")[0]
        .clone()
}

#[tokio::test]
async fn sse_over_tls_with_alpn_http1_reaches_the_client_and_the_origin_sees_https() {
    let mut origin = Origin::start().await;
    let tls = start_tls_proxy(&origin).await;
    let config = client_config(&[&tls.a], &[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let stream = connect(tls.proxy.addr(), config, "a.test").await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut client = RawClient::over(stream);
    client
        .get("/events", &[("Accept", "text/event-stream")])
        .await;
    let request = origin.next_request().await;
    assert_eq!(
        request.header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    let events = request.respond_sse();
    let (status, headers) = client.read_head().await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "cache-control"),
        Some("no-cache, no-transform")
    );
    events.send("id: 1\ndata: over tls\n\n").await;
    client.read_until("id: 1\ndata: over tls\n\n").await;
    events.send("id: 2\ndata: still open\n\n").await;
    client.read_until("id: 2\ndata: still open\n\n").await;
    assert!(events.is_open());
}

#[tokio::test]
async fn ten_sse_streams_share_one_http2_connection_each_getting_its_own_events() {
    const STREAMS: usize = 10;
    let mut origin = Origin::start().await;
    let tls = start_tls_proxy(&origin).await;
    let config = client_config(&[&tls.a], &[b"h2"], rustls::DEFAULT_VERSIONS);
    let stream = connect(tls.proxy.addr(), config, "a.test").await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(connection);

    let mut responses = Vec::new();
    for i in 0..STREAMS {
        let request = http::Request::get(format!("https://a.test/events/{i}"))
            .header("accept", "text/event-stream")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let mut sender = sender.clone();
        responses.push(tokio::spawn(
            async move { sender.send_request(request).await },
        ));
    }
    // Every stream reaches the origin before any of them gets an answer: all ten are open at once.
    let mut origin_streams: Vec<Option<OriginStream>> = (0..STREAMS).map(|_| None).collect();
    for _ in 0..STREAMS {
        let request = origin.next_request().await;
        assert_eq!(
            request.header("x-forwarded-proto").as_deref(),
            Some("https")
        );
        assert_eq!(
            request.header("x-forwarded-host").as_deref(),
            Some("a.test")
        );
        let i: usize = request
            .uri
            .path()
            .strip_prefix("/stream/")
            .and_then(|i| i.parse().ok())
            .expect("a path /stream/<i>");
        origin_streams[i] = Some(request.respond_sse());
    }
    let mut bodies = Vec::new();
    for response in responses {
        let response = within("an HTTP/2 response", response)
            .await
            .expect("request task")
            .expect("HTTP/2 response");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers().get("connection"), None);
        assert_eq!(
            response.headers()["cache-control"],
            "no-cache, no-transform"
        );
        bodies.push(response.into_body());
    }
    let metrics = admin_get(tls.proxy.admin.expect("admin"), "/metrics")
        .await
        .1;
    assert_eq!(
        sample_value(&metrics, "ssebridge_connections_open"),
        Some(1)
    );
    assert_eq!(
        sample_value(
            &metrics,
            "ssebridge_streams_open{route=\"/events\",kind=\"sse\"}"
        ),
        Some(STREAMS as u64)
    );

    for (i, stream) in origin_streams.iter().enumerate().rev() {
        let stream = stream.as_ref().expect("an origin stream");
        stream.send(format!("id: {i}\ndata: stream {i}\n\n")).await;
    }
    for (i, body) in bodies.iter_mut().enumerate() {
        let got = read_body_until(body, &format!("data: stream {i}\n\n")).await;
        assert_eq!(got, format!("id: {i}\ndata: stream {i}\n\n"));
    }
    for (i, stream) in origin_streams.iter().enumerate() {
        let stream = stream.as_ref().expect("an origin stream");
        stream.send(format!("data: second {i}\n\n")).await;
        let got = read_body_until(&mut bodies[i], &format!("data: second {i}\n\n")).await;
        assert_eq!(got, format!("data: second {i}\n\n"));
    }
}

#[tokio::test]
async fn sni_picks_the_certificate_that_names_the_server() {
    let origin = Origin::start().await;
    let tls = start_tls_proxy(&origin).await;
    let to_b = connect(tls.proxy.addr(), inspecting_client_config(), "b.test").await;
    assert_eq!(presented(&to_b), tls.b.der);
    let to_a = connect(tls.proxy.addr(), inspecting_client_config(), "a.test").await;
    assert_eq!(presented(&to_a), tls.a.der);
    // And a client that verifies properly accepts the second certificate for its name.
    let verifying = client_config(&[&tls.b], &[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    connect(tls.proxy.addr(), verifying, "b.test").await;
}

#[tokio::test]
async fn without_sni_or_with_an_unknown_name_the_first_certificate_is_used() {
    let origin = Origin::start().await;
    let tls = start_tls_proxy(&origin).await;
    let mut no_sni = inspecting_client_config();
    no_sni.enable_sni = false;
    let without_sni = connect(tls.proxy.addr(), no_sni, "b.test").await;
    assert_eq!(presented(&without_sni), tls.a.der);
    let unknown = connect(tls.proxy.addr(), inspecting_client_config(), "unknown.test").await;
    assert_eq!(presented(&unknown), tls.a.der);
}

#[tokio::test]
async fn tls_1_2_and_tls_1_3_both_negotiate_and_carry_a_stream() {
    let mut origin = Origin::start().await;
    let tls = start_tls_proxy(&origin).await;
    for (version, expected) in [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ] {
        let config = client_config(&[&tls.a], &[b"http/1.1"], &[version]);
        let stream = connect(tls.proxy.addr(), config, "a.test").await;
        assert_eq!(stream.get_ref().1.protocol_version(), Some(expected));
        let mut client = RawClient::over(stream);
        client.get("/events", &[]).await;
        let events = origin.next_request().await.respond_sse();
        assert_eq!(client.read_head().await.0, 200);
        events.send(format!("data: {expected:?}\n\n")).await;
        client.read_until(&format!("data: {expected:?}\n\n")).await;
    }
}

/// Accepts any server certificate (signatures still checked), for tests that look at which
/// certificate the server chose.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
