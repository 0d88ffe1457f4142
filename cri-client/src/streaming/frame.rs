//! The channel framing of the streaming protocols, without any I/O.
//!
//! Everything here works on bytes and strings: encoding and decoding frames
//! in the binary (`channel.k8s.io`, `v4.channel.k8s.io`) and base64
//! (`base64.channel.k8s.io`, `v4.base64.channel.k8s.io`) codecs, the resize
//! message, the status the runtime sends on the error channel, and the port
//! prefix of port-forward channels. The connection code in the sibling
//! modules only moves these frames over a WebSocket.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::Deserialize;

use super::{ExitStatus, FrameError, Protocol};

/// Exec and attach: the process's stdin (client to runtime).
pub(crate) const STDIN: u8 = 0;
/// Exec and attach: the process's stdout, or the terminal with a TTY.
pub(crate) const STDOUT: u8 = 1;
/// Exec and attach: the process's stderr.
pub(crate) const STDERR: u8 = 2;
/// Exec and attach: the status the runtime reports when the session ends.
pub(crate) const ERROR: u8 = 3;
/// Exec and attach: terminal size changes (client to runtime).
pub(crate) const RESIZE: u8 = 4;
/// Number of channels of an exec or attach session.
pub(crate) const REMOTE_COMMAND_CHANNELS: u8 = 5;

/// Port-forward: the TCP bytes, both ways.
pub(crate) const PORT_DATA: u8 = 0;
/// Port-forward: the runtime's error text.
pub(crate) const PORT_ERROR: u8 = 1;
/// Number of channels of a port-forward session for one port.
pub(crate) const PORT_FORWARD_CHANNELS: u8 = 2;

/// Largest status text kept from the error channel; a runtime never sends
/// more than a few hundred bytes.
pub(crate) const MAX_STATUS_LEN: usize = 64 * 1024;

/// How frames travel: as binary messages, or as text messages with the
/// channel as an ASCII digit and the data in base64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    /// `channel.k8s.io` and `v4.channel.k8s.io`.
    Binary,
    /// `base64.channel.k8s.io` and `v4.base64.channel.k8s.io`.
    Base64,
}

/// A WebSocket data message, as received.
#[derive(Clone, Debug)]
pub(crate) enum Wire<'a> {
    /// A binary message.
    Binary(Bytes),
    /// A text message.
    Text(&'a str),
}

/// A WebSocket data message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WireFrame {
    /// A binary message.
    Binary(Vec<u8>),
    /// A text message.
    Text(String),
}

/// One decoded frame: the channel number and its data (possibly empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The channel number, below the limit given to [`decode`].
    pub(crate) channel: u8,
    /// The payload, base64-decoded for the base64 codec.
    pub(crate) data: Bytes,
}

/// Encodes `data` for `channel`.
pub(crate) fn encode(codec: Codec, channel: u8, data: &[u8]) -> WireFrame {
    match codec {
        Codec::Binary => {
            let mut frame = Vec::with_capacity(data.len() + 1);
            frame.push(channel);
            frame.extend_from_slice(data);
            WireFrame::Binary(frame)
        }
        Codec::Base64 => {
            debug_assert!(channel < 10, "base64 channels are one digit");
            let mut frame = String::with_capacity(1 + data.len().div_ceil(3) * 4);
            frame.push(char::from(b'0' + channel));
            STANDARD.encode_string(data, &mut frame);
            WireFrame::Text(frame)
        }
    }
}

/// Decodes a message into a frame whose channel is below `channels`.
///
/// # Errors
///
/// An empty message, a channel outside the protocol, a text message under
/// the binary codec (or binary under base64), a channel character that is
/// not a digit, or invalid base64.
pub(crate) fn decode(codec: Codec, wire: Wire<'_>, channels: u8) -> Result<Frame, FrameError> {
    let (channel, data) = match (codec, wire) {
        (Codec::Binary, Wire::Binary(bytes)) => {
            let Some(&channel) = bytes.first() else {
                return Err(FrameError::Empty);
            };
            (channel, bytes.slice(1..))
        }
        (Codec::Base64, Wire::Text(text)) => {
            let Some(first) = text.chars().next() else {
                return Err(FrameError::Empty);
            };
            let Some(digit) = first.to_digit(10) else {
                return Err(FrameError::BadChannelChar(first));
            };
            let channel = u8::try_from(digit).unwrap_or(u8::MAX);
            // The first char is an ASCII digit, so the rest starts at byte 1.
            let data = STANDARD
                .decode(&text.as_bytes()[1..])
                .map_err(|e| FrameError::Base64 {
                    channel,
                    reason: e.to_string(),
                })?;
            (channel, Bytes::from(data))
        }
        (Codec::Binary, Wire::Text(_)) => return Err(FrameError::UnexpectedText),
        (Codec::Base64, Wire::Binary(_)) => return Err(FrameError::UnexpectedBinary),
    };
    if channel >= channels {
        return Err(FrameError::UnknownChannel { channel, channels });
    }
    Ok(Frame { channel, data })
}

/// The resize message: JSON `{"Width":w,"Height":h}`, as kubelet's
/// `remotecommand.TerminalSize` decodes it.
pub(crate) fn encode_resize(width: u16, height: u16) -> Vec<u8> {
    format!(r#"{{"Width":{width},"Height":{height}}}"#).into_bytes()
}

/// The parts of a `metav1.Status` that the streaming server fills.
#[derive(Debug, Deserialize)]
struct Status {
    status: Option<String>,
    #[serde(default)]
    message: String,
    reason: Option<String>,
    details: Option<StatusDetails>,
}

#[derive(Debug, Deserialize)]
struct StatusDetails {
    #[serde(default)]
    causes: Vec<StatusCause>,
}

#[derive(Debug, Deserialize)]
struct StatusCause {
    reason: Option<String>,
    #[serde(default)]
    message: String,
}

/// Parses the `metav1.Status` that v4 protocols send on the error channel.
///
/// `Success` is [`ExitStatus::Success`]; `Failure` with reason
/// `NonZeroExitCode` is [`ExitStatus::ExitCode`] with the `ExitCode`
/// cause's message as the code; any other `Failure` is
/// [`ExitStatus::Failure`] with the status's reason and message.
///
/// # Errors
///
/// [`FrameError::BadStatus`] when the text is not such a status.
pub(crate) fn parse_v4_status(json: &[u8]) -> Result<ExitStatus, FrameError> {
    let bad = |reason: String| FrameError::BadStatus {
        reason,
        text: String::from_utf8_lossy(&json[..json.len().min(200)]).into_owned(),
    };
    let status: Status =
        serde_json::from_slice(json).map_err(|e| bad(format!("not a status object: {e}")))?;
    match status.status.as_deref() {
        Some("Success") => Ok(ExitStatus::Success),
        Some("Failure") if status.reason.as_deref() == Some("NonZeroExitCode") => {
            let cause = status
                .details
                .iter()
                .flat_map(|d| &d.causes)
                .find(|c| c.reason.as_deref() == Some("ExitCode"))
                .ok_or_else(|| bad("NonZeroExitCode without an ExitCode cause".to_owned()))?;
            let code = cause.message.trim().parse::<i32>().map_err(|_| {
                bad(format!(
                    "exit code {:?} is not an integer",
                    cause.message.as_str()
                ))
            })?;
            Ok(ExitStatus::ExitCode(code))
        }
        Some("Failure") => Ok(ExitStatus::Failure {
            reason: status.reason.filter(|r| !r.is_empty()),
            message: status.message,
        }),
        Some(other) => Err(bad(format!("unknown status {other:?}"))),
        None => Err(bad("no \"status\" field".to_owned())),
    }
}

/// How a session's connection ended, for [`StatusCollector::finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The runtime closed the WebSocket with a close frame.
    Closed,
    /// The client closed the WebSocket first (stdin shutdown).
    ClientClosed,
    /// The connection ended without a close frame.
    Dropped,
}

/// Collects the error channel of an exec or attach session and turns it
/// into the session's [`ExitStatus`] when the connection ends.
#[derive(Debug)]
pub(crate) struct StatusCollector {
    v4: bool,
    text: Vec<u8>,
}

impl StatusCollector {
    /// A collector for `protocol`'s error channel format.
    pub(crate) fn new(protocol: Protocol) -> Self {
        Self {
            v4: protocol.reports_exit_code(),
            text: Vec::new(),
        }
    }

    /// Appends the data of one error-channel frame (empty frames, which the
    /// runtime sends to signal that the session is up, change nothing).
    ///
    /// # Errors
    ///
    /// [`FrameError::StatusTooLong`] past [`MAX_STATUS_LEN`] bytes.
    pub(crate) fn push(&mut self, data: &[u8]) -> Result<(), FrameError> {
        if self.text.len() + data.len() > MAX_STATUS_LEN {
            return Err(FrameError::StatusTooLong {
                limit: MAX_STATUS_LEN,
            });
        }
        self.text.extend_from_slice(data);
        Ok(())
    }

    /// Whether the runtime has sent anything on the error channel.
    pub(crate) fn has_status(&self) -> bool {
        !self.text.is_empty()
    }

    /// The session's outcome.
    ///
    /// v4: the status JSON, or [`ExitStatus::Unknown`] when none came. Older
    /// protocols send only a failure text, so success is an error channel
    /// that stayed empty until the runtime closed the connection; when the
    /// client closed first or the connection dropped, the outcome is
    /// unknown.
    ///
    /// # Errors
    ///
    /// [`FrameError::BadStatus`] when a v4 status does not parse.
    pub(crate) fn finish(self, ending: Ending) -> Result<ExitStatus, FrameError> {
        if self.v4 {
            if self.text.is_empty() {
                return Ok(ExitStatus::Unknown);
            }
            return parse_v4_status(&self.text);
        }
        if self.text.is_empty() {
            return Ok(match ending {
                Ending::Closed => ExitStatus::Success,
                Ending::ClientClosed | Ending::Dropped => ExitStatus::Unknown,
            });
        }
        Ok(ExitStatus::Failure {
            reason: None,
            message: String::from_utf8_lossy(&self.text).trim().to_owned(),
        })
    }
}

/// The two-byte little-endian port number that the runtime sends first on
/// each port-forward channel, checked against the port asked for.
#[derive(Clone, Debug)]
pub(crate) struct PortPrefix {
    channel: u8,
    expected: u16,
    got: [u8; 2],
    len: usize,
}

impl PortPrefix {
    /// Expects `port` at the start of `channel`.
    pub(crate) fn new(channel: u8, expected: u16) -> Self {
        Self {
            channel,
            expected,
            got: [0; 2],
            len: 0,
        }
    }

    /// Whether the whole prefix has been seen.
    pub(crate) fn is_done(&self) -> bool {
        self.len == 2
    }

    /// Consumes prefix bytes from the start of `data` (the runtime sends the
    /// prefix as a frame of its own, but a split or merged prefix is
    /// accepted too) and returns the rest, which is channel payload.
    ///
    /// # Errors
    ///
    /// [`FrameError::PortMismatch`] when the prefix names another port.
    pub(crate) fn feed(&mut self, mut data: Bytes) -> Result<Bytes, FrameError> {
        while self.len < 2 && !data.is_empty() {
            self.got[self.len] = data[0];
            self.len += 1;
            data = data.slice(1..);
        }
        if self.len == 2 {
            let port = u16::from_le_bytes(self.got);
            if port != self.expected {
                return Err(FrameError::PortMismatch {
                    channel: self.channel,
                    expected: self.expected,
                    got: port,
                });
            }
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(bytes: &[u8]) -> Wire<'static> {
        Wire::Binary(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn binary_frames_round_trip_on_every_channel() {
        for channel in 0..REMOTE_COMMAND_CHANNELS {
            for data in [&b""[..], b"x", b"hello\nworld\0\xff"] {
                let WireFrame::Binary(raw) = encode(Codec::Binary, channel, data) else {
                    panic!("binary codec makes binary frames");
                };
                assert_eq!(raw[0], channel);
                assert_eq!(&raw[1..], data);
                let frame = decode(Codec::Binary, binary(&raw), REMOTE_COMMAND_CHANNELS).unwrap();
                assert_eq!(frame.channel, channel);
                assert_eq!(frame.data, data);
            }
        }
    }

    #[test]
    fn base64_frames_match_the_runtime_encoding() {
        // The examples of Kubernetes' wsstream documentation: "foo\n" on
        // stdin, "\n" on stdout.
        assert_eq!(
            encode(Codec::Base64, STDIN, b"foo\n"),
            WireFrame::Text("0Zm9vCg==".to_owned())
        );
        let frame = decode(Codec::Base64, Wire::Text("1Cg=="), 5).unwrap();
        assert_eq!((frame.channel, &frame.data[..]), (STDOUT, &b"\n"[..]));
        // The runtime's "session is up" frame: a channel and no data.
        let frame = decode(Codec::Base64, Wire::Text("1"), 5).unwrap();
        assert_eq!((frame.channel, frame.data.len()), (STDOUT, 0));
    }

    #[test]
    fn base64_frames_round_trip_binary_data() {
        let data: Vec<u8> = (0..=255).collect();
        for channel in 0..REMOTE_COMMAND_CHANNELS {
            for len in [0, 1, 2, 3, 4, 255, 256] {
                let WireFrame::Text(text) = encode(Codec::Base64, channel, &data[..len]) else {
                    panic!("base64 codec makes text frames");
                };
                let frame = decode(Codec::Base64, Wire::Text(&text), 5).unwrap();
                assert_eq!(frame.channel, channel);
                assert_eq!(frame.data, &data[..len]);
            }
        }
    }

    #[test]
    fn empty_messages_are_errors() {
        assert_eq!(
            decode(Codec::Binary, binary(b""), 5),
            Err(FrameError::Empty)
        );
        assert_eq!(
            decode(Codec::Base64, Wire::Text(""), 5),
            Err(FrameError::Empty)
        );
        assert_eq!(
            FrameError::Empty.to_string(),
            "empty frame (no channel byte)"
        );
    }

    #[test]
    fn unknown_channels_are_errors() {
        for channel in [5u8, 6, 9, 200, 255] {
            let err = decode(Codec::Binary, binary(&[channel, b'x']), 5).unwrap_err();
            assert_eq!(
                err,
                FrameError::UnknownChannel {
                    channel,
                    channels: 5
                }
            );
            assert_eq!(
                err.to_string(),
                format!("unknown channel {channel} (the protocol has channels 0 to 4)")
            );
        }
        // Port-forward has two channels per port; channel 2 is another port.
        assert!(matches!(
            decode(Codec::Binary, binary(&[2, 0]), PORT_FORWARD_CHANNELS),
            Err(FrameError::UnknownChannel { channel: 2, .. })
        ));
        assert!(matches!(
            decode(Codec::Base64, Wire::Text("7AA=="), 5),
            Err(FrameError::UnknownChannel { channel: 7, .. })
        ));
    }

    #[test]
    fn base64_channel_must_be_a_digit() {
        for text in ["xAA==", "-1", " 1", "é", "\u{0663}AA"] {
            let err = decode(Codec::Base64, Wire::Text(text), 5).unwrap_err();
            assert!(
                matches!(err, FrameError::BadChannelChar(_)),
                "{text:?}: {err}"
            );
        }
        assert_eq!(
            FrameError::BadChannelChar('x').to_string(),
            "base64 frame starts with 'x', not a channel digit"
        );
    }

    #[test]
    fn invalid_base64_is_an_error() {
        for text in ["1Zm9v!", "1Zm9vC", "1Zm9vCg=x", "1=", "1\u{e9}"] {
            let err = decode(Codec::Base64, Wire::Text(text), 5).unwrap_err();
            assert!(
                matches!(err, FrameError::Base64 { channel: 1, .. }),
                "{text:?}: {err}"
            );
            assert!(err.to_string().starts_with("invalid base64 on channel 1: "));
        }
    }

    #[test]
    fn message_kind_must_match_the_codec() {
        assert_eq!(
            decode(Codec::Binary, Wire::Text("1Cg=="), 5),
            Err(FrameError::UnexpectedText)
        );
        assert_eq!(
            decode(Codec::Base64, binary(b"\x01x"), 5),
            Err(FrameError::UnexpectedBinary)
        );
    }

    #[test]
    fn arbitrary_messages_never_panic() {
        // A cheap deterministic generator; every byte string up to length 3
        // plus pseudo-random longer ones, in both codecs and both kinds.
        let mut inputs: Vec<Vec<u8>> = vec![Vec::new()];
        for a in 0..=255u8 {
            inputs.push(vec![a]);
            inputs.push(vec![a, a.wrapping_mul(7)]);
            inputs.push(vec![a, b'=', a ^ 0x55]);
        }
        let mut x: u32 = 0x1234_5678;
        for len in 0..200 {
            let v = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x.to_le_bytes()[0]
                })
                .collect();
            inputs.push(v);
        }
        for input in &inputs {
            for channels in [0, 1, 2, 5, 255] {
                let _ = decode(Codec::Binary, binary(input), channels);
                let _ = decode(Codec::Base64, binary(input), channels);
                let text = String::from_utf8_lossy(input);
                let _ = decode(Codec::Base64, Wire::Text(&text), channels);
                let _ = decode(Codec::Binary, Wire::Text(&text), channels);
            }
            let _ = parse_v4_status(input);
            let mut collector = StatusCollector::new(Protocol::Channel);
            collector.push(input).unwrap();
            let _ = collector.finish(Ending::Closed);
            let _ = PortPrefix::new(0, 80).feed(Bytes::copy_from_slice(input));
        }
    }

    #[test]
    fn resize_is_the_json_kubelet_decodes() {
        assert_eq!(encode_resize(80, 24), br#"{"Width":80,"Height":24}"#);
        assert_eq!(encode_resize(u16::MAX, 0), br#"{"Width":65535,"Height":0}"#);
        let v: serde_json::Value = serde_json::from_slice(&encode_resize(100, 40)).unwrap();
        assert_eq!(v, serde_json::json!({"Width": 100, "Height": 40}));
    }

    #[test]
    fn v4_success_status() {
        // What the runtime sends, byte for byte.
        assert_eq!(
            parse_v4_status(br#"{"metadata":{},"status":"Success"}"#),
            Ok(ExitStatus::Success)
        );
    }

    #[test]
    fn v4_non_zero_exit_code_status() {
        let json = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 7], exit code 7","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"7"}]}}"#;
        assert_eq!(parse_v4_status(json), Ok(ExitStatus::ExitCode(7)));
        // Other causes are skipped; large and negative codes parse.
        let json = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"Other","message":"x"},{"reason":"ExitCode","message":"255"}]}}"#;
        assert_eq!(parse_v4_status(json), Ok(ExitStatus::ExitCode(255)));
        let json = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"-1"}]}}"#;
        assert_eq!(parse_v4_status(json), Ok(ExitStatus::ExitCode(-1)));
    }

    #[test]
    fn v4_other_failures_keep_reason_and_message() {
        let json = br#"{"metadata":{},"status":"Failure","message":"error executing command in container: failed to exec in container: failed to start exec: OCI runtime exec failed","reason":"InternalError","details":{"causes":[{"message":"failed to start exec"}]},"code":500}"#;
        assert_eq!(
            parse_v4_status(json),
            Ok(ExitStatus::Failure {
                reason: Some("InternalError".to_owned()),
                message: "error executing command in container: failed to exec in container: \
                          failed to start exec: OCI runtime exec failed"
                    .to_owned(),
            })
        );
        assert_eq!(
            parse_v4_status(br#"{"status":"Failure"}"#),
            Ok(ExitStatus::Failure {
                reason: None,
                message: String::new()
            })
        );
    }

    #[test]
    fn bad_v4_statuses_are_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "not a status object"),
            (b"not json", "not a status object"),
            (b"[]", "not a status object"),
            (br#"{"status":3}"#, "not a status object"),
            (br#"{"metadata":{}}"#, "no \"status\" field"),
            (br#"{"status":"Pending"}"#, "unknown status \"Pending\""),
            (
                br#"{"status":"Failure","reason":"NonZeroExitCode"}"#,
                "NonZeroExitCode without an ExitCode cause",
            ),
            (
                br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"Other","message":"1"}]}}"#,
                "NonZeroExitCode without an ExitCode cause",
            ),
            (
                br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"seven"}]}}"#,
                "exit code \"seven\" is not an integer",
            ),
            (
                br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"99999999999"}]}}"#,
                "is not an integer",
            ),
        ];
        for (json, want) in cases {
            let err = parse_v4_status(json).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with("invalid status on the error channel: ") && msg.contains(want),
                "{:?}: {msg}",
                String::from_utf8_lossy(json)
            );
        }
    }

    #[test]
    fn v4_collector_parses_the_status_and_ignores_empty_frames() {
        let mut c = StatusCollector::new(Protocol::V4Channel);
        c.push(b"").unwrap();
        assert!(!c.has_status());
        // A status split over two frames still parses.
        c.push(br#"{"metadata":{},"status":"#).unwrap();
        c.push(br#""Success"}"#).unwrap();
        assert!(c.has_status());
        assert_eq!(c.finish(Ending::Dropped), Ok(ExitStatus::Success));
        for ending in [Ending::Closed, Ending::ClientClosed, Ending::Dropped] {
            let c = StatusCollector::new(Protocol::V4Base64Channel);
            assert_eq!(c.finish(ending), Ok(ExitStatus::Unknown));
        }
        let mut c = StatusCollector::new(Protocol::V4Channel);
        c.push(b"{oops").unwrap();
        assert!(matches!(
            c.finish(Ending::Closed),
            Err(FrameError::BadStatus { .. })
        ));
    }

    #[test]
    fn pre_v4_collector_takes_silence_as_success_only_on_a_clean_close() {
        for protocol in [Protocol::Channel, Protocol::Base64Channel] {
            let c = StatusCollector::new(protocol);
            assert_eq!(c.finish(Ending::Closed), Ok(ExitStatus::Success));
            let c = StatusCollector::new(protocol);
            assert_eq!(c.finish(Ending::ClientClosed), Ok(ExitStatus::Unknown));
            let c = StatusCollector::new(protocol);
            assert_eq!(c.finish(Ending::Dropped), Ok(ExitStatus::Unknown));
            let mut c = StatusCollector::new(protocol);
            c.push(b"command terminated with non-zero exit code: exit code 7\n")
                .unwrap();
            assert_eq!(
                c.finish(Ending::Closed),
                Ok(ExitStatus::Failure {
                    reason: None,
                    message: "command terminated with non-zero exit code: exit code 7".to_owned()
                })
            );
        }
    }

    #[test]
    fn collector_refuses_an_endless_status() {
        let mut c = StatusCollector::new(Protocol::V4Channel);
        c.push(&vec![b' '; MAX_STATUS_LEN]).unwrap();
        assert_eq!(
            c.push(b"x"),
            Err(FrameError::StatusTooLong {
                limit: MAX_STATUS_LEN
            })
        );
    }

    #[test]
    fn port_prefix_is_little_endian_and_checked() {
        let mut p = PortPrefix::new(PORT_DATA, 8080);
        assert!(!p.is_done());
        // 8080 = 0x1f90, little-endian 0x90 0x1f; the runtime sends it alone.
        assert_eq!(p.feed(Bytes::from_static(&[0x90, 0x1f])).unwrap(), "");
        assert!(p.is_done());
        assert_eq!(p.feed(Bytes::from_static(b"GET")).unwrap(), "GET");

        let mut p = PortPrefix::new(PORT_DATA, 8080);
        assert_eq!(p.feed(Bytes::from_static(&[0x90])).unwrap(), "");
        assert!(!p.is_done());
        assert_eq!(p.feed(Bytes::new()).unwrap(), "");
        assert_eq!(
            p.feed(Bytes::from_static(&[0x1f, b'o', b'k'])).unwrap(),
            "ok"
        );
        assert!(p.is_done());

        let mut p = PortPrefix::new(PORT_ERROR, 8080);
        let err = p.feed(Bytes::from_static(&[0x1f, 0x90])).unwrap_err();
        assert_eq!(
            err,
            FrameError::PortMismatch {
                channel: PORT_ERROR,
                expected: 8080,
                got: 36895
            }
        );
        assert_eq!(
            err.to_string(),
            "channel 1 is for port 36895, not the requested port 8080"
        );
    }
}
