//! What the gateway reads from, and adds to, JSON messages inside a session: the event id and
//! resume position of platform events (per profile, overridable with JSON pointers), the agent
//! an event names, and the routing-key tag on agent messages.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::profile::Envelope;

/// Where an envelope keeps the facts the gateway needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeSpec {
    /// Pointers whose values, joined, identify an event (one for Genesys; NICE has no single id,
    /// so correlation id + event type + timestamp).
    pub id_pointers: Vec<String>,
    /// The event's resume position.
    pub position_pointer: String,
    /// Where an event names its agent.
    pub agent_pointers: Vec<String>,
    /// Where an event names a routing key.
    pub routing_key_pointers: Vec<String>,
}

impl EnvelopeSpec {
    pub fn for_envelope(envelope: Envelope) -> EnvelopeSpec {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        match envelope {
            Envelope::Genesys => EnvelopeSpec {
                id_pointers: owned(&["/metadata/id"]),
                position_pointer: "/metadata/timestamp".to_string(),
                agent_pointers: owned(&["/data/agentId", "/metadata/agentId"]),
                routing_key_pointers: owned(&["/metadata/routingKey", "/routing_key"]),
            },
            Envelope::Nice => EnvelopeSpec {
                id_pointers: owned(&["/correlationId", "/eventType", "/timestamp"]),
                position_pointer: "/cursor".to_string(),
                agent_pointers: owned(&["/payload/agentId"]),
                routing_key_pointers: owned(&["/routingKey", "/routing_key"]),
            },
        }
    }
}

/// Facts about one platform event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventFacts {
    /// The joined id parts; `None` when any part is missing (such an event is never deduplicated).
    pub id: Option<String>,
    pub position: Option<String>,
    pub agent: Option<String>,
    pub routing_key: Option<String>,
}

fn scalar(value: &Value, pointer: &str) -> Option<String> {
    match value.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads the facts of an event already parsed as JSON.
pub fn inspect(event: &Value, spec: &EnvelopeSpec) -> EventFacts {
    let parts: Option<Vec<String>> = spec.id_pointers.iter().map(|p| scalar(event, p)).collect();
    EventFacts {
        id: parts.filter(|p| !p.is_empty()).map(|p| p.join("\u{1f}")),
        position: scalar(event, &spec.position_pointer),
        agent: spec.agent_pointers.iter().find_map(|p| scalar(event, p)),
        routing_key: spec
            .routing_key_pointers
            .iter()
            .find_map(|p| scalar(event, p)),
    }
}

/// Reads the facts of a platform event straight from its JSON text: the same facts as
/// [`inspect`] on the parsed value, but no tree is built. One pass splits the top level into its
/// members, each pointer then descends only through the members it names, and only the scalars it
/// lands on are decoded. A payload that is not JSON has no facts.
pub fn inspect_text(payload: &[u8], spec: &EnvelopeSpec) -> EventFacts {
    let Ok(root) = serde_json::from_slice::<Container<'_>>(payload) else {
        return EventFacts::default();
    };
    let find = |pointer: &str| scalar_text(&root, pointer);
    let parts: Option<Vec<String>> = spec.id_pointers.iter().map(|p| find(p)).collect();
    EventFacts {
        id: parts.filter(|p| !p.is_empty()).map(|p| p.join("\u{1f}")),
        position: find(&spec.position_pointer),
        agent: spec.agent_pointers.iter().find_map(|p| find(p)),
        routing_key: spec.routing_key_pointers.iter().find_map(|p| find(p)),
    }
}

/// The scalar (string, or number as text) an RFC 6901 pointer names inside `root`.
fn scalar_text(root: &Container<'_>, pointer: &str) -> Option<String> {
    let mut tokens = pointer.strip_prefix('/')?.split('/');
    let mut at = root.child(&unescape(tokens.next()?))?;
    for token in tokens {
        let container = serde_json::from_str::<Container<'_>>(at.get()).ok()?;
        at = container.child(&unescape(token))?;
    }
    // Only a string or a number can be a fact: anything else is not decoded at all.
    let text = at.get();
    let first = text.as_bytes().first()?;
    if *first != b'"' && *first != b'-' && !first.is_ascii_digit() {
        return None;
    }
    match serde_json::from_str::<Value>(text).ok()? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn unescape(token: &str) -> std::borrow::Cow<'_, str> {
    if token.contains('~') {
        token.replace("~1", "/").replace("~0", "~").into()
    } else {
        token.into()
    }
}

/// An array index token: digits, no sign, no leading zero (RFC 6901 §4).
fn array_index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

/// One JSON value split one level deep: its members (in their original order) or items, each
/// kept as its exact text.
enum Container<'a> {
    Object(Vec<(std::borrow::Cow<'a, str>, &'a RawValue)>),
    Array(Vec<&'a RawValue>),
    Scalar,
}

impl<'a> Container<'a> {
    /// The member or item a pointer token names; a repeated member's last value wins, as when
    /// the object is parsed.
    fn child(&self, token: &str) -> Option<&'a RawValue> {
        match self {
            Container::Object(members) => members
                .iter()
                .rev()
                .find(|(name, _)| name == token)
                .map(|(_, value)| *value),
            Container::Array(items) => items.get(array_index(token)?).copied(),
            Container::Scalar => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Container<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::SeqAccess;
        use std::borrow::Cow;

        /// A member name, borrowed from the text unless it had escapes.
        struct Name<'a>(Cow<'a, str>);
        impl<'de: 'a, 'a> Deserialize<'de> for Name<'a> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct NameVisitor;
                impl<'de> Visitor<'de> for NameVisitor {
                    type Value = Name<'de>;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a member name")
                    }
                    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                        Ok(Name(Cow::Borrowed(v)))
                    }
                    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                        Ok(Name(Cow::Owned(v.to_string())))
                    }
                }
                deserializer.deserialize_str(NameVisitor)
            }
        }

        struct ContainerVisitor;
        impl<'de> Visitor<'de> for ContainerVisitor {
            type Value = Container<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members = Vec::new();
                while let Some((Name(name), value)) =
                    map.next_entry::<Name<'de>, &'de RawValue>()?
                {
                    members.push((name, value));
                }
                Ok(Container::Object(members))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<&'de RawValue>()? {
                    items.push(item);
                }
                Ok(Container::Array(items))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Container::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Container::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Container::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Container::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Container::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Container::Scalar)
            }
        }
        deserializer.deserialize_any(ContainerVisitor)
    }
}

/// True when the event names an agent or routing key other than the session's.
pub fn is_misrouted(facts: &EventFacts, agent_id: &str, routing_key: &str) -> bool {
    facts.agent.as_deref().is_some_and(|a| a != agent_id)
        || facts
            .routing_key
            .as_deref()
            .is_some_and(|k| k != routing_key)
}

/// Adds (or overwrites) string members of a JSON object message, keeping every other member and
/// its value byte-exact and in order; the tags go first. `None` when the payload is not a JSON
/// object (such messages are forwarded untouched).
pub fn tag_object(payload: &[u8], tags: &[(&str, &str)]) -> Option<Vec<u8>> {
    let Container::Object(members) = serde_json::from_slice::<Container<'_>>(payload).ok()? else {
        return None;
    };
    let mut out = Vec::with_capacity(payload.len() + 64);
    out.push(b'{');
    let mut first = true;
    for (name, value) in tags {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(serde_json::to_string(name).ok()?.as_bytes());
        out.push(b':');
        out.extend_from_slice(serde_json::to_string(value).ok()?.as_bytes());
    }
    // A member the client set itself under a tag's name is dropped: nobody speaks with another
    // agent's key.
    for (name, value) in members
        .iter()
        .filter(|(n, _)| !tags.iter().any(|(t, _)| t == n))
    {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(serde_json::to_string(name).ok()?.as_bytes());
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
    }
    out.push(b'}');
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn genesys_event_facts() {
        let event: Value = serde_json::from_str(
            r#"{"type":"v2.agents.a1.events","data":{"agentId":"a1","seq":3},
                "metadata":{"id":"p-a1-3","timestamp":"2026-11-22T10:00:00.000Z","seq":3}}"#,
        )
        .unwrap();
        let facts = inspect(&event, &EnvelopeSpec::for_envelope(Envelope::Genesys));
        assert_eq!(facts.id.as_deref(), Some("p-a1-3"));
        assert_eq!(facts.position.as_deref(), Some("2026-11-22T10:00:00.000Z"));
        assert_eq!(facts.agent.as_deref(), Some("a1"));
        assert!(!is_misrouted(&facts, "a1", "k"));
        assert!(is_misrouted(&facts, "a2", "k"));
    }

    #[test]
    fn nice_event_id_is_composite_and_needs_every_part() {
        let spec = EnvelopeSpec::for_envelope(Envelope::Nice);
        let event: Value = serde_json::from_str(
            r#"{"eventType":"agentState","payload":{"agentId":"a1"},"correlationId":"c-9",
                "timestamp":"2026-11-22T10:00:00.000Z","cursor":17}"#,
        )
        .unwrap();
        let facts = inspect(&event, &spec);
        assert_eq!(
            facts.id.as_deref(),
            Some("c-9\u{1f}agentState\u{1f}2026-11-22T10:00:00.000Z")
        );
        assert_eq!(facts.position.as_deref(), Some("17"));
        let partial: Value =
            serde_json::from_str(r#"{"eventType":"x","correlationId":"c"}"#).unwrap();
        assert_eq!(inspect(&partial, &spec).id, None);
        let other_key: Value = serde_json::from_str(r#"{"routingKey":"zz"}"#).unwrap();
        assert!(is_misrouted(&inspect(&other_key, &spec), "a1", "k1"));
    }

    #[test]
    fn tagging_adds_exactly_the_fields_and_keeps_the_rest_byte_exact() {
        let payload = br#"{"action":"ack","n":1.50,"nested":{"b":2, "a":1},"list":[1, 2]}"#;
        let tagged = tag_object(payload, &[("routing_key", "k1")]).unwrap();
        assert_eq!(
            std::str::from_utf8(&tagged).unwrap(),
            r#"{"routing_key":"k1","action":"ack","n":1.50,"nested":{"b":2, "a":1},"list":[1, 2]}"#
        );
        let before: Value = serde_json::from_slice(payload).unwrap();
        let mut after: Value = serde_json::from_slice(&tagged).unwrap();
        after.as_object_mut().unwrap().remove("routing_key");
        assert_eq!(before, after);
    }

    #[test]
    fn a_spoofed_tag_is_overwritten_and_non_objects_are_left_alone() {
        let tagged = tag_object(
            br#"{"routing_key":"someone-else","x":1}"#,
            &[("routing_key", "mine"), ("agent_id", "a1")],
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&tagged).unwrap(),
            r#"{"routing_key":"mine","agent_id":"a1","x":1}"#
        );
        assert_eq!(
            tag_object(b"{}", &[("routing_key", "k")]).unwrap(),
            br#"{"routing_key":"k"}"#.to_vec()
        );
        for payload in [
            &b"[1,2]"[..],
            b"\"text\"",
            b"hello",
            b"{\"a\":",
            b"",
            b"\xff",
        ] {
            assert_eq!(tag_object(payload, &[("routing_key", "k")]), None);
        }
    }

    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    mod text_matches_tree {
        use super::super::*;
        use proptest::prelude::*;

        const NAMES: &[&str] = &[
            "metadata",
            "id",
            "data",
            "agentId",
            "timestamp",
            "routing_key",
            "a/b",
            "m~n",
            "0",
            "1",
            "",
            "list",
            "correlationId",
            "eventType",
            "payload",
            "cursor",
            "routingKey",
        ];
        const SCALARS: &[&str] = &[
            "0",
            "-1",
            "1.50",
            "1e3",
            "12345678901234567890",
            "3.0",
            "true",
            "null",
            r#""x""#,
            r#""a\"b""#,
            r#""\u00e9t\u00e9""#,
            r#""ts-1""#,
            r#""""#,
        ];
        const POINTERS: &[&str] = &[
            "/metadata/id",
            "/metadata/timestamp",
            "/data/agentId",
            "/routing_key",
            "/0/id",
            "/a~1b",
            "/m~0n/id",
            "/metadata/0",
            "/list/1",
            "/list/01",
            "/list/-1",
            "/list/+1",
            "/id/",
            "/",
            "//",
            "/data/list/0/agentId",
            "/0",
        ];

        /// JSON text: objects may repeat a member, numbers keep their written form.
        fn json_text() -> impl Strategy<Value = String> {
            let leaf = prop::sample::select(SCALARS).prop_map(str::to_string);
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec((prop::sample::select(NAMES), inner.clone()), 0..6)
                        .prop_map(|members| {
                            let body: Vec<String> = members
                                .iter()
                                .map(|(name, value)| format!("{:?} : {value}", name))
                                .collect();
                            format!("{{ {} }}", body.join(","))
                        }),
                    prop::collection::vec(inner, 0..4)
                        .prop_map(|items| format!("[{}]", items.join(", "))),
                ]
            })
        }

        proptest! {
            #[test]
            fn every_pointer_finds_what_the_parsed_tree_finds(text in json_text(), cut in 0usize..4) {
                // Now and then the text is cut short: then neither finds anything.
                let text = if cut == 0 { &text[..text.len() / 2] } else { &text[..] };
                let tree = serde_json::from_str::<Value>(text).ok();
                let root = serde_json::from_str::<Container<'_>>(text).ok();
                prop_assert_eq!(tree.is_some(), root.is_some());
                if let (Some(tree), Some(root)) = (tree.as_ref(), root.as_ref()) {
                    for pointer in POINTERS {
                        prop_assert_eq!(scalar_text(root, pointer), scalar(tree, pointer), "{}", pointer);
                    }
                }
                for envelope in [Envelope::Genesys, Envelope::Nice] {
                    let spec = EnvelopeSpec::for_envelope(envelope);
                    let expected = tree.as_ref().map(|t| inspect(t, &spec)).unwrap_or_default();
                    prop_assert_eq!(inspect_text(text.as_bytes(), &spec), expected);
                }
            }
        }
    }
}
