//! Per-agent event history: the sequence numbers and send times of the events the mock sent to
//! each agent, so a reconnecting client can ask for a replay (`since` / `cursor`) and check that
//! every event arrived exactly once.
//!
//! An agent's sequence starts at 1 and continues across sessions. Events of one agent are
//! numbered without gaps, so the log keeps only the first retained sequence number and the send
//! time of each event (8 bytes an event). Both the events per agent and the number of agents are
//! bounded; the agent that was least recently active is forgotten first, and an agent that was
//! forgotten (or cleared) starts again at 1. Pure: callers pass the time.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

/// How much history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Events kept per agent; older ones are forgotten.
    pub events_per_agent: usize,
    /// Agents kept; the least recently active is forgotten first.
    pub agents: usize,
}

/// One event as recorded: its place in the agent's sequence and when it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SentEvent {
    pub seq: u64,
    pub at_ms: u64,
}

/// Where a reconnecting client says it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumePoint {
    /// Genesys style `since=<RFC 3339>`: the client has every event sent at or before this time.
    Since { unix_ms: u64 },
    /// NICE style `cursor=<seq>`: the client has every event up to and including this sequence
    /// number.
    Cursor { seq: u64 },
}

#[derive(Debug)]
struct AgentLog {
    /// Sequence number of `sent_at_ms[0]`; the next event gets `first_seq + len`.
    first_seq: u64,
    sent_at_ms: VecDeque<u64>,
    /// Recency stamp; the key of this agent in `EventHistory::recency`.
    touched: u64,
}

impl AgentLog {
    fn next_seq(&self) -> u64 {
        self.first_seq
            .saturating_add(u64::try_from(self.sent_at_ms.len()).unwrap_or(u64::MAX))
    }

    fn events_from(&self, index: usize) -> Vec<SentEvent> {
        let mut seq = self
            .first_seq
            .saturating_add(u64::try_from(index).unwrap_or(u64::MAX));
        let mut events = Vec::with_capacity(self.sent_at_ms.len().saturating_sub(index));
        for at_ms in self.sent_at_ms.iter().skip(index) {
            events.push(SentEvent { seq, at_ms: *at_ms });
            seq = seq.saturating_add(1);
        }
        events
    }
}

/// What `GET /_mock/history` shows for one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentHistoryView {
    pub agent: String,
    pub next_seq: u64,
    pub events: Vec<SentEvent>,
}

/// Every agent's log, bounded by `HistoryLimits`.
#[derive(Debug)]
pub struct EventHistory {
    limits: HistoryLimits,
    agents: HashMap<String, AgentLog>,
    /// Recency stamp to agent, oldest first: the eviction order.
    recency: BTreeMap<u64, String>,
    next_stamp: u64,
}

impl EventHistory {
    pub fn new(limits: HistoryLimits) -> Self {
        Self {
            limits: HistoryLimits {
                events_per_agent: limits.events_per_agent.max(1),
                agents: limits.agents.max(1),
            },
            agents: HashMap::new(),
            recency: BTreeMap::new(),
            next_stamp: 0,
        }
    }

    /// The agent's log, created (evicting the least recently active agent if full) and marked
    /// as the most recently active.
    fn touch(&mut self, agent: &str) -> &mut AgentLog {
        let stamp = self.next_stamp;
        self.next_stamp = self.next_stamp.saturating_add(1);
        match self.agents.get_mut(agent) {
            Some(log) => {
                if let Some(name) = self.recency.remove(&log.touched) {
                    self.recency.insert(stamp, name);
                }
                log.touched = stamp;
            }
            None => {
                while self.agents.len() >= self.limits.agents {
                    let Some((_, oldest)) = self.recency.pop_first() else {
                        break;
                    };
                    self.agents.remove(&oldest);
                }
                self.recency.insert(stamp, agent.to_owned());
            }
        }
        self.agents
            .entry(agent.to_owned())
            .or_insert_with(|| AgentLog {
                first_seq: 1,
                sent_at_ms: VecDeque::new(),
                touched: stamp,
            })
    }

    /// Records one event sent to `agent` at `now_ms` and returns it with its sequence number.
    pub fn append(&mut self, agent: &str, now_ms: u64) -> SentEvent {
        let cap = self.limits.events_per_agent;
        let log = self.touch(agent);
        let seq = log.next_seq();
        log.sent_at_ms.push_back(now_ms);
        while log.sent_at_ms.len() > cap {
            log.sent_at_ms.pop_front();
            log.first_seq = log.first_seq.saturating_add(1);
        }
        SentEvent { seq, at_ms: now_ms }
    }

    /// The events to resend to a client that resumes at `point`: everything after it that is
    /// still kept, preceded by up to `overlap` events it already has (deliberate duplicates).
    /// A point older than the kept history replays all of it; a point at or past the newest
    /// event replays only the overlap.
    pub fn replay(&mut self, agent: &str, point: ResumePoint, overlap: usize) -> Vec<SentEvent> {
        if !self.agents.contains_key(agent) {
            return Vec::new();
        }
        let log = self.touch(agent);
        let kept = log.sent_at_ms.len();
        let position = match point {
            ResumePoint::Since { unix_ms } => log
                .sent_at_ms
                .iter()
                .position(|at_ms| *at_ms > unix_ms)
                .unwrap_or(kept),
            ResumePoint::Cursor { seq } => {
                if seq < log.first_seq {
                    0
                } else {
                    usize::try_from(seq - log.first_seq)
                        .map_or(kept, |index| index.saturating_add(1).min(kept))
                }
            }
        };
        log.events_from(position.saturating_sub(overlap))
    }

    /// The agent's kept events, oldest first, without marking it active.
    pub fn view(&self, agent: &str) -> Option<AgentHistoryView> {
        self.agents.get(agent).map(|log| AgentHistoryView {
            agent: agent.to_owned(),
            next_seq: log.next_seq(),
            events: log.events_from(0),
        })
    }

    /// Agents with a log.
    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    /// Forgets every agent; their sequences start again at 1.
    pub fn clear(&mut self) {
        self.agents.clear();
        self.recency.clear();
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on an unexpected error"
)]
mod tests {
    use super::*;

    fn history(events_per_agent: usize, agents: usize) -> EventHistory {
        EventHistory::new(HistoryLimits {
            events_per_agent,
            agents,
        })
    }

    fn seqs(events: &[SentEvent]) -> Vec<u64> {
        events.iter().map(|event| event.seq).collect()
    }

    #[test]
    fn sequences_are_per_agent_and_continue() {
        let mut history = history(100, 10);
        assert_eq!(history.append("a", 10).seq, 1);
        assert_eq!(history.append("b", 11).seq, 1);
        assert_eq!(history.append("a", 12).seq, 2);
        assert_eq!(history.view("a").unwrap().next_seq, 3);
        assert_eq!(seqs(&history.view("a").unwrap().events), vec![1, 2]);
        assert!(history.view("c").is_none());
    }

    #[test]
    fn cursor_replay_overlaps() {
        let mut history = history(100, 10);
        for at in 0..10 {
            history.append("a", 1000 + at);
        }
        // Client has 1..=6: replay 7..=10 plus 3 it already has.
        let replay = history.replay("a", ResumePoint::Cursor { seq: 6 }, 3);
        assert_eq!(seqs(&replay), vec![4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(replay.first().unwrap().at_ms, 1003);
        // Up to date: only the overlap.
        let replay = history.replay("a", ResumePoint::Cursor { seq: 10 }, 3);
        assert_eq!(seqs(&replay), vec![8, 9, 10]);
        // From the future (e.g. after a reset): still only the overlap.
        let replay = history.replay("a", ResumePoint::Cursor { seq: 99 }, 3);
        assert_eq!(seqs(&replay), vec![8, 9, 10]);
        // Overlap reaching before the start is cut.
        let replay = history.replay("a", ResumePoint::Cursor { seq: 1 }, 3);
        assert_eq!(seqs(&replay), (1..=10).collect::<Vec<_>>());
        let replay = history.replay("a", ResumePoint::Cursor { seq: 0 }, 0);
        assert_eq!(seqs(&replay).len(), 10);
        assert!(history
            .replay("nobody", ResumePoint::Cursor { seq: 0 }, 3)
            .is_empty());
    }

    #[test]
    fn since_replay_is_strictly_after_the_time() {
        let mut history = history(100, 10);
        for at in [100, 200, 200, 300, 400] {
            history.append("a", at);
        }
        let replay = history.replay("a", ResumePoint::Since { unix_ms: 200 }, 0);
        assert_eq!(seqs(&replay), vec![4, 5]);
        let replay = history.replay("a", ResumePoint::Since { unix_ms: 200 }, 2);
        assert_eq!(seqs(&replay), vec![2, 3, 4, 5]);
        let replay = history.replay("a", ResumePoint::Since { unix_ms: 0 }, 2);
        assert_eq!(seqs(&replay), vec![1, 2, 3, 4, 5]);
        let replay = history.replay("a", ResumePoint::Since { unix_ms: 999 }, 2);
        assert_eq!(seqs(&replay), vec![4, 5]);
    }

    #[test]
    fn per_agent_log_is_bounded() {
        let mut history = history(3, 10);
        for at in 0..5 {
            history.append("a", at);
        }
        let view = history.view("a").unwrap();
        assert_eq!(seqs(&view.events), vec![3, 4, 5]);
        assert_eq!(view.next_seq, 6);
        // A cursor older than what is kept replays everything kept.
        let replay = history.replay("a", ResumePoint::Cursor { seq: 1 }, 3);
        assert_eq!(seqs(&replay), vec![3, 4, 5]);
        let replay = history.replay("a", ResumePoint::Cursor { seq: 3 }, 1);
        assert_eq!(seqs(&replay), vec![3, 4, 5]);
    }

    #[test]
    fn least_recently_active_agent_is_evicted() {
        let mut history = history(10, 2);
        history.append("a", 1);
        history.append("b", 2);
        history.append("a", 3);
        history.append("c", 4);
        assert_eq!(history.agent_count(), 2);
        assert!(history.view("b").is_none(), "b was least recently active");
        assert_eq!(history.view("a").unwrap().next_seq, 3);
        // A replay counts as activity.
        history.replay("a", ResumePoint::Cursor { seq: 0 }, 0);
        history.append("d", 5);
        assert!(history.view("c").is_none());
        assert!(history.view("a").is_some());
        // An evicted agent starts again at 1.
        history.append("b", 6);
        assert_eq!(history.view("b").unwrap().next_seq, 2);
        assert_eq!(history.recency.len(), history.agents.len());
    }

    #[test]
    fn clear_restarts_sequences() {
        let mut history = history(10, 10);
        history.append("a", 1);
        history.clear();
        assert_eq!(history.agent_count(), 0);
        assert_eq!(history.append("a", 2).seq, 1);
    }
}
