//! The byte protocol between the pool and `worker.py`.
//!
//! Every message is a frame: a `u32` little-endian payload length, then the
//! payload. Paths travel as raw bytes (the worker decodes them with
//! `os.fsdecode`), so file names that are not valid UTF-8 survive.
//!
//! * hello (worker → pool, once): `KOLOSAL-WORKER 1 <magic hex>`.
//! * request (pool → worker): `u32 id, u32 optimize, u8 mode, u8 attempt,
//!   u32 len(source), source, cfile`.
//! * response (worker → pool): `u32 id, u8 status`, then per status:
//!   0 written (empty); 1 syntax error: `u32 line (u32::MAX = unknown),
//!   u32 len(path), path, UTF-8 message`; 2 failed: UTF-8 message;
//!   3 left to the interpreter (compiling warned; no pyc): UTF-8 warnings;
//!   4 written with warnings: UTF-8 warnings; 5 rejected by `compile()`
//!   (not a `SyntaxError`): UTF-8 message; 6 written, no warnings, with
//!   the code-cache payload (only when the worker runs with
//!   `--return-body`): 32-byte SHA-256 of the source bytes compiled, then
//!   the marshalled body (the pyc without its header).
//! * The hello goes on with ` <major.minor> <hex of sys.version>`
//!   ([`super::code_cache::Identity::from_hello`]).

use crate::pyc::InvalidationMode;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// What the worker says first; anything else means it is not our worker.
pub(crate) const HELLO_PREFIX: &[u8] = b"KOLOSAL-WORKER 1 ";

/// The largest frame the pool accepts from a worker. Responses carry one
/// path and one line of text; anything bigger is a corrupt stream.
pub(crate) const MAX_FRAME: u32 = 16 << 20;

/// "No line number" in a syntax-error response.
const NO_LINE: u32 = u32::MAX;

/// One compile request as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request<'a> {
    /// Echoed back in the response.
    pub id: u32,
    /// Optimisation level handed to `compile()`.
    pub optimize: u32,
    /// Invalidation mode of the pyc.
    pub mode: InvalidationMode,
    /// 0 on the first try, 1 on the retry after a crash.
    pub attempt: u8,
    /// Source path, raw bytes.
    pub source: &'a OsStr,
    /// Target pyc path, raw bytes.
    pub cfile: &'a OsStr,
}

impl Request<'_> {
    /// The framed bytes (length prefix included), or `None` when the paths
    /// are too long to frame.
    pub(crate) fn encode(&self) -> Option<Vec<u8>> {
        let source = self.source.as_bytes();
        let cfile = self.cfile.as_bytes();
        let payload_len = 4 + 4 + 1 + 1 + 4 + source.len() + cfile.len();
        let payload_len32 = u32::try_from(payload_len)
            .ok()
            .filter(|&n| n <= MAX_FRAME)?;
        let mut out = Vec::with_capacity(4 + payload_len);
        out.extend_from_slice(&payload_len32.to_le_bytes());
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.optimize.to_le_bytes());
        out.push(mode_byte(self.mode));
        out.push(self.attempt);
        out.extend_from_slice(&(source.len() as u32).to_le_bytes());
        out.extend_from_slice(source);
        out.extend_from_slice(cfile);
        Some(out)
    }
}

/// The worker's code for an invalidation mode (see `worker.py`).
fn mode_byte(mode: InvalidationMode) -> u8 {
    match mode {
        InvalidationMode::Timestamp => 0,
        InvalidationMode::CheckedHash => 1,
        InvalidationMode::UncheckedHash => 2,
    }
}

/// What the worker reports for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The pyc was written.
    Written,
    /// The source does not compile.
    SyntaxError {
        /// `SyntaxError.filename` (the source path unless the error names another).
        path: PathBuf,
        /// `SyntaxError.lineno`.
        line: Option<u32>,
        /// `"<ExceptionType>: <msg>"`.
        message: String,
    },
    /// Anything else went wrong (I/O, refused target, ...): one line.
    Failed(String),
    /// Compiling showed or raised a warning; no pyc was written. The
    /// warnings as printed.
    LeftToInterpreter(String),
    /// The pyc was written; compiling showed these warnings.
    WrittenWarned(String),
    /// `compile()` raised something other than `SyntaxError`: one line.
    Rejected(String),
    /// The pyc was written, compiling showed no warning: the source's
    /// SHA-256 (32 bytes) and the code body, for the code cache.
    WrittenCached(Vec<u8>),
}

/// A decoded response frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    /// The request id it answers.
    pub id: u32,
    /// The result.
    pub reply: Reply,
}

impl Response {
    /// Decodes a response payload (without its length prefix); `None` when
    /// the bytes are not a well-formed response.
    pub(crate) fn decode(payload: &[u8]) -> Option<Response> {
        let id = u32::from_le_bytes(payload.get(0..4)?.try_into().ok()?);
        let status = *payload.get(4)?;
        let body = &payload[5..];
        let reply = match status {
            0 if body.is_empty() => Reply::Written,
            1 => {
                let line = u32::from_le_bytes(body.get(0..4)?.try_into().ok()?);
                let plen = u32::from_le_bytes(body.get(4..8)?.try_into().ok()?) as usize;
                let path = body.get(8..8usize.checked_add(plen)?)?;
                let message = &body[8 + plen..];
                Reply::SyntaxError {
                    path: PathBuf::from(OsStr::from_bytes(path)),
                    line: (line != NO_LINE).then_some(line),
                    message: String::from_utf8_lossy(message).into_owned(),
                }
            }
            2 => Reply::Failed(String::from_utf8_lossy(body).into_owned()),
            3 => Reply::LeftToInterpreter(String::from_utf8_lossy(body).into_owned()),
            4 => Reply::WrittenWarned(String::from_utf8_lossy(body).into_owned()),
            5 => Reply::Rejected(String::from_utf8_lossy(body).into_owned()),
            6 if body.len() > 32 => Reply::WrittenCached(body.to_vec()),
            _ => return None,
        };
        Some(Response { id, reply })
    }
}

/// Reads one frame's payload. `Ok(None)` at a clean end of stream (EOF
/// before the first length byte); an error for a truncated or oversized
/// frame.
pub(crate) fn read_frame(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    Ok(Some(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let req = Request {
            id: 7,
            optimize: 2,
            mode: InvalidationMode::CheckedHash,
            attempt: 1,
            source: OsStr::from_bytes(b"a\xff.py"),
            cfile: OsStr::from_bytes(b"c.pyc"),
        };
        let bytes = req.encode().unwrap();
        let mut expected = vec![];
        expected.extend_from_slice(&(4u32 + 4 + 1 + 1 + 4 + 5 + 5).to_le_bytes());
        expected.extend_from_slice(&7u32.to_le_bytes());
        expected.extend_from_slice(&2u32.to_le_bytes());
        expected.extend_from_slice(&[1, 1]);
        expected.extend_from_slice(&5u32.to_le_bytes());
        expected.extend_from_slice(b"a\xff.pyc.pyc");
        assert_eq!(bytes, expected);
    }

    #[test]
    fn decode_responses() {
        assert_eq!(
            Response::decode(&[1, 0, 0, 0, 0]),
            Some(Response {
                id: 1,
                reply: Reply::Written
            })
        );
        let mut p = vec![2, 0, 0, 0, 1];
        p.extend_from_slice(&3u32.to_le_bytes());
        p.extend_from_slice(&2u32.to_le_bytes());
        p.extend_from_slice(b"\xffxSyntaxError: bad");
        assert_eq!(
            Response::decode(&p),
            Some(Response {
                id: 2,
                reply: Reply::SyntaxError {
                    path: PathBuf::from(OsStr::from_bytes(b"\xffx")),
                    line: Some(3),
                    message: "SyntaxError: bad".into()
                }
            })
        );
        let mut p = vec![2, 0, 0, 0, 1];
        p.extend_from_slice(&u32::MAX.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            Response::decode(&p),
            Some(Response {
                reply: Reply::SyntaxError { line: None, .. },
                ..
            })
        ));
        // Truncated or unknown payloads are rejected, never panic.
        assert_eq!(Response::decode(&[1, 0, 0]), None);
        assert_eq!(Response::decode(&[1, 0, 0, 0, 9]), None);
        assert_eq!(
            Response::decode(b"\x03\0\0\0\x03w"),
            Some(Response {
                id: 3,
                reply: Reply::LeftToInterpreter("w".into())
            })
        );
        assert_eq!(
            Response::decode(b"\x03\0\0\0\x05e"),
            Some(Response {
                id: 3,
                reply: Reply::Rejected("e".into())
            })
        );
        assert_eq!(Response::decode(&[1, 0, 0, 0, 0, 1]), None);
        let mut p = vec![2, 0, 0, 0, 1];
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Response::decode(&p), None);
    }

    #[test]
    fn frames() {
        let mut data: &[u8] = &[2, 0, 0, 0, b'h', b'i', 0, 0];
        assert_eq!(read_frame(&mut data).unwrap(), Some(b"hi".to_vec()));
        assert!(read_frame(&mut data).is_err()); // truncated length
        let mut empty: &[u8] = &[];
        assert_eq!(read_frame(&mut empty).unwrap(), None);
        let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut huge).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = Response::decode(&bytes);
        }
    }
}
