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

/// True when the event names an agent or routing key other than the session's.
pub fn is_misrouted(facts: &EventFacts, agent_id: &str, routing_key: &str) -> bool {
    facts.agent.as_deref().is_some_and(|a| a != agent_id)
        || facts
            .routing_key
            .as_deref()
            .is_some_and(|k| k != routing_key)
}

/// A JSON object's members in their original order, values kept byte-exact.
struct OrderedObject<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for OrderedObject<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = OrderedObject<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                    members.push((key, value));
                }
                Ok(OrderedObject(members))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Adds (or overwrites) string members of a JSON object message, keeping every other member and
/// its value byte-exact and in order; the tags go first. `None` when the payload is not a JSON
/// object (such messages are forwarded untouched).
pub fn tag_object(payload: &[u8], tags: &[(&str, &str)]) -> Option<Vec<u8>> {
    let object: OrderedObject<'_> = serde_json::from_slice(payload).ok()?;
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
    for (name, value) in object
        .0
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
}
