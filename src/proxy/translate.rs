//! Translation between WebSocket messages and SSE events (SPEC 4, SPEC 10 "JSON envelopes").
//! Pure functions: no I/O, so they are tested and benchmarked alone.

use bytes::BytesMut;
use serde_json::Value;

use crate::config::Format;
use crate::sse::decoder::Event;
use crate::sse::encoder::{self, OutEvent};

/// The result of translating one WebSocket text message into an SSE event.
#[derive(Debug, PartialEq, Eq)]
pub enum Translated {
    Ok,
    /// A JSON envelope broke the rules and the message was sent raw (a translation error).
    SentRaw,
}

/// Appends the SSE event for one text message from a WebSocket origin (SPEC 4.1).
pub fn message_to_event(out: &mut BytesMut, text: &str, format: Format) -> Translated {
    if format == Format::Json {
        match envelope_event(out, text) {
            Envelope::Written => return Translated::Ok,
            Envelope::Plain => {}
            Envelope::Invalid => {
                raw_event(out, None, text);
                return Translated::SentRaw;
            }
        }
    }
    raw_event(out, None, text);
    Translated::Ok
}

/// An event of type `event_type` (or the default) whose data is `text`.
pub fn raw_event(out: &mut BytesMut, event_type: Option<&str>, text: &str) {
    let event = OutEvent {
        event: event_type,
        id: None,
        retry: None,
        data: text,
    };
    // Without id or type nothing can be refused.
    let _ = encoder::encode(out, &event);
}

enum Envelope {
    Written,
    Plain,
    Invalid,
}

fn envelope_event(out: &mut BytesMut, text: &str) -> Envelope {
    // Cheap test first: only objects can be envelopes.
    if !text.trim_start().starts_with('{') {
        return Envelope::Plain;
    }
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
        return Envelope::Plain;
    };
    if !["event", "id", "retry", "data"]
        .iter()
        .any(|k| map.contains_key(*k))
    {
        return Envelope::Plain;
    }
    let event = match map.get("event") {
        None => None,
        Some(Value::String(s)) if !s.contains(['\r', '\n']) => Some(s.as_str()),
        Some(_) => return Envelope::Invalid,
    };
    let id = match map.get("id") {
        None => None,
        Some(Value::String(s)) if !s.contains(['\r', '\n', '\0']) => Some(s.as_str()),
        Some(_) => return Envelope::Invalid,
    };
    let retry = match map.get("retry") {
        None => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(ms) => Some(ms),
            None => return Envelope::Invalid,
        },
        Some(_) => return Envelope::Invalid,
    };
    let data_json;
    let data = match map.get("data") {
        None => "",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            data_json = other.to_string();
            data_json.as_str()
        }
    };
    match encoder::encode(
        out,
        &OutEvent {
            event,
            id,
            retry,
            data,
        },
    ) {
        Ok(()) => Envelope::Written,
        Err(_) => Envelope::Invalid,
    }
}

/// The WebSocket message text for one dispatched SSE event (SPEC 4.2).
pub fn event_to_message(event: &Event, format: Format) -> String {
    match format {
        Format::Raw => event.data.clone(),
        Format::Json => {
            let mut map = serde_json::Map::new();
            map.insert("event".to_owned(), Value::String(event.event_type.clone()));
            if !event.last_event_id.is_empty() {
                map.insert("id".to_owned(), Value::String(event.last_event_id.clone()));
            }
            map.insert("data".to_owned(), Value::String(event.data.clone()));
            Value::Object(map).to_string()
        }
    }
}

/// Fills `{query.NAME}` and `{header.NAME}` placeholders (SPEC 10 "Templates"): absent values
/// become empty, values are escaped for a JSON string and never re-expanded.
pub fn fill_template(
    template: &str,
    query: impl Fn(&str) -> Option<String>,
    header: impl Fn(&str) -> Option<String>,
) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let placeholder = after.find('}').and_then(|end| {
            let name = &after[..end];
            if name.contains('{') {
                return None;
            }
            let value = if let Some(q) = name.strip_prefix("query.") {
                query(q)
            } else if let Some(h) = name.strip_prefix("header.") {
                header(h)
            } else {
                return None;
            };
            Some((value.unwrap_or_default(), end))
        });
        match placeholder {
            Some((value, end)) => {
                out.push_str(&json_escape(&value));
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The inside of a JSON string literal for `value`.
fn json_escape(value: &str) -> String {
    let quoted = Value::String(value.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(text: &str, format: Format) -> (String, Translated) {
        let mut out = BytesMut::new();
        let t = message_to_event(&mut out, text, format);
        (String::from_utf8(out.to_vec()).unwrap(), t)
    }

    #[test]
    fn raw_message_lines_become_data_lines() {
        assert_eq!(
            event("a\r\nb\rc\nd", Format::Raw).0,
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }

    #[test]
    fn json_envelope_sets_fields() {
        let (text, t) = event(
            r#"{"event":"tick","id":"7","retry":100,"data":{"p":1}}"#,
            Format::Json,
        );
        assert_eq!(t, Translated::Ok);
        assert!(text.contains("event: tick\n"));
        assert!(text.contains("id: 7\n"));
        assert!(text.contains("retry: 100\n"));
        assert!(text.contains("data: {\"p\":1}\n"));
    }

    #[test]
    fn bad_envelope_is_sent_raw_and_counted() {
        let msg = r#"{"event":"a\nb","data":"x"}"#;
        let (text, t) = event(msg, Format::Json);
        assert_eq!(t, Translated::SentRaw);
        assert_eq!(text, format!("data: {msg}\n\n"));
        assert_eq!(
            event(r#"{"retry":-1}"#, Format::Json).1,
            Translated::SentRaw
        );
        assert_eq!(event(r#"{"other":1}"#, Format::Json).1, Translated::Ok);
        assert_eq!(event("[1]", Format::Json).0, "data: [1]\n\n");
    }

    #[test]
    fn template_values_are_json_escaped_and_not_re_expanded() {
        let filled = fill_template(
            r#"{"op":"subscribe","symbol":"{query.symbol}","who":"{header.x-user}","x":"{other}"}"#,
            |q| (q == "symbol").then(|| "\"},{\"op\":\"evil {query.symbol}".to_owned()),
            |_| None,
        );
        let parsed: Value = serde_json::from_str(&filled).unwrap();
        assert_eq!(parsed["symbol"], "\"},{\"op\":\"evil {query.symbol}");
        assert_eq!(parsed["who"], "");
        assert_eq!(parsed["x"], "{other}");
    }
}
