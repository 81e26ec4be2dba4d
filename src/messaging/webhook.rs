//! Meta's WhatsApp Cloud API webhooks, as pure functions: the `X-Hub-Signature-256` check and
//! the parsing of a post (several entries and changes, every message type, status updates) into
//! the events the inbox applies.

use serde_json::Value;

use super::delivery::MessageStatus;
use crate::platform::clock;
use crate::platform::crypto::{constant_time_eq, hmac_sha256};

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `app_secret`.
pub fn signature_valid(app_secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(given) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let expected = hex::encode(hmac_sha256(app_secret, body));
    constant_time_eq(given.to_ascii_lowercase().as_bytes(), expected.as_bytes())
}

#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub phone_number_id: String,
    pub wamid: String,
    /// The sender's WhatsApp id (phone number).
    pub from: String,
    /// The sender's profile name, when Meta sent one.
    pub name: String,
    pub kind: String,
    /// A human-readable line for lists and previews.
    pub text: String,
    /// The type-specific object as Meta sent it (`{"body": …}`, `{"id": …, "caption": …}`).
    pub content: Value,
    pub timestamp: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    pub wamid: String,
    pub status: MessageStatus,
    pub recipient: String,
    pub timestamp: Option<String>,
    pub error_code: Option<String>,
    pub error_title: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    pub messages: Vec<Inbound>,
    pub statuses: Vec<StatusUpdate>,
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn time(v: &Value) -> Option<String> {
    s(v).parse::<i64>()
        .ok()
        .map(|secs| clock::rfc3339(secs * 1000))
}

/// Reads a post. `Err` when it is not a WhatsApp webhook at all (stored as invalid).
pub fn parse(payload: &Value) -> Result<Parsed, String> {
    let entries = payload
        .get("entry")
        .and_then(Value::as_array)
        .ok_or("not a WhatsApp webhook: no `entry` array")?;
    let mut out = Parsed::default();
    for entry in entries {
        for change in entry["changes"].as_array().into_iter().flatten() {
            let value = &change["value"];
            let phone_number_id = s(&value["metadata"]["phone_number_id"]);
            let names: Vec<(String, String)> = value["contacts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| (s(&c["wa_id"]), s(&c["profile"]["name"])))
                .collect();
            for m in value["messages"].as_array().into_iter().flatten() {
                let wamid = s(&m["id"]);
                let from = s(&m["from"]);
                if wamid.is_empty() || from.is_empty() {
                    continue;
                }
                let kind = m["type"].as_str().unwrap_or("unknown").to_string();
                let content = m.get(kind.as_str()).cloned().unwrap_or(Value::Null);
                let name = names
                    .iter()
                    .find(|(id, _)| *id == from)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_default();
                out.messages.push(Inbound {
                    phone_number_id: phone_number_id.clone(),
                    text: preview(&kind, &content),
                    wamid,
                    from,
                    name,
                    kind,
                    content,
                    timestamp: time(&m["timestamp"]),
                });
            }
            for st in value["statuses"].as_array().into_iter().flatten() {
                let Some(status) = MessageStatus::parse_report(&s(&st["status"])) else {
                    continue;
                };
                if s(&st["id"]).is_empty() {
                    continue;
                }
                let error = &st["errors"][0];
                out.statuses.push(StatusUpdate {
                    wamid: s(&st["id"]),
                    status,
                    recipient: s(&st["recipient_id"]),
                    timestamp: time(&st["timestamp"]),
                    error_code: Some(s(&error["code"])).filter(|c| !c.is_empty()),
                    error_title: Some(s(&error["title"]))
                        .filter(|t| !t.is_empty())
                        .or_else(|| Some(s(&error["message"])).filter(|t| !t.is_empty())),
                });
            }
        }
    }
    Ok(out)
}

/// The phone number ids a post names that are not `ours`: every change that carries messages
/// or statuses must be for the tenant's own channel (tenants sharing one Meta app receive each
/// other's posts only if someone replays them at the wrong URL). A change without an id counts
/// as foreign.
pub fn foreign_numbers(payload: &Value, ours: &str) -> Vec<String> {
    let mut foreign: Vec<String> = Vec::new();
    let entries = payload.get("entry").and_then(Value::as_array);
    for entry in entries.into_iter().flatten() {
        for change in entry["changes"].as_array().into_iter().flatten() {
            let value = &change["value"];
            let carries = |k: &str| value[k].as_array().is_some_and(|a| !a.is_empty());
            if !carries("messages") && !carries("statuses") {
                continue;
            }
            let id = s(&value["metadata"]["phone_number_id"]);
            if (id.is_empty() || id != ours) && !foreign.contains(&id) {
                foreign.push(id);
            }
        }
    }
    foreign
}

/// A one-line description of a message for inbox lists.
pub fn preview(kind: &str, c: &Value) -> String {
    let caption = |fallback: &str| {
        c["caption"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| fallback.to_string())
    };
    let text = match kind {
        "text" => s(&c["body"]),
        "image" => caption("[image]"),
        "video" => caption("[video]"),
        "document" => c["filename"]
            .as_str()
            .map(|f| format!("[document] {f}"))
            .unwrap_or_else(|| caption("[document]")),
        "audio" => "[audio]".into(),
        "sticker" => "[sticker]".into(),
        "location" => {
            let label = [s(&c["name"]), s(&c["address"])]
                .into_iter()
                .filter(|x| !x.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            if label.is_empty() {
                format!("[location] {},{}", s(&c["latitude"]), s(&c["longitude"]))
            } else {
                format!("[location] {label}")
            }
        }
        "contacts" => format!("[contact] {}", s(&c[0]["name"]["formatted_name"])),
        "interactive" => {
            let reply = if c["button_reply"].is_object() {
                &c["button_reply"]
            } else {
                &c["list_reply"]
            };
            s(&reply["title"])
        }
        "button" => s(&c["text"]),
        "reaction" => format!("reacted {}", s(&c["emoji"])),
        other => format!("[{other}]"),
    };
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn post(messages: Value, statuses: Value) -> Value {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "PN1"},
            "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": "16315551181"}],
            "messages": messages, "statuses": statuses}}]}]})
    }

    #[test]
    fn only_changes_for_the_tenants_own_number_pass() {
        let msg = json!([{"from": "1", "id": "wamid.1", "type": "text", "text": {"body": "x"}}]);
        assert!(foreign_numbers(&post(msg.clone(), json!([])), "PN1").is_empty());
        assert_eq!(
            foreign_numbers(&post(msg.clone(), json!([])), "PN2"),
            ["PN1"]
        );
        let status = json!([{"id": "wamid.1", "status": "read"}]);
        assert_eq!(foreign_numbers(&post(json!([]), status), "PN2"), ["PN1"]);
        // Nothing to apply, nothing to reject; a change without metadata is foreign.
        assert!(foreign_numbers(&post(json!([]), json!([])), "PN2").is_empty());
        let bare = json!({"entry": [{"changes": [{"value": {"messages": msg}}]}]});
        assert_eq!(foreign_numbers(&bare, "PN1"), [""]);
    }

    #[test]
    fn signatures_are_checked_over_the_raw_bytes() {
        let body = br#"{"entry":[]}"#;
        let good = format!("sha256={}", hex::encode(hmac_sha256(b"app-secret", body)));
        assert!(signature_valid(b"app-secret", body, Some(&good)));
        assert!(signature_valid(
            b"app-secret",
            body,
            Some(&good.to_uppercase().replace("SHA256=", "sha256="))
        ));
        assert!(!signature_valid(b"other", body, Some(&good)));
        assert!(!signature_valid(
            b"app-secret",
            b"{\"entry\":[] }",
            Some(&good)
        ));
        assert!(!signature_valid(b"app-secret", body, None));
        assert!(!signature_valid(b"app-secret", body, Some("sha1=abc")));
    }

    #[test]
    fn every_message_type_gets_a_preview() {
        let cases = [
            (
                json!({"type": "text", "text": {"body": "Hi there"}}),
                "Hi there",
            ),
            (
                json!({"type": "image", "image": {"id": "M1", "mime_type": "image/jpeg", "caption": "My order"}}),
                "My order",
            ),
            (json!({"type": "image", "image": {"id": "M1"}}), "[image]"),
            (
                json!({"type": "audio", "audio": {"id": "A1", "voice": true}}),
                "[audio]",
            ),
            (json!({"type": "video", "video": {"id": "V1"}}), "[video]"),
            (
                json!({"type": "document", "document": {"id": "D1", "filename": "invoice.pdf"}}),
                "[document] invoice.pdf",
            ),
            (
                json!({"type": "sticker", "sticker": {"id": "S1"}}),
                "[sticker]",
            ),
            (
                json!({"type": "location", "location": {"latitude": 52.5, "longitude": 13.4, "name": "Shop"}}),
                "[location] Shop",
            ),
            (
                json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Ann Lee"}, "phones": []}]}),
                "[contact] Ann Lee",
            ),
            (
                json!({"type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": "b1", "title": "Yes"}}}),
                "Yes",
            ),
            (
                json!({"type": "interactive", "interactive": {"type": "list_reply", "list_reply": {"id": "l1", "title": "Blue"}}}),
                "Blue",
            ),
            (
                json!({"type": "button", "button": {"payload": "p", "text": "Stop promotions"}}),
                "Stop promotions",
            ),
            (
                json!({"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "👍"}}),
                "reacted 👍",
            ),
            (
                json!({"type": "unsupported", "errors": [{"code": 131051}]}),
                "[unsupported]",
            ),
        ];
        for (i, (m, expected)) in cases.into_iter().enumerate() {
            let mut m = m;
            m["from"] = json!("16315551181");
            m["id"] = json!(format!("wamid.{i}"));
            m["timestamp"] = json!("1700000000");
            let parsed = parse(&post(json!([m]), json!([]))).unwrap();
            assert_eq!(parsed.messages[0].text, expected);
            assert_eq!(parsed.messages[0].name, "Kerry Fisher");
            assert_eq!(parsed.messages[0].phone_number_id, "PN1");
            assert_eq!(
                parsed.messages[0].timestamp.as_deref(),
                Some("2023-11-14T22:13:20.000Z")
            );
        }
    }

    #[test]
    fn statuses_carry_their_errors_and_unknown_ones_are_ignored() {
        let parsed = parse(&post(
            json!([]),
            json!([
                {"id": "wamid.A", "status": "delivered", "timestamp": "1700000001", "recipient_id": "1631"},
                {"id": "wamid.B", "status": "failed", "timestamp": "1700000002", "recipient_id": "1631",
                 "errors": [{"code": 131026, "title": "Message undeliverable"}]},
                {"id": "wamid.C", "status": "deleted"}
            ]),
        ))
        .unwrap();
        assert_eq!(parsed.statuses.len(), 2);
        assert_eq!(parsed.statuses[1].error_code.as_deref(), Some("131026"));
        assert_eq!(
            parsed.statuses[1].error_title.as_deref(),
            Some("Message undeliverable")
        );
    }

    #[test]
    fn several_entries_and_changes_are_all_read() {
        let one = post(
            json!([{"from": "1", "id": "wamid.1", "type": "text", "text": {"body": "a"}}]),
            json!([]),
        );
        let mut two = one.clone();
        two["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = json!("wamid.2");
        let mut payload = one.clone();
        let second_change = two["entry"][0]["changes"][0].clone();
        payload["entry"][0]["changes"]
            .as_array_mut()
            .unwrap()
            .push(second_change);
        payload["entry"]
            .as_array_mut()
            .unwrap()
            .push(two["entry"][0].clone());
        let parsed = parse(&payload).unwrap();
        let ids: Vec<&str> = parsed.messages.iter().map(|m| m.wamid.as_str()).collect();
        assert_eq!(ids, vec!["wamid.1", "wamid.2", "wamid.2"]);
    }

    #[test]
    fn posts_that_are_not_webhooks_are_rejected_and_ranks_only_go_up() {
        assert!(parse(&json!({"hello": "world"})).is_err());
        assert!(parse(&json!([1, 2])).is_err());
        assert_eq!(parse(&json!({"entry": []})).unwrap(), Parsed::default());
    }
}
