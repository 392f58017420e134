//! The `s3` source's keys: the shared S3 location ([`crate::aws::location`]), the challenge
//! file that proves a bucket's owner granted access, how many folders are listed at once, and
//! event mode's queue (`queue_url`, `event_batch_seconds`, checked by [`crate::events`]);
//! their checks; and its `check` probe.

use super::super::{Source, SourceContext, SourceKind};
use crate::aws::location::{self, RawS3Location, S3Location};
use crate::config::Connection;
use crate::config::kind::{KindTable, keys_of};
use crate::config::validate::{Problems, in_range};
use crate::probe::Report;
use serde::Deserialize;

/// `[source]` of `type = "s3"` (the default), as written (the location keys aside).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawS3Source {
    pub challenge_file: Option<String>,
    pub max_concurrent_listings: Option<i64>,
    pub queue_url: Option<String>,
    pub event_batch_seconds: Option<i64>,
}

/// A bucket and folder to import from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3SourceSpec {
    pub location: S3Location,
    /// An empty object the bucket's owner puts under the prefix to prove the grant is
    /// theirs; `check` looks for it.
    pub challenge_file: Option<String>,
    /// How many folders are listed at once (`max_concurrent_listings`, default 8; 1 lists
    /// serially).
    pub max_concurrent_listings: usize,
    /// Event mode (`queue_url`): the daemon also imports what S3 notifications name.
    pub events: Option<crate::events::EventSpec>,
}

#[async_trait::async_trait]
impl SourceKind for S3SourceSpec {
    fn keys() -> Vec<&'static str> {
        [keys_of::<RawS3Location>(), keys_of::<RawS3Source>()].concat()
    }

    fn validate(mut table: KindTable<'_>, _cx: &SourceContext<'_>, p: &mut Problems<'_>) -> Option<Self> {
        let before = p.count();
        let raw: Option<RawS3Location> = table.part(p);
        let insecure_ok = raw.as_ref().and_then(|r| r.allow_insecure_http).unwrap_or(false);
        let s: RawS3Source = table.rest(p)?;
        let location = location::validate(raw?, "source", "read", p);
        if s.challenge_file.as_deref() == Some("") {
            p.add(
                "source.challenge_file",
                "is empty; name the object `check` should find, or remove the key",
            );
        }
        let max_concurrent_listings = in_range(
            p,
            "source.max_concurrent_listings",
            s.max_concurrent_listings,
            8,
            1,
            64,
        ) as usize;
        let events = crate::events::validate(s.queue_url, s.event_batch_seconds, insecure_ok, p);
        (p.count() == before).then_some(S3SourceSpec {
            location: location?,
            challenge_file: s.challenge_file,
            max_concurrent_listings,
            events,
        })
    }

    fn prefix(&self) -> &str {
        &self.location.prefix
    }

    fn location(&self) -> Option<&S3Location> {
        Some(&self.location)
    }

    fn must_list(&self) -> Option<String> {
        self.challenge_file
            .as_ref()
            .map(|f| format!("{}{f}", self.location.prefix))
    }

    async fn open(&self, connection: &Connection) -> Box<dyn Source> {
        Box::new(super::S3Source::new(&connection.name, self).await)
    }

    async fn check_access(&self, connection: &Connection, report: &mut Report) -> bool {
        let mut ok = super::check::access(report, &connection.name, &self.location).await;
        if let Some(events) = &self.events {
            ok &= crate::events::check(report, &connection.name, &self.location, events).await;
        }
        ok
    }
}
