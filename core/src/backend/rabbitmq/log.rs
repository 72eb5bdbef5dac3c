//! The state every bus derives from a RabbitMQ durable journal (see `durable.rs`): its
//! entries, and what applying them in order makes of streams, sequences, dedupe and
//! consumers. Pure: no I/O, the same entries give every bus the same state. The
//! [`Journal`] holding that state for a bus is declared here too; `journal.rs` reads
//! and writes it (so the connection can hold one without a cycle between the files).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, OnceCell};

use crate::durable::{
    count_pending, no_such_consumer, no_such_stream, validate_name, ConsumerInfo, PublishAck, StreamConfig,
    StreamInfo,
};
use crate::envelope::Message;
use crate::error::Error;
use crate::subject::{matches_routed, patterns_overlap, validate_pattern};

/// busbar's own journal entries.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Entry {
    /// Nothing: once applied, everything before it is.
    Sync,
    Declare {
        name: String,
        subjects: Vec<String>,
        max_age_ms: Option<u64>,
        max_bytes: Option<u64>,
        max_messages: Option<u64>,
        duplicate_window_ms: u64,
    },
    Consumer {
        stream: String,
        name: String,
        filter: Option<String>,
        start: Start,
        max_ack_pending: usize,
    },
    Deliver {
        stream: String,
        consumer: String,
        seq: u64,
        attempt: u32,
        at_ms: u64,
        due_ms: u64,
        /// The consumer's incarnation it was picked from (absent from older buses' entries):
        /// once the consumer is deleted and made again, it no longer applies.
        #[serde(default)]
        consumer_id: Option<u64>,
    },
    /// `due_ms` none: settled for good (ack, or dead-lettered); some: redeliver then.
    Settle {
        stream: String,
        consumer: String,
        seq: u64,
        due_ms: Option<u64>,
        #[serde(default)]
        consumer_id: Option<u64>,
    },
    /// Deletes a stream with its messages and consumers.
    DeleteStream { name: String },
    /// Deletes a consumer: its position and unsettled deliveries are forgotten.
    DeleteConsumer { stream: String, name: String },
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum Start {
    Beginning,
    Sequence(u64),
    TimeMs(u64),
    New,
}

/// What applying an entry a caller waits for came to.
pub(super) enum Outcome {
    Stored(PublishAck),
    NoStream,
    Declared(std::result::Result<(), String>),
    Delivered(bool),
    /// A consumer entry applied: the incarnation of the consumer that exists now, `None`
    /// when its stream does not.
    Opened(Option<u64>),
    /// A delete applied: `Err` names what did not exist.
    Deleted(std::result::Result<(), Error>),
    Done,
}

pub(super) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The time `ms` after the epoch (saturating: a peer's entry may hold any number).
pub(super) fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 1_000))
}

#[derive(Default)]
pub(super) struct State {
    pub(super) streams: Vec<LogStream>,
    /// Nonces of entries this bus waits for, and their outcomes once applied.
    pub(super) waiting: HashSet<String>,
    pub(super) outcomes: HashMap<String, Outcome>,
    /// Offset of the next entry to read (where reading resumes on a new connection).
    pub(super) next_offset: u64,
    pub(super) closed: bool,
    /// Consumers created so far: the next one's incarnation. Every bus applies the same
    /// entries in the same order, so every bus numbers them alike.
    pub(super) consumers_created: u64,
}

pub(super) struct LogStream {
    pub(super) config: StreamConfig,
    pub(super) messages: VecDeque<Stored>,
    pub(super) last_seq: u64,
    pub(super) bytes: u64,
    pub(super) dedupe: HashMap<String, (u64, SystemTime)>,
    pub(super) dedupe_order: VecDeque<(SystemTime, String)>,
    pub(super) consumers: HashMap<String, ConsumerState>,
}

pub(super) struct Stored {
    pub(super) seq: u64,
    pub(super) message: Message,
    pub(super) undecodable: Option<String>,
    pub(super) time: SystemTime,
}

pub(super) struct ConsumerState {
    /// Its incarnation: a consumer deleted and made again under the same name is another.
    pub(super) id: u64,
    pub(super) filter: Option<String>,
    pub(super) max_ack_pending: usize,
    /// Next sequence not yet delivered.
    pub(super) cursor: u64,
    /// Delivered and not settled: sequence → (attempts so far, when it may be redelivered).
    pub(super) pending: BTreeMap<u64, (u32, SystemTime)>,
    /// Stream sequence of the last message delivered (0 before the first).
    pub(super) delivered: u64,
}

impl LogStream {
    pub(super) fn first_seq(&self) -> u64 {
        self.messages.front().map_or(self.last_seq + 1, |m| m.seq)
    }

    pub(super) fn stored(&self, seq: u64) -> Option<&Stored> {
        let first = self.messages.front()?.seq;
        self.messages.get(usize::try_from(seq.checked_sub(first)?).ok()?)
    }

    /// Drops what the limits no longer allow, oldest first: counts and bytes as entries
    /// are applied, age against this bus's clock.
    pub(super) fn prune(&mut self, now: SystemTime) {
        let config = &self.config;
        while let Some(oldest) = self.messages.front() {
            let too_many = config
                .max_messages
                .is_some_and(|max| self.messages.len() as u64 > max);
            let too_big = config.max_bytes.is_some_and(|max| self.bytes > max);
            let too_old = config
                .max_age
                .is_some_and(|age| now.duration_since(oldest.time).unwrap_or_default() > age);
            if !(too_many || too_big || too_old) {
                break;
            }
            self.bytes -= oldest.message.data().len() as u64;
            self.messages.pop_front();
        }
    }

    pub(super) fn info(&self) -> StreamInfo {
        StreamInfo {
            name: self.config.name.clone(),
            subjects: self.config.subjects.clone(),
            messages: self.messages.len() as u64,
            bytes: self.bytes,
            first_sequence: self.messages.front().map_or(0, |m| m.seq),
            last_sequence: self.last_seq,
        }
    }

    /// Where consumer `name` stands, as JetStream counts it; `None` when there is none.
    pub(super) fn consumer_info(&self, name: &str) -> Option<ConsumerInfo> {
        let c = self.consumers.get(name)?;
        let first = self.first_seq();
        let stored = self.messages.iter().map(|m| (m.seq, m.message.subject()));
        let pending = count_pending(stored, c.cursor.max(first), c.filter.as_deref());
        Some(ConsumerInfo {
            stream: self.config.name.clone(),
            name: name.to_owned(),
            filter: c.filter.clone(),
            pending,
            ack_pending: c.pending.keys().filter(|seq| **seq >= first).count() as u64,
            delivered_sequence: c.delivered,
        })
    }

    /// Stores `message` (or reports the duplicate of an id stored inside the window, by
    /// the messages' own times, so every bus decides alike).
    pub(super) fn store(&mut self, message: Message, undecodable: Option<String>) -> PublishAck {
        let at = message.time();
        let window = self.config.duplicate_window;
        while let Some((t, _)) = self.dedupe_order.front() {
            if at.duration_since(*t).unwrap_or_default() <= window {
                break;
            }
            if let Some((_, id)) = self.dedupe_order.pop_front() {
                if self
                    .dedupe
                    .get(&id)
                    .is_some_and(|(_, t)| at.duration_since(*t).unwrap_or_default() > window)
                {
                    self.dedupe.remove(&id);
                }
            }
        }
        let id = message.dedupe_id().into_owned();
        let name = self.config.name.clone();
        if let Some((seq, _)) = self.dedupe.get(&id) {
            return PublishAck {
                stream: name,
                sequence: *seq,
                duplicate: true,
            };
        }
        self.last_seq += 1;
        let seq = self.last_seq;
        self.dedupe.insert(id.clone(), (seq, at));
        self.dedupe_order.push_back((at, id));
        self.bytes += message.data().len() as u64;
        self.messages.push_back(Stored {
            seq,
            message,
            undecodable,
            time: at,
        });
        self.prune(SystemTime::UNIX_EPOCH);
        PublishAck {
            stream: name,
            sequence: seq,
            duplicate: false,
        }
    }
}

impl State {
    pub(super) fn stream(&mut self, name: &str) -> Option<&mut LogStream> {
        self.streams.iter_mut().find(|s| s.config.name == name)
    }

    pub(super) fn capturing(&mut self, subject: &str) -> Option<&mut LogStream> {
        self.streams
            .iter_mut()
            .find(|s| s.config.subjects.iter().any(|p| matches_routed(p, subject)))
    }

    /// Applies one entry, or `None` for one no bus could have written (a bad name or
    /// pattern, a consumer of a missing stream with a bad name): skipped, the caller counts
    /// it. What a well-formed entry names may be gone by the time it is applied: that is
    /// an outcome, not a skip.
    pub(super) fn apply(&mut self, entry: Entry) -> Option<Outcome> {
        entry.is_sound().then(|| self.apply_sound(entry))
    }

    fn apply_sound(&mut self, entry: Entry) -> Outcome {
        match entry {
            Entry::Sync => Outcome::Done,
            Entry::Declare {
                name,
                subjects,
                max_age_ms,
                max_bytes,
                max_messages,
                duplicate_window_ms,
            } => {
                if self.stream(&name).is_some() {
                    return Outcome::Declared(Ok(()));
                }
                for other in &self.streams {
                    for mine in &subjects {
                        if let Some(theirs) = other.config.subjects.iter().find(|t| patterns_overlap(mine, t))
                        {
                            return Outcome::Declared(Err(format!(
                                "stream {name:?}: subjects {mine:?} overlap {theirs:?} of stream {:?}",
                                other.config.name
                            )));
                        }
                    }
                }
                let mut config = StreamConfig::new(name, subjects)
                    .duplicate_window(Duration::from_millis(duplicate_window_ms));
                config.max_age = max_age_ms.map(Duration::from_millis);
                config.max_bytes = max_bytes;
                config.max_messages = max_messages;
                self.streams.push(LogStream {
                    config,
                    messages: VecDeque::new(),
                    last_seq: 0,
                    bytes: 0,
                    dedupe: HashMap::new(),
                    dedupe_order: VecDeque::new(),
                    consumers: HashMap::new(),
                });
                Outcome::Declared(Ok(()))
            }
            Entry::Consumer {
                stream,
                name,
                filter,
                start,
                max_ack_pending,
            } => {
                let id = self.consumers_created;
                let Some(s) = self.stream(&stream) else {
                    return Outcome::Opened(None);
                };
                if let Some(c) = s.consumers.get(&name) {
                    return Outcome::Opened(Some(c.id));
                }
                let cursor = match start {
                    Start::Beginning => s.first_seq(),
                    Start::Sequence(seq) => seq.max(1),
                    Start::TimeMs(ms) => s
                        .messages
                        .iter()
                        .find(|m| m.time >= time(ms))
                        .map_or(s.last_seq + 1, |m| m.seq),
                    Start::New => s.last_seq + 1,
                };
                s.consumers.insert(
                    name,
                    ConsumerState {
                        id,
                        filter,
                        max_ack_pending,
                        cursor,
                        pending: BTreeMap::new(),
                        delivered: 0,
                    },
                );
                self.consumers_created += 1;
                Outcome::Opened(Some(id))
            }
            Entry::Deliver {
                stream,
                consumer,
                seq,
                attempt,
                at_ms,
                due_ms,
                consumer_id,
            } => {
                let Some(c) = self.consumer(&stream, &consumer, consumer_id) else {
                    return Outcome::Delivered(false);
                };
                let won = match c.pending.get(&seq) {
                    None => attempt == 1 && seq >= c.cursor,
                    Some((attempts, due)) => attempt == attempts + 1 && *due <= time(at_ms),
                };
                if won {
                    c.pending.insert(seq, (attempt, time(due_ms)));
                    c.cursor = c.cursor.max(seq.saturating_add(1));
                    c.delivered = c.delivered.max(seq);
                }
                Outcome::Delivered(won)
            }
            Entry::Settle {
                stream,
                consumer,
                seq,
                due_ms,
                consumer_id,
            } => {
                if let Some(c) = self.consumer(&stream, &consumer, consumer_id) {
                    match due_ms {
                        None => {
                            c.pending.remove(&seq);
                        }
                        Some(ms) => {
                            if let Some((_, due)) = c.pending.get_mut(&seq) {
                                *due = time(ms);
                            }
                        }
                    }
                }
                Outcome::Done
            }
            Entry::DeleteStream { name } => {
                let Some(at) = self.streams.iter().position(|s| s.config.name == name) else {
                    return Outcome::Deleted(Err(no_such_stream(&name)));
                };
                self.streams.remove(at);
                Outcome::Deleted(Ok(()))
            }
            Entry::DeleteConsumer { stream, name } => {
                let Some(s) = self.stream(&stream) else {
                    return Outcome::Deleted(Err(no_such_stream(&stream)));
                };
                match s.consumers.remove(&name) {
                    Some(_) => Outcome::Deleted(Ok(())),
                    None => Outcome::Deleted(Err(no_such_consumer(&stream, &name))),
                }
            }
        }
    }

    /// Consumer `name` of `stream`, if it exists and is incarnation `id` (when given).
    fn consumer(&mut self, stream: &str, name: &str, id: Option<u64>) -> Option<&mut ConsumerState> {
        self.stream(stream)?
            .consumers
            .get_mut(name)
            .filter(|c| id.is_none_or(|id| c.id == id))
    }
}

impl Entry {
    /// Whether every name and pattern it holds is one busbar's own calls accept (a hostile
    /// or buggy peer may write anything to the journal).
    fn is_sound(&self) -> bool {
        let name = |kind, n: &str| validate_name(kind, n).is_ok();
        match self {
            Entry::Sync => true,
            Entry::Declare {
                name: n, subjects, ..
            } => {
                name("stream", n)
                    && !subjects.is_empty()
                    && subjects.iter().all(|p| validate_pattern(p).is_ok())
            }
            Entry::Consumer {
                stream,
                name: n,
                filter,
                max_ack_pending,
                ..
            } => {
                name("stream", stream)
                    && name("consumer", n)
                    && filter.as_deref().is_none_or(|f| validate_pattern(f).is_ok())
                    && *max_ack_pending > 0
            }
            Entry::Deliver {
                stream,
                consumer,
                attempt,
                ..
            } => name("stream", stream) && name("consumer", consumer) && *attempt > 0,
            Entry::Settle { stream, consumer, .. }
            | Entry::DeleteConsumer {
                stream,
                name: consumer,
            } => name("stream", stream) && name("consumer", consumer),
            Entry::DeleteStream { name: n } => name("stream", n),
        }
    }
}

/// The journal of one bus's exchange, as this bus has applied it.
pub(crate) struct Journal {
    pub(super) queue: String,
    pub(super) state: Mutex<State>,
    /// Woken by every applied entry and by close.
    pub(super) applied: Notify,
    pub(super) reading: OnceCell<()>,
}

impl Journal {
    pub(crate) fn new(exchange: &str) -> Self {
        Journal {
            queue: format!("{exchange}.journal"),
            state: Mutex::new(State::default()),
            applied: Notify::new(),
            reading: OnceCell::new(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the durable subscriptions and the calls waiting on the journal.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.applied.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> Option<Entry> {
        serde_json::from_str(json).ok()
    }

    fn apply(state: &mut State, json: &str) -> Option<Outcome> {
        state.apply(entry(json)?)
    }

    const DECLARE: &str = r#"{"op":"declare","name":"S","subjects":["s.>"],"duplicate_window_ms":1000}"#;
    const CONSUMER: &str =
        r#"{"op":"consumer","stream":"S","name":"c","filter":null,"start":"beginning","max_ack_pending":9}"#;

    #[test]
    fn a_consumer_made_again_is_another_incarnation() {
        let mut state = State::default();
        apply(&mut state, DECLARE).unwrap();
        let Some(Outcome::Opened(Some(old))) = apply(&mut state, CONSUMER) else {
            panic!("opened")
        };
        let Some(Outcome::Opened(Some(same))) = apply(&mut state, CONSUMER) else {
            panic!("kept")
        };
        assert_eq!(old, same, "opening an existing consumer keeps it");
        let deleted = apply(&mut state, r#"{"op":"delete_consumer","stream":"S","name":"c"}"#);
        assert!(matches!(deleted, Some(Outcome::Deleted(Ok(())))));
        let Some(Outcome::Opened(Some(new))) = apply(&mut state, CONSUMER) else {
            panic!("made again")
        };
        assert_ne!(old, new);
        let deliver = |id: u64| {
            format!(
                r#"{{"op":"deliver","stream":"S","consumer":"c","seq":1,"attempt":1,"at_ms":0,"due_ms":0,"consumer_id":{id}}}"#
            )
        };
        let stale = apply(&mut state, &deliver(old));
        assert!(
            matches!(stale, Some(Outcome::Delivered(false))),
            "the old incarnation's"
        );
        let fresh = apply(&mut state, &deliver(new));
        assert!(matches!(fresh, Some(Outcome::Delivered(true))));
        let again = apply(&mut state, r#"{"op":"delete_consumer","stream":"S","name":"c"}"#);
        assert!(matches!(again, Some(Outcome::Deleted(Ok(())))));
        let twice = apply(&mut state, r#"{"op":"delete_consumer","stream":"S","name":"c"}"#);
        assert!(matches!(twice, Some(Outcome::Deleted(Err(_)))));
        let gone = apply(&mut state, r#"{"op":"delete_stream","name":"S"}"#);
        assert!(matches!(gone, Some(Outcome::Deleted(Ok(())))));
        assert!(state.streams.is_empty());
        assert!(matches!(apply(&mut state, CONSUMER), Some(Outcome::Opened(None))));
    }

    #[test]
    fn entries_no_bus_writes_are_skipped_and_extremes_do_not_panic() {
        let mut state = State::default();
        apply(&mut state, DECLARE).unwrap();
        for bad in [
            r#"{"op":"declare","name":"a b","subjects":["x"],"duplicate_window_ms":1}"#,
            r#"{"op":"declare","name":"T","subjects":["x..y"],"duplicate_window_ms":1}"#,
            r#"{"op":"consumer","stream":"S","name":"c","filter":"a..b","start":"new","max_ack_pending":1}"#,
            r#"{"op":"settle","stream":"S","consumer":"","seq":1,"due_ms":null}"#,
        ] {
            assert!(apply(&mut state, bad).is_none(), "{bad}");
        }
        assert!(
            entry(r#"{"op":"truncate"}"#).is_none(),
            "an unknown kind does not parse"
        );
        let max = u64::MAX;
        apply(&mut state, CONSUMER).unwrap();
        let extreme = format!(
            r#"{{"op":"deliver","stream":"S","consumer":"c","seq":{max},"attempt":1,"at_ms":{max},"due_ms":{max}}}"#
        );
        assert!(apply(&mut state, &extreme).is_some());
        let late = r#"{"op":"consumer","stream":"S","name":"d","filter":null,"start":{"time_ms":18446744073709551615},"max_ack_pending":1}"#;
        assert!(apply(&mut state, late).is_some());
        let s = state.stream("S").unwrap();
        assert_eq!(s.consumer_info("c").unwrap().delivered_sequence, max);
    }
}
