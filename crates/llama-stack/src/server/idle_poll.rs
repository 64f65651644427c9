//! Idle polling: after answering, a connection keeps reading for its next request for a short
//! while before its task sleeps.
//!
//! A task that sleeps waits in `epoll`, and its CPU goes idle; the next request must then wake
//! that CPU, which on a virtual machine costs tens of microseconds, more than answering a
//! simple request. A client that sends its next request right after reading a response (a
//! keep-alive client in a loop, a load balancer's pool) finds the connection still reading
//! and is answered without that wake-up.
//!
//! The poll is bounded three ways, so that it costs nothing when it cannot help:
//! - it runs only on the server's one open connection: with more, a request may already wait
//!   on another one, which a polling task would keep waiting;
//! - it runs only while no request is in flight (a response body still streaming counts), so
//!   it never delays a response;
//! - a connection whose client took longer than the window to send its last request does not
//!   poll again until a client turnaround shorter than the window is seen.

use std::io::{self, Read};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What the server's connections share: how many are open and how many requests are in flight.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    connections: AtomicUsize,
    in_flight: AtomicUsize,
}

impl Activity {
    /// Counts one request as in flight until the returned guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Whether a poll could delay other work: another connection is open or a request is
    /// in flight.
    fn busy(&self) -> bool {
        self.connections.load(Ordering::Relaxed) > 1 || self.in_flight.load(Ordering::Relaxed) > 0
    }
}

/// One request in flight; dropped when its response body ends.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in flight until it is dropped.
pub(crate) struct GuardedBody {
    body: Body,
    _in_flight: InFlight,
}

impl GuardedBody {
    /// Wraps `body`, holding `in_flight` for as long as the body lives.
    pub(crate) fn wrap(body: Body, in_flight: InFlight) -> Body {
        Body::new(GuardedBody {
            body,
            _in_flight: in_flight,
        })
    }
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A server-side TCP stream that polls for the next request after writing a response.
pub(crate) struct IdlePoll {
    stream: TcpStream,
    window: Duration,
    activity: Arc<Activity>,
    /// When the last response bytes were written, until the next request's first bytes arrive.
    wrote_at: Option<Instant>,
    /// A write happened since the last poll.
    armed: bool,
    /// The client's last turnaround fit in the window (or none was seen yet).
    promising: bool,
}

impl IdlePoll {
    /// Wraps `stream`; a zero `window` turns polling off.
    pub(crate) fn new(stream: TcpStream, window: Duration, activity: Arc<Activity>) -> IdlePoll {
        activity.connections.fetch_add(1, Ordering::Relaxed);
        IdlePoll {
            stream,
            window,
            activity,
            wrote_at: None,
            armed: false,
            promising: true,
        }
    }

    fn wrote(&mut self) {
        if !self.window.is_zero() {
            self.wrote_at = Some(Instant::now());
            self.armed = true;
        }
    }

    /// Data arrived: remember whether the client's turnaround fit in the window.
    fn arrived(&mut self) {
        if let Some(at) = self.wrote_at.take() {
            self.promising = at.elapsed() <= self.window;
        }
    }

    /// Reads the socket directly until data comes, the window ends or other work starts.
    /// `None`: nothing came; the caller's waker is already registered.
    fn poll_socket(&mut self, buf: &mut ReadBuf<'_>) -> Option<io::Result<()>> {
        if self.activity.busy() {
            return None;
        }
        let started = Instant::now();
        let socket = socket2::SockRef::from(&self.stream);
        let dst = buf.initialize_unfilled();
        loop {
            match (&*socket).read(dst) {
                Ok(n) => {
                    buf.advance(n);
                    return Some(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(e)),
            }
            if self.activity.busy() || started.elapsed() >= self.window {
                return None;
            }
            std::hint::spin_loop();
        }
    }
}

impl Drop for IdlePoll {
    fn drop(&mut self) {
        self.activity.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for IdlePoll {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Pending => {
                if !std::mem::take(&mut this.armed) || !this.promising {
                    return Poll::Pending;
                }
                match this.poll_socket(buf) {
                    Some(result) => {
                        this.arrived();
                        Poll::Ready(result)
                    }
                    None => Poll::Pending,
                }
            }
            ready => {
                this.arrived();
                ready
            }
        }
    }
}

impl AsyncWrite for IdlePoll {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(_))) {
            this.wrote();
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(_))) {
            this.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::io::Write;
    use std::task::Waker;
    use std::thread;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server-side stream wrapped with `window` and the client's blocking end.
    async fn pair(window: Duration) -> (IdlePoll, Arc<Activity>, std::net::TcpStream) {
        let activity = Arc::<Activity>::default();
        let (io, client) = connect(window, &activity).await;
        (io, activity, client)
    }

    /// One more connection to a server sharing `activity`.
    async fn connect(
        window: Duration,
        activity: &Arc<Activity>,
    ) -> (IdlePoll, std::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (IdlePoll::new(server, window, activity.clone()), client)
    }

    /// The client sends `bytes` from another thread after `delay`.
    fn send_later(
        client: &std::net::TcpStream,
        delay: Duration,
        bytes: &'static [u8],
    ) -> thread::JoinHandle<()> {
        let mut client = client.try_clone().unwrap();
        thread::spawn(move || {
            thread::sleep(delay);
            client.write_all(bytes).unwrap();
        })
    }

    /// Polls the read once, without a task to wake.
    fn poll_once(io: &mut IdlePoll, out: &mut [u8]) -> Poll<usize> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut buf = ReadBuf::new(out);
        match Pin::new(io).poll_read(&mut cx, &mut buf) {
            Poll::Ready(result) => {
                result.unwrap();
                Poll::Ready(buf.filled().len())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    #[tokio::test]
    async fn the_next_request_is_read_within_the_poll_after_a_response() {
        let (mut io, _activity, client) = pair(Duration::from_secs(10)).await;
        io.write_all(b"response").await.unwrap();
        let sender = send_later(&client, Duration::from_millis(20), b"next");
        let mut out = [0u8; 16];
        assert_eq!(poll_once(&mut io, &mut out), Poll::Ready(4));
        assert_eq!(&out[..4], b"next");
        sender.join().unwrap();
    }

    #[tokio::test]
    async fn nothing_is_polled_before_a_response_or_when_turned_off() {
        let (mut io, _activity, client) = pair(Duration::from_secs(10)).await;
        let sender = send_later(&client, Duration::from_millis(200), b"first");
        let mut out = [0u8; 16];
        assert_eq!(poll_once(&mut io, &mut out), Poll::Pending);
        assert_eq!(io.read(&mut out).await.unwrap(), 5);
        sender.join().unwrap();

        let (mut io, _activity, client) = pair(Duration::ZERO).await;
        io.write_all(b"response").await.unwrap();
        let sender = send_later(&client, Duration::from_millis(200), b"next");
        assert_eq!(poll_once(&mut io, &mut out), Poll::Pending);
        assert_eq!(io.read(&mut out).await.unwrap(), 4);
        assert_eq!(&out[..4], b"next");
        sender.join().unwrap();
    }

    #[tokio::test]
    async fn a_request_in_flight_or_another_open_connection_stops_the_poll() {
        let (mut io, activity, client) = pair(Duration::from_secs(10)).await;
        let mut out = [0u8; 16];
        let in_flight = activity.enter();
        io.write_all(b"response").await.unwrap();
        let sender = send_later(&client, Duration::from_millis(200), b"next");
        assert_eq!(poll_once(&mut io, &mut out), Poll::Pending);
        assert_eq!(io.read(&mut out).await.unwrap(), 4);
        sender.join().unwrap();
        drop(in_flight);

        let other = connect(Duration::from_secs(10), &activity).await;
        io.write_all(b"response").await.unwrap();
        let sender = send_later(&client, Duration::from_millis(200), b"again");
        assert_eq!(poll_once(&mut io, &mut out), Poll::Pending);
        assert_eq!(io.read(&mut out).await.unwrap(), 5);
        sender.join().unwrap();

        // Once the other connection closes, polling resumes.
        drop(other);
        io.write_all(b"response").await.unwrap();
        let sender = send_later(&client, Duration::from_millis(20), b"polled");
        assert_eq!(poll_once(&mut io, &mut out), Poll::Ready(6));
        sender.join().unwrap();
    }

    #[tokio::test]
    async fn a_slow_client_is_not_polled_for_until_it_is_quick_again() {
        let (mut io, _activity, client) = pair(Duration::from_millis(50)).await;
        let mut out = [0u8; 16];
        // Slower than the window: the poll gives up, and the turnaround is remembered.
        io.write_all(b"response").await.unwrap();
        let sender = send_later(&client, Duration::from_millis(300), b"slow");
        assert_eq!(poll_once(&mut io, &mut out), Poll::Pending);
        assert_eq!(io.read(&mut out).await.unwrap(), 4);
        sender.join().unwrap();
        assert!(!io.promising);

        // No poll for this one; its quick turnaround (measured against a wider window here)
        // makes the next one polled again.
        io.write_all(b"response").await.unwrap();
        let sender = send_later(&client, Duration::from_millis(10), b"quick");
        assert_eq!(poll_once(&mut io, &mut out), Poll::Pending);
        io.window = Duration::from_secs(10);
        assert_eq!(io.read(&mut out).await.unwrap(), 5);
        sender.join().unwrap();
        assert!(io.promising);

        io.write_all(b"response").await.unwrap();
        let sender = send_later(&client, Duration::from_millis(10), b"polled");
        assert_eq!(poll_once(&mut io, &mut out), Poll::Ready(6));
        sender.join().unwrap();
    }

    #[tokio::test]
    async fn a_response_body_keeps_its_request_in_flight_until_dropped() {
        let activity = Arc::<Activity>::default();
        let body = GuardedBody::wrap(Body::from("done"), activity.enter());
        assert!(activity.busy());
        let bytes = axum::body::to_bytes(body, 64).await.unwrap();
        assert_eq!(&bytes[..], b"done");
        assert!(!activity.busy());
    }
}
