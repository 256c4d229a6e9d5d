//! A plain (non-event-stream) response body passed through as it comes, counted and logged.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::stream::StreamLog;
use crate::metrics::{CloseReason, Direction};
use crate::upstream::{BoxError, OriginBody};

pin_project_lite::pin_project! {
    pub struct Logged {
        #[pin]
        inner: OriginBody,
        log: StreamLog,
    }
}

impl Logged {
    pub fn new(inner: OriginBody, mut log: StreamLog) -> Self {
        if inner.is_end_stream() {
            log.close(CloseReason::UpstreamEnd);
        }
        Logged { inner, log }
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.log.forwarded(Direction::Down, 0, data.len() as u64);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.log.close(CloseReason::UpstreamError);
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => {
                this.log.close(CloseReason::UpstreamEnd);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
