//! What a monitor sends, on arbitrary bytes: framed into lines as the client frames them
//! (a `LinesCodec` with a length limit; an over-long or non-UTF-8 line ends the
//! connection), then each line decoded as the client's reader does
//! (`backends::qmp::fuzzing::decode_line`).
//!
//! It must never panic, and the note kept for a line it cannot use must be short: notes
//! are kept and shown, and a line may be 16 MiB.

#![no_main]

use backends::qmp::fuzzing::decode_line;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, LinesCodec};

/// The longest note about one line.
const MAX_NOTE_BYTES: usize = 1024;

/// The client allows 16 MiB a line; a small limit reaches the over-long path quickly.
const MAX_LINE: usize = 4096;

fn check(line: &str) {
    // The reader skips blank lines before decoding.
    if line.trim().is_empty() {
        return;
    }
    if let Err(note) = decode_line(line) {
        assert!(note.len() <= MAX_NOTE_BYTES, "a note of {} bytes", note.len());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut codec = LinesCodec::new_with_max_length(MAX_LINE);
    let mut buffer = BytesMut::from(data);
    loop {
        match codec.decode(&mut buffer) {
            Ok(Some(line)) => check(&line),
            Ok(None) => break,
            Err(_) => return,
        }
    }
    if let Ok(Some(line)) = codec.decode_eof(&mut buffer) {
        check(&line);
    }
});
