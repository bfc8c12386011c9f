//! What one client can make the webhook hold: request bodies count against one budget across
//! all connections, and a body declared larger than `--max-body-bytes` is refused before it is
//! read. Past the budget a request gets 503 with `Retry-After`, before memory runs out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::server::error;

/// Requests up to this size may use the budget's last [`SMALL_HEADROOM`] bytes: real reviews are
/// a few kilobytes, so large uploads cannot crowd them out.
const SMALL_REQUEST: usize = 64 * 1024;
const SMALL_HEADROOM: usize = 1024 * 1024;

/// Bytes of request bodies held at once, across connections.
#[derive(Debug)]
pub struct BodyBudget {
    total: usize,
    max_body: usize,
    used: AtomicUsize,
}

/// A share of the budget, returned when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl BodyBudget {
    pub fn new(total: usize, max_body: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            total,
            max_body,
            used: AtomicUsize::new(0),
        })
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Reserves `bytes`, or `None` when they do not fit.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        let limit = if bytes > SMALL_REQUEST {
            self.total.saturating_sub(SMALL_HEADROOM)
        } else {
            self.total
        };
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&after| after <= limit)
            })
            .ok()?;
        Some(Reservation {
            budget: Arc::clone(self),
            bytes,
        })
    }

    /// A request's body, read within the budget: a declared body over the limit gets 413 at
    /// once; otherwise the declared size (or, undeclared, the limit) is reserved, or the request
    /// gets 503. The caller holds the reservation until its answer is built.
    pub async fn read(
        self: &Arc<Self>,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(Reservation, Bytes), Response> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(len) = declared.filter(|&len| len > self.max_body) {
            linger(body, self.max_body);
            return Err(self.too_large(Some(len)));
        }
        let Some(reservation) = self.reserve(declared.unwrap_or(self.max_body)) else {
            linger(body, self.max_body);
            let mut res = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "mtls-guard is holding as many request bodies as it may (--max-buffered-bytes); retry"
                    .into(),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Err(res);
        };
        match Limited::new(body, self.max_body).collect().await {
            Ok(read) => Ok((reservation, read.to_bytes())),
            Err(e) if e.is::<LengthLimitError>() => Err(self.too_large(None)),
            Err(e) => Err(error(
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {e}"),
            )),
        }
    }

    /// 413 for a body of the `declared` length, or one found too long as it was read.
    fn too_large(&self, declared: Option<usize>) -> Response {
        let size = declared.map_or("the body".into(), |len| format!("a body of {len} bytes"));
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{size} is over --max-body-bytes {}", self.max_body),
        )
    }
}

/// How long a refused body is read and thrown away after the answer.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and discards up to `bytes` of a refused body for a moment, holding none of it: closing
/// a connection with unread data resets it, and the reset can destroy the answer on its way
/// to a client that is still sending.
fn linger(body: Body, bytes: usize) {
    use futures::StreamExt;
    tokio::spawn(async move {
        let mut data = body.into_data_stream();
        let mut read = 0;
        let drain = async {
            while let Some(Ok(chunk)) = data.next().await {
                read += chunk.len();
                if read > bytes {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_what_does_not_fit_and_frees_on_drop() {
        let budget = BodyBudget::new(4 * 1024 * 1024, 3 * 1024 * 1024);
        let big = budget.reserve(2 * 1024 * 1024).unwrap();
        assert!(
            budget.reserve(2 * 1024 * 1024).is_none(),
            "large ones leave the headroom"
        );
        let small = budget.reserve(2 * 1024).unwrap();
        assert_eq!(budget.used(), 2 * 1024 * 1024 + 2 * 1024);
        drop((big, small));
        assert_eq!(budget.used(), 0);
        assert!(budget.reserve(2 * 1024 * 1024).is_some());
    }
}
