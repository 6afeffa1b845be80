//! A session's input: lines from the socket under two deadlines. A session
//! that sends nothing for the idle timeout is closed, and so is one whose
//! line does not end within [`LINE_TIMEOUT`] of its first byte, so that a
//! client trickling a byte a second cannot hold a slot either.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use super::codec::{Line, LineCodec};

/// A line must be complete this long after its first byte.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes read from the socket at a time; with the codec's cap, all a
/// session buffers.
const READ_CHUNK: usize = 4096;

#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    Line(Line),
    /// The client closed the connection.
    Closed,
    /// Nothing arrived for the idle timeout.
    Idle,
    /// A line did not end within [`LINE_TIMEOUT`].
    SlowLine,
}

pub struct LineReader<R> {
    read: R,
    codec: LineCodec,
    chunk: Box<[u8]>,
    /// Bytes of `chunk` not fed to the codec yet.
    start: usize,
    end: usize,
    last_byte: Instant,
    /// When the first byte of the current, incomplete line arrived.
    line_started: Option<Instant>,
    line_timeout: Duration,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(read: R) -> Self {
        Self::with_line_timeout(read, LINE_TIMEOUT)
    }

    pub fn with_line_timeout(read: R, line_timeout: Duration) -> Self {
        LineReader {
            read,
            codec: LineCodec::new(),
            chunk: vec![0; READ_CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
            last_byte: Instant::now(),
            line_started: None,
            line_timeout,
        }
    }

    /// The next line, or why there is none. Cancel-safe: a read dropped
    /// half-way loses nothing.
    pub async fn next(&mut self, idle: Duration) -> io::Result<Input> {
        loop {
            let pending = self.chunk.get(self.start..self.end).unwrap_or_default();
            if !pending.is_empty() {
                let (used, line) = self.codec.feed(pending);
                self.start = (self.start + used).min(self.end);
                if let Some(line) = line {
                    self.line_started = None;
                    return Ok(Input::Line(line));
                }
            }
            if self.codec.in_line() && self.line_started.is_none() {
                self.line_started = Some(self.last_byte);
            }
            let idle_at = self.last_byte + idle;
            let line_at = self.line_started.map(|t| t + self.line_timeout);
            let (deadline, slow) = match line_at {
                Some(at) if at <= idle_at => (at, true),
                _ => (idle_at, false),
            };
            match tokio::time::timeout_at(deadline, self.read.read(&mut self.chunk)).await {
                Err(_) if slow => return Ok(Input::SlowLine),
                Err(_) => return Ok(Input::Idle),
                Ok(Ok(0)) => {
                    return Ok(match self.codec.finish() {
                        Some(line) => Input::Line(line),
                        None => Input::Closed,
                    });
                }
                Ok(Ok(n)) => {
                    self.start = 0;
                    self.end = n.min(self.chunk.len());
                    self.last_byte = Instant::now();
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn text(s: &str) -> Input {
        Input::Line(Line::Text(s.into()))
    }

    #[tokio::test(start_paused = true)]
    async fn idle_and_slow_lines_time_out() {
        let idle = Duration::from_secs(300);
        let (mut client, server) = tokio::io::duplex(64);
        let mut reader = LineReader::new(server);
        client.write_all(b"uptime\rwl").await.unwrap();
        assert_eq!(reader.next(idle).await.unwrap(), text("uptime"));
        // "wl" waits for its end; a byte every second does not help.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            client.write_all(b"x").await.unwrap();
        }
        let started = Instant::now();
        assert_eq!(reader.next(idle).await.unwrap(), Input::SlowLine);
        assert_eq!(started.elapsed(), Duration::from_secs(5));

        let (mut client, server) = tokio::io::duplex(64);
        let mut reader = LineReader::new(server);
        let started = Instant::now();
        client.write_all(b"\n").await.unwrap();
        assert_eq!(reader.next(idle).await.unwrap(), text(""));
        assert_eq!(reader.next(idle).await.unwrap(), Input::Idle);
        assert_eq!(started.elapsed(), idle);
        drop(client);
        assert_eq!(reader.next(idle).await.unwrap(), Input::Closed);
    }
}
