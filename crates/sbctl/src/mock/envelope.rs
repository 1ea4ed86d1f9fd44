//! Event envelopes of the two CCaaS platforms the mock imitates. Pure functions: the caller
//! supplies the sequence number and timestamp so tests are exact.

use serde_json::json;

/// Header that marks a Genesys Cloud notification-channel client.
pub const GENESYS_AGENT_HEADER: &str = "x-genesys-user-id";
/// Header that marks a NICE CXone client.
pub const NICE_AGENT_HEADER: &str = "x-nice-agent-id";
/// Platform-neutral agent header set by Switchboard's identity stage.
pub const GENERIC_AGENT_HEADER: &str = "x-agent-id";
/// Agent id used in events when the upgrade request named none.
pub const UNKNOWN_AGENT: &str = "unknown";

/// How a session's envelope is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnvelopeMode {
    /// Genesys if the upgrade carried `x-genesys-user-id`, NICE if `x-nice-agent-id`, else Genesys.
    #[default]
    Auto,
    Genesys,
    Nice,
}

/// The wire shape of unsolicited events on one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    Genesys,
    Nice,
}

impl Envelope {
    pub fn as_str(self) -> &'static str {
        match self {
            Envelope::Genesys => "genesys",
            Envelope::Nice => "nice",
        }
    }
}

impl EnvelopeMode {
    /// Picks the envelope for a session from its (lowercase) upgrade header names.
    pub fn resolve<'a>(self, header_names: impl Iterator<Item = &'a str>) -> Envelope {
        match self {
            EnvelopeMode::Genesys => Envelope::Genesys,
            EnvelopeMode::Nice => Envelope::Nice,
            EnvelopeMode::Auto => {
                let mut saw_nice = false;
                for name in header_names {
                    if name == GENESYS_AGENT_HEADER {
                        return Envelope::Genesys;
                    }
                    saw_nice |= name == NICE_AGENT_HEADER;
                }
                if saw_nice {
                    Envelope::Nice
                } else {
                    Envelope::Genesys
                }
            }
        }
    }
}

impl std::str::FromStr for EnvelopeMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(EnvelopeMode::Auto),
            "genesys" => Ok(EnvelopeMode::Genesys),
            "nice" => Ok(EnvelopeMode::Nice),
            other => Err(format!(
                "unknown envelope {other:?} (expected auto, genesys or nice)"
            )),
        }
    }
}

/// Identifies one unsolicited event: which instance sent it, which agent it is for, and its
/// place in that agent's sequence (starting at 1, continuing across the agent's sessions).
#[derive(Debug, Clone, Copy)]
pub struct EventId<'a> {
    pub instance: &'a str,
    pub agent: &'a str,
    pub seq: u64,
    /// The session's routing key (`x-agent-routing-key`), repeated in the body when known.
    pub routing_key: Option<&'a str>,
}

impl EventId<'_> {
    /// Stable for an agent and sequence number, and unique across instances:
    /// `<instance>-<agent>-<seq>`. A replayed event carries the same id as the original.
    pub fn correlation_id(&self) -> String {
        format!("{}-{}-{}", self.instance, self.agent, self.seq)
    }

    fn body(&self, state: &str) -> serde_json::Value {
        let mut body = json!({ "agentId": self.agent, "seq": self.seq, "state": state });
        if let (Some(routing_key), Some(fields)) = (self.routing_key, body.as_object_mut()) {
            fields.insert("routingKey".to_owned(), routing_key.into());
        }
        body
    }
}

/// A Genesys Cloud style notification: topic name in `type`, body in `data`.
pub fn genesys_event(id: &EventId<'_>, timestamp: &str) -> serde_json::Value {
    json!({
        "type": format!("v2.agents.{}.events", id.agent),
        "data": id.body("available"),
        "metadata": { "id": id.correlation_id(), "timestamp": timestamp, "seq": id.seq },
    })
}

/// A NICE CXone style event: `eventType` plus `payload`, correlated by `correlationId`.
pub fn nice_event(id: &EventId<'_>, timestamp: &str) -> serde_json::Value {
    json!({
        "eventType": "agentState",
        "payload": id.body("Available"),
        "correlationId": id.correlation_id(),
        "timestamp": timestamp,
        // The resume position a client hands back as `?cursor=` (the agent's event sequence).
        "cursor": id.seq.to_string(),
    })
}

/// The event as the text of one WebSocket message.
pub fn event_text(envelope: Envelope, id: &EventId<'_>, timestamp: &str) -> String {
    match envelope {
        Envelope::Genesys => genesys_event(id, timestamp),
        Envelope::Nice => nice_event(id, timestamp),
    }
    .to_string()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on an unexpected error"
)]
mod tests {
    use super::*;
    use serde_json::Value;

    const ID: EventId<'static> = EventId {
        instance: "platform-1",
        agent: "agent-42",
        seq: 3,
        routing_key: None,
    };
    const TS: &str = "2024-05-01T12:00:00.250Z";

    #[test]
    fn genesys_shape() {
        let expected = json!({
            "type": "v2.agents.agent-42.events",
            "data": {"agentId": "agent-42", "seq": 3, "state": "available"},
            "metadata": {"id": "platform-1-agent-42-3", "timestamp": TS, "seq": 3},
        });
        assert_eq!(genesys_event(&ID, TS), expected);
    }

    #[test]
    fn nice_shape() {
        let expected = json!({
            "eventType": "agentState",
            "payload": {"agentId": "agent-42", "seq": 3, "state": "Available"},
            "correlationId": "platform-1-agent-42-3",
            "timestamp": TS,
            "cursor": "3",
        });
        assert_eq!(nice_event(&ID, TS), expected);
    }

    #[test]
    fn routing_key_is_in_the_body_when_known() {
        let id = EventId {
            routing_key: Some("rk-1"),
            ..ID
        };
        assert_eq!(genesys_event(&id, TS)["data"]["routingKey"], "rk-1");
        assert_eq!(nice_event(&id, TS)["payload"]["routingKey"], "rk-1");
        assert!(nice_event(&ID, TS)["payload"].get("routingKey").is_none());
    }

    #[test]
    fn event_text_round_trips_as_json() {
        let text = event_text(Envelope::Nice, &ID, TS);
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, nice_event(&ID, TS));
    }

    #[test]
    fn agent_ids_with_quotes_stay_valid_json() {
        let id = EventId {
            agent: "a\"b",
            ..ID
        };
        let parsed: Value = serde_json::from_str(&event_text(Envelope::Genesys, &id, TS)).unwrap();
        assert_eq!(parsed["data"]["agentId"], "a\"b");
        assert_eq!(parsed["type"], "v2.agents.a\"b.events");
    }

    #[test]
    fn auto_mode_follows_agent_headers() {
        let resolve = |names: &[&str]| EnvelopeMode::Auto.resolve(names.iter().copied());
        assert_eq!(resolve(&["host", NICE_AGENT_HEADER]), Envelope::Nice);
        assert_eq!(resolve(&[GENESYS_AGENT_HEADER]), Envelope::Genesys);
        // Both present: Genesys wins, as documented.
        assert_eq!(
            resolve(&[NICE_AGENT_HEADER, GENESYS_AGENT_HEADER]),
            Envelope::Genesys
        );
        assert_eq!(resolve(&["host", GENERIC_AGENT_HEADER]), Envelope::Genesys);
        assert_eq!(
            EnvelopeMode::Nice.resolve([GENESYS_AGENT_HEADER].into_iter()),
            Envelope::Nice
        );
    }

    #[test]
    fn mode_parses_from_cli_text() {
        assert_eq!("nice".parse::<EnvelopeMode>(), Ok(EnvelopeMode::Nice));
        assert!("NICE".parse::<EnvelopeMode>().is_err());
    }
}
