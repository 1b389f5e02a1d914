//! Load shedding and deadlines, one tower layer ([`LimitsLayer`]) around every call.
//!
//! Load shedding: at most `--max-in-flight` calls are handled at once across all
//! connections; a call beyond that is answered at once with RESOURCE_EXHAUSTED instead of
//! queueing without bound, so latency stays flat under overload and clients back off.
//!
//! A server-streaming call holds its slot only until its stream is set up (the handler
//! returns), not for the stream's life, so open factory subscriptions do not use up the
//! budget. Health checks and reflection are never shed, so an overloaded server still
//! reports itself alive.
//!
//! A call takes its slot when its request message has arrived whole ([`Admit`]), not when
//! its headers do: the slots are for work, and a client that opens calls and sends their
//! messages slowly (or never) would otherwise hold slots it does no work with, and with a
//! few connections shed every other client's calls until its deadlines passed. Such a call
//! now holds only its HTTP/2 stream (at most `--concurrency-per-connection` per connection)
//! until its deadline answers it. A call shed when its message arrives is answered as one
//! shed on arrival (RESOURCE_EXHAUSTED, `OVERLOADED`): the shed status is the body's error,
//! which tonic answers as it is, and the handler never runs.
//!
//! Deadlines: every call, health included, is answered DEADLINE_EXCEEDED once its budget
//! has passed without an answer; [`Deadlines`] says what the budget is and why
//! `RunPlanning`'s is longer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use std::sync::Mutex;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::BoxBody;

use crate::status::{edge_status, Edge};

/// Both limits, as one tower layer around every call.
#[derive(Clone)]
pub struct LimitsLayer {
    slots: Arc<Semaphore>,
    deadlines: Deadlines,
}

impl LimitsLayer {
    pub fn new(max_in_flight: usize, deadlines: Deadlines) -> Self {
        LimitsLayer {
            slots: Arc::new(Semaphore::new(max_in_flight.max(1))),
            deadlines,
        }
    }
}

impl<S> tower_layer::Layer<S> for LimitsLayer {
    type Service = Limits<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Limits {
            inner,
            limits: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Limits<S> {
    inner: S,
    limits: LimitsLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower_service::Service<http::Request<BoxBody>> for Limits<S>
where
    S: tower_service::Service<http::Request<BoxBody>, Response = http::Response<BoxBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<BoxBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<BoxBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // A Uri clone shares its bytes (no copy per call on the hot path).
        let uri = req.uri().clone();
        let path = uri.path();
        // Health and reflection are never shed; every call has a deadline. A c2m call
        // takes its slot once its message is whole (the module docs say why); the slot is
        // kept here, to be let go when the call is answered.
        let permit = Arc::new(Mutex::new(None));
        if path.starts_with("/c2m.v1.") {
            // A full house sheds at once, without waiting for the message, as before.
            if self.limits.slots.available_permits() == 0 {
                tracing::debug!(%path, "shed: too many calls in flight");
                return Box::pin(async { Ok(edge_status(Edge::Overloaded).into_http()) });
            }
            let admit = Admit::new(self.limits.slots.clone(), permit.clone());
            req = req.map(|body| BoxBody::new(admit.around(body)));
        }
        let (limit, set_by) = self.limits.deadlines.limit(path, req.headers());
        // The deadline is taken here, not when the future below is first polled: tonic
        // still runs its own timer for a client's `grpc-timeout`, outside this layer, and
        // starts it just after this `call` returns. Started first, this deadline is never
        // later than tonic's, so the two cannot fall either side of a timer tick and let
        // tonic answer first (CANCELLED "Timeout expired", without the reason and
        // metadata); taken at the first poll, under load, they did.
        let deadline = Instant::now().checked_add(limit);
        if let Some(at) = deadline {
            req.extensions_mut().insert(CallDeadline { at, limit });
        }
        let call = inner.call(req);
        Box::pin(async move {
            let answered = match deadline {
                Some(at) => tokio::time::timeout_at(at.into(), call).await,
                None => Ok(call.await),
            };
            let answer = match answered {
                Ok(answer) => answer,
                Err(_) => {
                    let path = uri.path();
                    tracing::debug!(%path, ?limit, set_by = set_by.as_str(), "deadline passed");
                    Ok(edge_status(Edge::DeadlineExceeded { limit, set_by }).into_http())
                }
            };
            // The slot (if the message arrived and took one) is free once the call is
            // answered; the body may outlive the call, its slot may not.
            drop(permit.lock().map(|mut p| p.take()));
            answer
        })
    }
}

/// Where a request's first gRPC message stands: its 5-byte prefix (compression flag and
/// length) being read, then its payload being counted.
#[derive(Debug, Clone, Copy)]
enum Message {
    Prefix { have: usize, len: [u8; 4] },
    Payload { left: u64 },
    Whole,
}

/// Takes a call's slot when its request's first message has arrived whole, by watching the
/// request body's bytes as tonic reads them (see the module docs). When no slot is free
/// then, the body ends in the shed status, which tonic answers as the call's status, so
/// the handler never runs. A body that ends before its message is whole takes no slot:
/// tonic refuses it without running the handler.
struct Admit {
    slots: Arc<Semaphore>,
    held: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
    message: Message,
}

impl Admit {
    fn new(slots: Arc<Semaphore>, held: Arc<Mutex<Option<OwnedSemaphorePermit>>>) -> Self {
        Admit {
            slots,
            held,
            message: Message::Prefix {
                have: 0,
                len: [0; 4],
            },
        }
    }

    fn around(self, body: BoxBody) -> Admitted {
        Admitted { body, admit: self }
    }

    /// Counts `data` into the message; true once it is whole.
    fn count(&mut self, mut data: &[u8]) -> bool {
        loop {
            match &mut self.message {
                Message::Whole => return true,
                Message::Prefix { have, len } => {
                    let Some((&b, rest)) = data.split_first() else {
                        return false;
                    };
                    data = rest;
                    // Byte 0 is the compression flag; 1-4 the big-endian length.
                    if *have > 0 {
                        len[*have - 1] = b;
                    }
                    *have += 1;
                    if *have == 5 {
                        self.message = Message::Payload {
                            left: u64::from(u32::from_be_bytes(*len)),
                        };
                    }
                }
                Message::Payload { left } => {
                    let take = (*left).min(data.len() as u64);
                    *left -= take;
                    data = &data[take as usize..];
                    if *left == 0 {
                        self.message = Message::Whole;
                        return true;
                    }
                    if data.is_empty() {
                        return false;
                    }
                }
            }
        }
    }

    /// Takes the slot; the shed status when none is free.
    fn take_slot(&mut self) -> Result<(), tonic::Status> {
        match self.slots.clone().try_acquire_owned() {
            Ok(p) => {
                if let Ok(mut held) = self.held.lock() {
                    *held = Some(p);
                }
                Ok(())
            }
            Err(_) => {
                tracing::debug!("shed: too many calls in flight when the message arrived");
                Err(edge_status(Edge::Overloaded))
            }
        }
    }
}

/// A request body that takes its call's slot as its first message completes ([`Admit`]).
struct Admitted {
    body: BoxBody,
    admit: Admit,
}

impl hyper::body::Body for Admitted {
    type Data = hyper::body::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let frame = match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if matches!(this.admit.message, Message::Whole) {
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(data) = frame.data_ref() {
            if this.admit.count(data) {
                if let Err(shed) = this.admit.take_slot() {
                    return Poll::Ready(Some(Err(shed)));
                }
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The one call whose budget is longer: it runs a solver for up to `--plan-time-limit`.
const RUN_PLANNING: &str = "/c2m.v1.PlanningService/RunPlanning";

/// Request deadlines: a call whose handler has not answered within its budget is answered
/// with DEADLINE_EXCEEDED (reason `DEADLINE_EXCEEDED`, metadata `limitMs`, `setBy`).
///
/// The budget is `--request-timeout`, except for `RunPlanning`, which gets the planning
/// time limit on top: a cycle that uses its whole time limit (what a hard scenario does)
/// must not be cut by the timeout meant for ordinary calls, as it was with one blanket
/// timeout of 30 s over a 30 s time limit. A client's own `grpc-timeout` shortens the
/// budget, never lengthens it. As with tonic's own timeout, which this replaces (it
/// answered CANCELLED, not the code the gRPC spec gives a passed deadline), the budget
/// covers a streaming call only until its stream is set up.
#[derive(Clone)]
pub struct Deadlines {
    request: Duration,
    planning: Duration,
}

impl Deadlines {
    pub fn new(request_timeout: Duration, plan_time_limit: Duration) -> Self {
        Deadlines {
            request: request_timeout,
            planning: request_timeout.saturating_add(plan_time_limit),
        }
    }

    /// The server's own budget for a call to `path`.
    fn budget(&self, path: &str) -> Duration {
        if path == RUN_PLANNING {
            self.planning
        } else {
            self.request
        }
    }

    /// The budget of one call, and who set it: the client's deadline when it is shorter.
    fn limit(&self, path: &str, headers: &http::HeaderMap) -> (Duration, SetBy) {
        let server = self.budget(path);
        match headers
            .get("grpc-timeout")
            .and_then(|v| grpc_timeout(v.to_str().ok()?))
        {
            Some(client) if client < server => (client, SetBy::Client),
            _ => (server, SetBy::Server),
        }
    }
}

/// When a call is answered DEADLINE_EXCEEDED, and its budget: in every call's request
/// extensions (tonic hands them to the handler's `Request`), so a handler whose work can
/// outlast the budget (`GetAdvice`'s scan) ends it in time and answers with what it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallDeadline {
    pub at: Instant,
    pub limit: Duration,
}

/// Whose deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetBy {
    /// `--request-timeout` (plus the planning time limit for `RunPlanning`).
    Server,
    /// The call's own `grpc-timeout`.
    Client,
}

impl SetBy {
    pub fn as_str(self) -> &'static str {
        match self {
            SetBy::Server => "server",
            SetBy::Client => "client",
        }
    }
}

/// A `grpc-timeout` header's value: one to eight digits and a unit (`H`, `M`, `S`, `m`,
/// `u`, `n`), per the gRPC over HTTP/2 spec; `None` for anything else (then the server's
/// budget applies alone, as tonic does).
fn grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper::body::{Bytes, Frame};

    /// A request body sent in the given parts.
    fn body_in(parts: &[&[u8]]) -> BoxBody {
        let frames: Vec<Result<Frame<Bytes>, tonic::Status>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::copy_from_slice(p))))
            .collect();
        BoxBody::new(http_body_util::StreamBody::new(tokio_stream::iter(frames)))
    }

    /// A gRPC message: flag, big-endian length, payload.
    fn message(payload: &[u8]) -> Vec<u8> {
        let mut m = vec![0];
        m.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        m.extend_from_slice(payload);
        m
    }

    /// A call takes its slot when the last byte of its first message arrives, however the
    /// message is split (the prefix itself in parts); a message that arrives when the slot
    /// is taken ends its body in the shed status, with its reason; and a body that ends
    /// before its message is whole takes nothing.
    #[tokio::test]
    async fn a_call_takes_its_slot_when_its_message_is_whole() {
        let slots = Arc::new(Semaphore::new(1));
        let m = message(b"hello");
        let held = Arc::new(Mutex::new(None));
        let mut a =
            Admit::new(slots.clone(), held.clone()).around(body_in(&[&m[..2], &m[2..6], &m[6..9]]));
        for _ in 0..3 {
            a.frame().await.expect("a frame").expect("passed on");
            assert_eq!(slots.available_permits(), 1, "not whole yet");
        }
        assert!(
            a.frame().await.is_none(),
            "four of five payload bytes, and the end"
        );
        assert!(
            held.lock().unwrap().is_none(),
            "a cut message takes no slot"
        );
        let mut a = Admit::new(slots.clone(), held.clone()).around(body_in(&[&m]));
        a.frame().await.expect("a frame").expect("passed on");
        assert_eq!(slots.available_permits(), 0, "whole: the slot is taken");
        assert!(held.lock().unwrap().is_some());

        let mut b = Admit::new(slots.clone(), Arc::new(Mutex::new(None))).around(body_in(&[
            &m[..7],
            &m[7..],
            b"more",
        ]));
        b.frame().await.expect("a frame").expect("passed on");
        let shed = b.frame().await.expect("a frame").expect_err("no slot left");
        assert_eq!(shed.code(), tonic::Code::ResourceExhausted);
        let info = tonic_types::StatusExt::get_error_details(&shed)
            .error_info()
            .cloned()
            .expect("ErrorInfo");
        assert_eq!(info.reason, "OVERLOADED");

        drop(held.lock().unwrap().take());
        assert_eq!(slots.available_permits(), 1, "answered: the slot is free");
        let mut empty = Admit::new(slots.clone(), Arc::new(Mutex::new(None))).around(body_in(&[]));
        assert!(empty.frame().await.is_none());
        let mut zero = Admit::new(slots.clone(), held.clone()).around(body_in(&[&message(b"")]));
        zero.frame().await.expect("a frame").expect("passed on");
        assert_eq!(
            slots.available_permits(),
            0,
            "an empty message is whole at its prefix"
        );
    }

    #[test]
    fn grpc_timeout_reads_every_unit_and_refuses_the_rest() {
        assert_eq!(grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(grpc_timeout("30S"), Some(Duration::from_secs(30)));
        assert_eq!(grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(
            grpc_timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(grpc_timeout("1n"), Some(Duration::from_nanos(1)));
        for bad in [
            "",
            "S",
            "5",
            "123456789S",
            "5s",
            "-5S",
            "5.0S",
            "+5S",
            "5 S",
        ] {
            assert_eq!(grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn run_planning_gets_the_time_limit_on_top_and_the_client_only_shortens() {
        let d = Deadlines::new(Duration::from_secs(30), Duration::from_secs(30));
        let none = http::HeaderMap::new();
        let plan = "/c2m.v1.PlanningService/RunPlanning";
        let get = "/c2m.v1.CampaignService/GetCampaign";
        assert_eq!(
            d.limit(plan, &none),
            (Duration::from_secs(60), SetBy::Server)
        );
        assert_eq!(
            d.limit(get, &none),
            (Duration::from_secs(30), SetBy::Server)
        );
        let mut short = http::HeaderMap::new();
        short.insert("grpc-timeout", "5S".parse().unwrap());
        assert_eq!(
            d.limit(plan, &short),
            (Duration::from_secs(5), SetBy::Client)
        );
        let mut long = http::HeaderMap::new();
        long.insert("grpc-timeout", "2H".parse().unwrap());
        assert_eq!(
            d.limit(get, &long),
            (Duration::from_secs(30), SetBy::Server)
        );
        let mut junk = http::HeaderMap::new();
        junk.insert("grpc-timeout", "soon".parse().unwrap());
        assert_eq!(
            d.limit(get, &junk),
            (Duration::from_secs(30), SetBy::Server)
        );
    }
}
