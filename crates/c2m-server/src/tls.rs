//! TLS for the gRPC listener, mutual TLS for factories, and the client side the example
//! binaries share.
//!
//! The server side ([`ServerTls::from_settings`]) reads `--tls-cert`, `--tls-key` and
//! `--tls-client-ca` once at start and checks everything it can before the listener
//! opens: each file is read and parsed here, and the certificate and key are handed to
//! rustls (through tonic) once, so a missing file, bad PEM or a key that does not belong to
//! the certificate stops the server with an error naming the flag and the path instead of
//! failing the first handshake.
//!
//! With `--tls-client-ca`, client certificates are *optional* at the handshake (rustls
//! verifies any certificate a client presents against the CA bundle and refuses the
//! connection if it does not verify), because storefronts and admins authenticate by
//! token alone. The binding of a factory to its certificate is an access-control rule, so
//! it lives with the other rules in [`crate::auth`]: a factory token is accepted only on a
//! connection whose verified certificate names the token's factory
//! ([`CertificateNames::names`]).
//!
//! The client side ([`ClientTls`]) is what the example binaries flatten into their
//! command lines: `https://` addresses, `--tls-ca` to trust, and `--tls-cert` /
//! `--tls-key` to present (a factory's identity).

use std::fmt;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use tokio_rustls::rustls;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::Settings;

/// A TLS setting that cannot be used; every variant names the flag (and the file) so the
/// operator knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    // The io error is part of the message (not a `source`), so the one line in the log or
    // on the terminal says it all.
    #[error("{flag} {}: cannot read the file: {error}", path.display())]
    Unreadable {
        flag: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{flag} {}: {problem}", path.display())]
    BadPem {
        flag: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("{given} needs {missing} as well: TLS takes a certificate and its private key, both or neither")]
    Incomplete {
        given: &'static str,
        missing: &'static str,
    },
    #[error("--tls-client-ca needs --tls-cert and --tls-key: client certificates are verified only on a TLS listener")]
    ClientCaWithoutTls,
    #[error("--tls-cert {} and --tls-key {}: refused by rustls: {problem}", cert.display(), key.display())]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        problem: String,
    },
    #[error("{flag} is for https:// addresses, and {addr} is plaintext (use https://...)")]
    NotHttps { flag: &'static str, addr: String },
    #[error("{addr}: TLS needs a CA to trust: pass --tls-ca PATH (the CA certificate that signed the server's certificate)")]
    NoTrustRoot { addr: String },
    #[error("{addr}: {problem}")]
    Address { addr: String, problem: String },
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Unreadable {
        flag,
        path: path.to_owned(),
        error,
    })
}

/// The X.509 certificates of a PEM file, checked to parse; at least one.
fn read_certificates(flag: &'static str, path: &Path) -> Result<PemCertificates, TlsError> {
    let pem = read(flag, path)?;
    let bad = |problem: String| TlsError::BadPem {
        flag,
        path: path.to_owned(),
        problem,
    };
    let ders = rustls_pemfile::certs(&mut Cursor::new(&pem))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not valid PEM: {e}")))?;
    if ders.is_empty() {
        return Err(bad(
            "no certificate in the file (expected a PEM `-----BEGIN CERTIFICATE-----` block)"
                .into(),
        ));
    }
    let mut first = None;
    for (i, der) in ders.iter().enumerate() {
        let names = CertificateNames::from_der(der)
            .map_err(|e| bad(format!("certificate {} is not valid X.509: {e}", i + 1)))?;
        first.get_or_insert(names);
    }
    Ok(PemCertificates {
        pem,
        count: ders.len(),
        first: first.expect("at least one certificate"),
    })
}

struct PemCertificates {
    pem: Vec<u8>,
    count: usize,
    /// The first certificate: the server's own in `--tls-cert`.
    first: CertificateNames,
}

/// A PEM file holding an encrypted key (PKCS#8's `ENCRYPTED PRIVATE KEY`, or OpenSSL's
/// traditional `Proc-Type: 4,ENCRYPTED` header), which rustls does not read.
fn is_encrypted(pem: &[u8]) -> bool {
    let text = String::from_utf8_lossy(pem);
    text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
}

/// A private key PEM file, checked to hold a key rustls can read.
fn read_key(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(flag, path)?;
    let bad = |problem: String| TlsError::BadPem {
        flag,
        path: path.to_owned(),
        problem,
    };
    match rustls_pemfile::private_key(&mut Cursor::new(&pem)) {
        Ok(Some(_)) => Ok(pem),
        Ok(None) if is_encrypted(&pem) => Err(bad(
            "the private key is encrypted (a passphrase): c2m reads unencrypted keys only; \
             write one with `openssl pkey -in KEY -out PLAIN-KEY` and keep it owner-only"
                .into(),
        )),
        Ok(None) => Err(bad(
            "no private key in the file (expected a PEM `BEGIN PRIVATE KEY`, \
             `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY` block)"
                .into(),
        )),
        Err(e) => Err(bad(format!("not valid PEM: {e}"))),
    }
}

/// The listener's rustls configuration, as tonic 0.12 builds it from the same files (its
/// `TlsAcceptor::new`): the chain and key, client certificates verified against the client
/// CA bundle but optional (tokens authenticate storefronts and admins), ALPN `h2`. The
/// error says what to fix: a key that belongs to another certificate of the chain means
/// the chain is out of order, which rustls reports only as a key mismatch.
fn server_config(
    chain_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<Vec<u8>>,
) -> Result<rustls::ServerConfig, String> {
    let chain = rustls_pemfile::certs(&mut Cursor::new(chain_pem))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate chain: {e}"))?;
    let key = || match rustls_pemfile::private_key(&mut Cursor::new(key_pem)) {
        Ok(Some(key)) => Ok(key),
        _ => Err("no private key".to_owned()),
    };
    let builder = || -> Result<_, String> {
        let builder = rustls::ServerConfig::builder();
        Ok(match &client_ca_pem {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_pemfile::certs(&mut Cursor::new(pem)) {
                    let cert = cert.map_err(|e| format!("--tls-client-ca: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("--tls-client-ca: a CA rustls cannot use: {e}"))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder(roots.into())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| format!("--tls-client-ca: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            }
        })
    };
    let mut config = match builder()?.with_single_cert(chain.clone(), key()?) {
        Ok(config) => config,
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            let belongs = (1..chain.len()).find(|&i| {
                let alone = vec![chain[i].clone()];
                builder().is_ok_and(|b| key().is_ok_and(|k| b.with_single_cert(alone, k).is_ok()))
            });
            return Err(match belongs {
                Some(i) => format!(
                    "the private key belongs to certificate {} of the chain, not the first: \
                     the server's own certificate must come first, then its issuers \
                     (KeyMismatch)",
                    i + 1
                ),
                None => "the private key does not belong to the certificate (KeyMismatch)".into(),
            });
        }
        Err(e) => return Err(format!("{e} ({SUPPORTED_KEYS})")),
    };
    config.alpn_protocols.push(b"h2".to_vec());
    Ok(config)
}

/// The keys the listener's rustls (with ring) signs with.
const SUPPORTED_KEYS: &str =
    "c2m's TLS takes RSA keys of 2048 bits or more, ECDSA keys on P-256 or P-384, or Ed25519";

/// `error: cause: cause`, for errors from libraries whose `Display` is only the outer layer
/// (tonic's is "transport error").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

/// `--tls-cert` and `--tls-key`, which come together or not at all (on the server and on
/// a client alike): both, neither, or an error naming the one missing.
fn certificate_and_key<'a>(
    cert: &'a Option<PathBuf>,
    key: &'a Option<PathBuf>,
) -> Result<Option<(&'a PathBuf, &'a PathBuf)>, TlsError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(TlsError::Incomplete {
            given: "--tls-cert",
            missing: "--tls-key",
        }),
        (None, Some(_)) => Err(TlsError::Incomplete {
            given: "--tls-key",
            missing: "--tls-cert",
        }),
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
    }
}

/// The listener's TLS, loaded and checked at start.
///
/// The server does its handshakes itself ([`ServerTls::acceptor`], in the accept path of
/// `app.rs`), not through tonic's TLS, so that `--handshake-timeout` covers the whole
/// handshake: tonic's waited without a deadline, and a peer that sent a few bytes of a
/// ClientHello, or finished the handshake and sent nothing, held its connection (and a
/// place under `--max-connections`) for good. The configuration is tonic's own: the same
/// rustls provider, ALPN `h2`, and client certificates optional under a client CA.
pub struct ServerTls {
    acceptor: tokio_rustls::TlsAcceptor,
    /// `--tls-client-ca` is set: factory tokens need a certificate naming their factory.
    pub factory_certificates: bool,
    cert: PathBuf,
    client_ca: Option<PathBuf>,
    client_cas: usize,
    server: CertificateNames,
}

impl ServerTls {
    /// `None` when TLS is off (neither `--tls-cert` nor `--tls-key`).
    pub fn from_settings(s: &Settings) -> Result<Option<ServerTls>, TlsError> {
        let Some((cert, key)) = certificate_and_key(&s.tls_cert, &s.tls_key)? else {
            if s.tls_client_ca.is_some() {
                return Err(TlsError::ClientCaWithoutTls);
            }
            return Ok(None);
        };
        let chain_pem = read_certificates("--tls-cert", cert)?;
        let key_pem = read_key("--tls-key", key)?;
        let client_bundle = match &s.tls_client_ca {
            Some(ca) => Some(read_certificates("--tls-client-ca", ca)?),
            None => None,
        };
        let client_cas = client_bundle.as_ref().map_or(0, |b| b.count);
        // The files go to rustls now: a key that does not belong to the certificate (or a
        // CA rustls cannot use) is a start-up error, not a failed first handshake.
        let config = server_config(&chain_pem.pem, &key_pem, client_bundle.map(|b| b.pem))
            .map_err(|problem| TlsError::Rejected {
                cert: cert.clone(),
                key: key.clone(),
                problem,
            })?;
        Ok(Some(ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
            factory_certificates: s.tls_client_ca.is_some(),
            cert: cert.clone(),
            client_ca: s.tls_client_ca.clone(),
            client_cas,
            server: chain_pem.first,
        }))
    }

    /// What the accept path hands each connection to.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.acceptor.clone()
    }

    /// Says at start what the listener does, so an operator can see it in the log.
    pub fn log(&self) {
        tracing::info!(
            cert = %self.cert.display(),
            names = %self.server.all_names(),
            expires = %self.server.not_after,
            "TLS on: the listener accepts TLS only"
        );
        if !self.server.valid_now {
            tracing::warn!(
                cert = %self.cert.display(),
                not_before = %self.server.not_before,
                not_after = %self.server.not_after,
                "the server certificate is not valid now: clients will refuse it"
            );
        }
        match &self.client_ca {
            Some(ca) => tracing::info!(
                client_ca = %ca.display(),
                certificates = self.client_cas,
                "mutual TLS on: client certificates are verified against the client CA; \
                 a factory token is accepted only with a certificate naming its factory"
            ),
            None => tracing::info!(
                "mutual TLS off: factory tokens are accepted without a client certificate \
                 (--tls-client-ca turns it on)"
            ),
        }
    }
}

/// The names in a certificate that identify a factory, and its validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateNames {
    /// Subject alternative names of type DNS.
    pub dns: Vec<String>,
    /// Subject alternative names of type IP address (only logged: a server certificate
    /// needs one when clients dial an address).
    ip: Vec<String>,
    /// The subject's common name (the first, if there are several).
    pub common_name: Option<String>,
    not_before: String,
    not_after: String,
    valid_now: bool,
}

impl CertificateNames {
    pub fn from_der(der: &[u8]) -> Result<CertificateNames, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let sans = match cert.subject_alternative_name() {
            Ok(Some(san)) => san.value.general_names.clone(),
            Ok(None) => Vec::new(),
            Err(e) => return Err(format!("subject alternative names: {e}")),
        };
        let dns = sans
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some((*d).to_owned()),
                _ => None,
            })
            .collect();
        let ip = sans
            .iter()
            .filter_map(|n| match n {
                GeneralName::IPAddress(b) => match b.len() {
                    4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                    16 => {
                        Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).ok()?).to_string())
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect();
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let time = |t: x509_parser::time::ASN1Time| {
            chrono::DateTime::from_timestamp(t.timestamp(), 0)
                .map(|d| d.to_rfc3339())
                .unwrap_or_else(|| t.to_string())
        };
        Ok(CertificateNames {
            dns,
            ip,
            common_name,
            not_before: time(cert.validity().not_before),
            not_after: time(cert.validity().not_after),
            valid_now: cert.validity().is_valid(),
        })
    }

    /// The names the certificate is recognised by, as a factory id: its DNS subject
    /// alternative names, or, only when it has none, its subject common name. (The same
    /// rule as for server names: a certificate with DNS names is not also identified by its
    /// CN, so a CA that writes names into SANs cannot be surprised by a stray CN.)
    /// Compared exactly, case included, as factory ids are.
    pub fn names(&self) -> Vec<&str> {
        if self.dns.is_empty() {
            self.common_name.as_deref().into_iter().collect()
        } else {
            self.dns.iter().map(String::as_str).collect()
        }
    }

    pub fn names_factory(&self, factory: &str) -> bool {
        self.names().contains(&factory)
    }

    /// `DNS a, IP b, CN c`: every name, for the start-up log.
    fn all_names(&self) -> String {
        let mut all: Vec<String> = self.dns.iter().map(|d| format!("DNS {d}")).collect();
        all.extend(self.ip.iter().map(|i| format!("IP {i}")));
        all.extend(self.common_name.iter().map(|c| format!("CN {c}")));
        all.join(", ")
    }
}

impl fmt::Display for CertificateNames {
    /// `DNS a, DNS b` or `CN x` (what [`CertificateNames::names`] uses), for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dns.is_empty() {
            match &self.common_name {
                Some(cn) => write!(f, "CN {cn}"),
                None => f.write_str("no DNS name and no CN"),
            }
        } else {
            let names: Vec<String> = self.dns.iter().map(|d| format!("DNS {d}")).collect();
            f.write_str(&names.join(", "))
        }
    }
}

// ---------------------------------------------------------------------------------------
// The client side

/// TLS options of a client (the example binaries flatten this into their arguments).
///
/// The environment variables of the client identity are not the server's `C2M_TLS_CERT` /
/// `C2M_TLS_KEY`, so a shell set up to run the server does not make every client present
/// the server's certificate.
// Without `about = None` clap takes this doc comment as the `--help` text of every command
// that flattens the struct, in place of the command's own.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(about = None, long_about = None)]
pub struct ClientTls {
    /// PEM CA certificate(s) to trust for the server's certificate; needed for https://
    /// addresses (there are no built-in roots).
    #[arg(long, env = "C2M_TLS_CA", value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate to present (a factory's identity under mutual TLS); with
    /// --tls-key.
    #[arg(long, env = "C2M_CLIENT_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "C2M_CLIENT_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
}

impl ClientTls {
    /// An endpoint for `addr`: plaintext for `http://`, TLS for `https://` trusting
    /// `--tls-ca` and presenting `--tls-cert` / `--tls-key` when given. The server's name is
    /// checked against the address's host (a DNS name or an IP address in the server
    /// certificate's subject alternative names).
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, TlsError> {
        let endpoint = Endpoint::from_shared(addr.to_owned()).map_err(|e| TlsError::Address {
            addr: addr.to_owned(),
            problem: format!("not a valid address: {}", error_chain(&e)),
        })?;
        // Without a scheme ("nope", "127.0.0.1:50051") tonic fails only at connect, with
        // "scheme is missing", which the clients then wrapped in "is `c2m serve` running?".
        const WRITE: &str = "write http://HOST:PORT, or https://HOST:PORT for TLS";
        let https = match endpoint.uri().scheme_str() {
            Some("https") => true,
            Some("http") => false,
            other => {
                let problem = match other {
                    None => format!("no scheme: {WRITE}"),
                    Some(s) => format!("the scheme is {s:?}: {WRITE}"),
                };
                return Err(TlsError::Address {
                    addr: addr.to_owned(),
                    problem,
                });
            }
        };
        if !https {
            for (flag, given) in [
                ("--tls-ca", self.tls_ca.is_some()),
                ("--tls-cert", self.tls_cert.is_some()),
                ("--tls-key", self.tls_key.is_some()),
            ] {
                if given {
                    return Err(TlsError::NotHttps {
                        flag,
                        addr: addr.to_owned(),
                    });
                }
            }
            return Ok(endpoint);
        }
        let ca = self
            .tls_ca
            .as_deref()
            .ok_or_else(|| TlsError::NoTrustRoot {
                addr: addr.to_owned(),
            })?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(
            read_certificates("--tls-ca", ca)?.pem,
        ));
        if let Some((cert, key)) = certificate_and_key(&self.tls_cert, &self.tls_key)? {
            config = config.identity(Identity::from_pem(
                read_certificates("--tls-cert", cert)?.pem,
                read_key("--tls-key", key)?,
            ));
        }
        endpoint.tls_config(config).map_err(|e| TlsError::Address {
            addr: addr.to_owned(),
            problem: format!("TLS settings refused: {}", error_chain(&e)),
        })
    }
}

#[cfg(test)]
mod client_tls_tests {
    use super::ClientTls;

    /// A command that flattens the client's TLS options keeps its own help text (the
    /// struct's doc comment once replaced it in every example's `--help`).
    #[test]
    fn a_command_that_flattens_client_tls_keeps_its_own_help() {
        #[derive(clap::Parser)]
        #[command(about = "the command's own words")]
        struct Cli {
            #[command(flatten)]
            tls: ClientTls,
        }
        let mut command = <Cli as clap::CommandFactory>::command();
        let long = command.render_long_help().to_string();
        let short = command.render_help().to_string();
        for help in [long, short] {
            assert!(help.starts_with("the command's own words"), "{help}");
            assert!(help.contains("--tls-ca"), "{help}");
        }
    }
}
