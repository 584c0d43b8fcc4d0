//! The hosted campaign service's own tokio runtime.
//!
//! Why: the campaign service keeps its SQLite connection behind one `std::sync::Mutex`, and
//! its handlers take it on whatever worker runs them — a segment count for 12 M subscribers
//! holds it for a few hundred ms, a launch's plan for longer. On the gateway's runtime every
//! such wait held a gateway worker: the SMPP binds, the HTTP accepts and the receipt pumps on
//! it stood still meanwhile (all of them, with one worker). Here the service's tasks (its
//! feedback consumer, ticker and trigger matcher, started under [`CampaignRuntime::enter`])
//! and every request to its routes ([`CampaignRuntime::serve`]) run on workers of their own;
//! a request crosses to them and its response comes back, one task hop each way.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::runtime::{EnterGuard, Runtime};
use tower::ServiceExt;

/// The runtime; dropped without blocking (from async code too), its tasks cancelled.
#[derive(Debug)]
pub(crate) struct CampaignRuntime {
    rt: Option<Runtime>,
}

impl CampaignRuntime {
    /// Starts `workers` worker threads named `campaign`.
    pub(crate) fn start(workers: usize) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name("campaign")
            .enable_all()
            .build()?;
        Ok(Self { rt: Some(rt) })
    }

    fn rt(&self) -> &Runtime {
        self.rt.as_ref().expect("present until dropped")
    }

    /// While the guard lives, `tokio::spawn` puts tasks on this runtime.
    pub(crate) fn enter(&self) -> EnterGuard<'_> {
        self.rt().enter()
    }

    /// `routes` as a fallback router of the gateway's: each request is handled on this
    /// runtime. Every campaign route (`/v1/campaign/…`, `/v1/events`, the console) is matched
    /// after the gateway's own; an unknown path gets the routes' 404 as before.
    pub(crate) fn serve(&self, routes: Router) -> Router {
        let handle = self.rt().handle().clone();
        Router::new().fallback_service(tower::service_fn(move |req: Request<Body>| {
            let routes = routes.clone();
            let handle = handle.clone();
            async move {
                let res = match handle.spawn(routes.oneshot(req)).await {
                    Ok(Ok(res)) => res,
                    Ok(Err(never)) => match never {},
                    Err(e) if e.is_panic() => {
                        tracing::error!(error = %e, "A campaign request panicked.");
                        (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
                    }
                    // Cancelled: the runtime is shutting down with the gateway.
                    Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response(),
                };
                Ok::<Response, std::convert::Infallible>(res)
            }
        }))
    }
}

impl Drop for CampaignRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use axum::routing::get;

    fn routes() -> Router {
        Router::new()
            // What a handler waiting on the service's lock does to the thread it runs on.
            .route(
                "/v1/campaign/slow",
                get(|| async {
                    std::thread::sleep(Duration::from_millis(400));
                    "done"
                }),
            )
            .route(
                "/v1/campaign/panics",
                get(|| async {
                    if true {
                        panic!("handler bug");
                    }
                    "unreachable"
                }),
            )
    }

    async fn call(app: &Router, path: &str) -> (StatusCode, String) {
        let res = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// The gateway's side is one thread here, as with one worker: a campaign handler that
    /// blocks its thread must not stop the gateway's tasks.
    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_campaign_handler_leaves_the_gateways_tasks_running() {
        let rt = CampaignRuntime::start(1).expect("runtime");
        let app = rt.serve(routes());
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = {
            let ticks = Arc::clone(&ticks);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let (status, body) = call(&app, "/v1/campaign/slow").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "done"));
        ticker.abort();
        // 400 ms at 10 ms a tick: about 40; on the gateway's thread it would be 0 or 1.
        let n = ticks.load(Ordering::Relaxed);
        assert!(n >= 10, "the gateway's task ticked only {n} times");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_handler_is_a_500_and_an_unknown_path_a_404() {
        let rt = CampaignRuntime::start(1).expect("runtime");
        let app = rt.serve(routes());
        assert_eq!(
            call(&app, "/v1/campaign/panics").await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(call(&app, "/nowhere").await.0, StatusCode::NOT_FOUND);
        // Dropped inside async code without a panic.
        drop(rt);
    }
}
