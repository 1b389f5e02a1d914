//! A connection's handshake, under one deadline: TLS when the listener has it, then the
//! HTTP/2 client preface. Only a connection past both is handed to tonic.
//!
//! Why here and not in tonic: tonic 0.12's TLS accept has no deadline, and hyper waits
//! for the preface without one (HTTP/2 keepalive PINGs begin only after it). A peer that
//! sent one byte of a ClientHello, the whole ClientHello, a finished TLS handshake and
//! nothing after, or half of the preface held its connection, a descriptor and a place
//! under `--max-connections` for as long as it liked; enough of them shut every client
//! out, and each held a shutdown for its whole grace. `--handshake-timeout` now bounds
//! everything before the first HTTP/2 frame.
//!
//! The client preface is the 24 bytes of [`PREFACE`] and the SETTINGS frame that must
//! follow them (RFC 9113, section 3.4); both are read here. With only the 24 bytes read,
//! a peer that sent them and nothing more was past the deadline but not past the
//! handshake: hyper waited for its SETTINGS with no deadline, and only the keepalive
//! (a minute and more) closed it (QA 16). The bytes read are given back to hyper
//! unchanged ([`Greeted`] replays them), so the HTTP/2 layer sees the connection from its
//! first byte, as before.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::server::TlsStream;

/// What every HTTP/2 client sends first (RFC 9113, section 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Who is on the other end of a connection, in every request's extensions (tonic puts a
/// connection's `ConnectInfo` there): its address, and under TLS the certificate chain the
/// client presented and rustls verified (the client's own first), if any.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub remote: Option<SocketAddr>,
    pub certs: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// The type of an HTTP/2 SETTINGS frame.
const SETTINGS: u8 = 0x4;
/// The largest frame a peer may send before the settings say otherwise
/// (`SETTINGS_MAX_FRAME_SIZE`'s initial value): the most a preface's SETTINGS may carry.
const MAX_FIRST_FRAME: usize = 16_384;

/// A connection past its handshake: the preface it sent is read again first.
pub struct Greeted<IO> {
    io: Transport<IO>,
    /// The preface as read (the 24 bytes and the SETTINGS frame), and how much of it the
    /// HTTP/2 layer has had.
    head: Vec<u8>,
    replayed: usize,
    info: PeerInfo,
}

enum Transport<IO> {
    Plain(IO),
    Tls(Box<TlsStream<IO>>),
}

/// Why a connection was dropped before tonic saw it (logged at debug with its peer).
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error("closed or failed before the HTTP/2 preface: {0}")]
    Read(io::Error),
    #[error("not HTTP/2: the first bytes are not the client preface")]
    NotHttp2,
    #[error("the client preface is not followed by a SETTINGS frame")]
    NoSettings,
    #[error("the preface's SETTINGS frame claims {0} bytes, more than a first frame may carry")]
    SettingsTooLarge(usize),
}

/// TLS (with `tls`), then the preface. The caller puts the deadline on the whole of it.
pub async fn handshake<IO>(
    io: IO,
    remote: Option<SocketAddr>,
    tls: Option<&tokio_rustls::TlsAcceptor>,
) -> Result<Greeted<IO>, HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let (mut io, certs) = match tls {
        None => (Transport::Plain(io), None),
        Some(acceptor) => {
            let stream = acceptor.accept(io).await.map_err(HandshakeError::Tls)?;
            let certs = stream
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect()));
            (Transport::Tls(Box::new(stream)), certs)
        }
    };
    // The 24 bytes, then the SETTINGS frame's 9-byte header (length, type, flags, stream),
    // then its payload.
    let mut head = vec![0u8; PREFACE.len() + 9];
    io.read_exact(&mut head[..PREFACE.len()])
        .await
        .map_err(HandshakeError::Read)?;
    if head[..PREFACE.len()] != PREFACE[..] {
        return Err(HandshakeError::NotHttp2);
    }
    io.read_exact(&mut head[PREFACE.len()..])
        .await
        .map_err(HandshakeError::Read)?;
    let frame = &head[PREFACE.len()..];
    let length = u32::from_be_bytes([0, frame[0], frame[1], frame[2]]) as usize;
    // A SETTINGS frame on stream 0 that is not an acknowledgement (flag 0x1): an ACK, or
    // one on a stream, is not what a preface sends (it was taken as one, QA 17).
    let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
    if frame[3] != SETTINGS || frame[4] & 0x1 != 0 || stream != 0 {
        return Err(HandshakeError::NoSettings);
    }
    if length > MAX_FIRST_FRAME {
        return Err(HandshakeError::SettingsTooLarge(length));
    }
    let start = head.len();
    head.resize(start + length, 0);
    io.read_exact(&mut head[start..])
        .await
        .map_err(HandshakeError::Read)?;
    Ok(Greeted {
        io,
        head,
        replayed: 0,
        info: PeerInfo { remote, certs },
    })
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Transport<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Transport::Tls(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Greeted<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.replayed < this.head.len() {
            let rest = &this.head[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            if this.replayed == this.head.len() {
                // Given back whole: a connection does not keep its preface (up to 16 KiB)
                // for its life.
                this.head = Vec::new();
                this.replayed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Greeted<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Transport::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Transport::Tls(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Transport::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Transport::Tls(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Transport::Plain(io) => io.is_write_vectored(),
            Transport::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Transport::Plain(io) => Pin::new(io).poll_flush(cx),
            Transport::Tls(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Transport::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Transport::Tls(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

impl<IO> tonic::transport::server::Connected for Greeted<IO> {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A SETTINGS frame with one setting (`SETTINGS_ENABLE_PUSH` = 0).
    const SETTINGS_FRAME: &[u8] = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00";

    /// The handshake of a peer that sends the 24 bytes and then `frame` (and stays).
    async fn after_preface(frame: &[u8]) -> Result<(), HandshakeError> {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(PREFACE).await.unwrap();
        client.write_all(frame).await.unwrap();
        handshake(server, None, None).await.map(drop)
    }

    /// The preface (the 24 bytes and the SETTINGS frame) is read, checked and given back
    /// whole, however small the reads; what follows it comes after, untouched. Anything
    /// else is refused.
    #[tokio::test]
    async fn the_preface_is_checked_and_replayed() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(PREFACE).await.unwrap();
        client.write_all(SETTINGS_FRAME).await.unwrap();
        client.write_all(b"\x00\x00\x00\x04").await.unwrap();
        let mut greeted = handshake(server, None, None).await.expect("a preface");
        let mut seen = Vec::new();
        let mut byte = [0u8; 5];
        let whole = PREFACE.len() + SETTINGS_FRAME.len() + 4;
        while seen.len() < whole {
            let n = greeted.read(&mut byte).await.unwrap();
            seen.extend_from_slice(&byte[..n]);
        }
        assert_eq!(&seen[..24], PREFACE);
        assert_eq!(&seen[24..24 + SETTINGS_FRAME.len()], SETTINGS_FRAME);
        assert_eq!(&seen[24 + SETTINGS_FRAME.len()..], b"\x00\x00\x00\x04");

        // The 24 bytes without their SETTINGS are not a handshake: it goes on waiting (the
        // caller's deadline ends it), as with half of a SETTINGS frame.
        for sent in [&[][..], &SETTINGS_FRAME[..5], &SETTINGS_FRAME[..12]] {
            let (mut client, server) = tokio::io::duplex(64);
            client.write_all(PREFACE).await.unwrap();
            client.write_all(sent).await.unwrap();
            let waiting = tokio::time::timeout(
                std::time::Duration::from_millis(100),
                handshake(server, None, None),
            )
            .await;
            assert!(waiting.is_err(), "{sent:?}: not past the handshake");
            drop(client);
        }
        // Another frame first (a PING) is refused; so are a SETTINGS acknowledgement and
        // SETTINGS on a stream, which do not open a connection.
        for frame in [
            &b"\x00\x00\x08\x06\x00\x00\x00\x00\x00"[..],
            &b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"[..],
            &b"\x00\x00\x00\x04\x00\x00\x00\x00\x01"[..],
        ] {
            assert!(
                matches!(after_preface(frame).await, Err(HandshakeError::NoSettings)),
                "{frame:?}"
            );
        }
        // A SETTINGS frame longer than a first frame may be is refused before its payload.
        assert!(matches!(
            after_preface(b"\x10\x00\x00\x04\x00\x00\x00\x00\x00").await,
            Err(HandshakeError::SettingsTooLarge(1_048_576))
        ));

        let (mut client, server) = tokio::io::duplex(64);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: c2m\r\n\r\n")
            .await
            .unwrap();
        assert!(matches!(
            handshake(server, None, None).await,
            Err(HandshakeError::NotHttp2)
        ));
        let (client, server) = tokio::io::duplex(64);
        drop(client);
        assert!(matches!(
            handshake(server, None, None).await,
            Err(HandshakeError::Read(_))
        ));
    }
}
