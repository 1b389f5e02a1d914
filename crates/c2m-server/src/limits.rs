//! Load shedding: at most `--max-in-flight` calls are handled at once across all
//! connections; a call beyond that is answered at once with RESOURCE_EXHAUSTED instead of
//! queueing without bound, so latency stays flat under overload and clients back off.
//!
//! A server-streaming call holds its slot only until its stream is set up (the handler
//! returns), not for the stream's life, so open factory subscriptions do not use up the
//! budget. Health checks and reflection are never shed, so an overloaded server still
//! reports itself alive.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tonic::body::BoxBody;

use crate::status::{edge_status, Edge};

#[derive(Clone)]
pub struct ShedLayer(pub Arc<Semaphore>);

impl ShedLayer {
    pub fn new(max_in_flight: usize) -> Self {
        ShedLayer(Arc::new(Semaphore::new(max_in_flight.max(1))))
    }
}

impl<S> tower_layer::Layer<S> for ShedLayer {
    type Service = Shed<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            slots: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    slots: Arc<Semaphore>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower_service::Service<http::Request<BoxBody>> for Shed<S>
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

    fn call(&mut self, req: http::Request<BoxBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !req.uri().path().starts_with("/c2m.v1.") {
            return Box::pin(inner.call(req));
        }
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Box::pin(async move {
                let r = inner.call(req).await;
                drop(permit);
                r
            }),
            Err(_) => {
                tracing::debug!(path = %req.uri().path(), "shed: too many calls in flight");
                Box::pin(async { Ok(edge_status(Edge::Overloaded).into_http()) })
            }
        }
    }
}
