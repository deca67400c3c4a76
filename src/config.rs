//! Configuration: app settings (environment) and command-line flags, parsed once into typed values.
//!
//! clap merges the two sources (a flag wins over its environment variable); [`Config::parse`] then
//! validates everything at once, so an admin sees every bad setting in one error, each named with
//! the bad value and what is expected.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::model::{GroupId, parse_group_id};
use crate::privacy::{PseudonymKey, Retention, Subjects};

pub const DEFAULT_GRAPH_BASE_URL: &str = "https://graph.microsoft.com/v1.0";
pub const DEFAULT_PRESENCE_DB: &str = "presence.db";
pub const DEFAULT_COSMOS_DATABASE: &str = "presence";
pub const DEFAULT_COSMOS_CONTAINER: &str = "history";
pub const DEFAULT_COSMOS_STATE_CONTAINER: &str = "state";
pub const DEFAULT_SCHEDULE: &str = "0 */5 * * * *";
/// Port for local runs when no Functions host gave one.
pub const DEFAULT_LOCAL_PORT: u16 = 8080;
pub const DEFAULT_RUN_DEADLINE_SECONDS: u64 = 240;
pub const DEFAULT_PRESENCE_CONCURRENCY: usize = 8;
/// Graph documents 1,500 presence calls per 30 s per app per tenant, and the app is the Function
/// App's own managed identity, which nothing else uses; the limiter's window is 2% longer than
/// Graph's, for arrivals that trail their starts. A manual `poll-once` beside the timer can still
/// meet 429s, which are retried.
pub const DEFAULT_PRESENCE_CALLS_PER_30S: u32 = 1_500;
/// Reading membership in a run is kept while it takes at most this long (see
/// `graph::reuse`); a minute of paging at a million users is what makes reuse worth its lag.
pub const DEFAULT_MEMBERSHIP_INLINE_LIMIT_SECONDS: u64 = 20;
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

/// The raw settings, as clap collects them from flags and environment variables.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RawSettings {
    /// Entra ID group object ids, separated by commas, semicolons or white space.
    #[arg(long = "groups", global = true, env = "ENTRA_GROUP_IDS")]
    pub entra_group_ids: Option<String>,
    /// Microsoft Graph base URL; national clouds work by changing it.
    #[arg(long, global = true, env = "GRAPH_BASE_URL")]
    pub graph_base_url: Option<String>,
    /// Cosmos DB account endpoint; when unset, the embedded store at PRESENCE_DB is used.
    #[arg(long, global = true, env = "COSMOS_ENDPOINT")]
    pub cosmos_endpoint: Option<String>,
    #[arg(long, global = true, env = "COSMOS_DATABASE")]
    pub cosmos_database: Option<String>,
    #[arg(long, global = true, env = "COSMOS_CONTAINER")]
    pub cosmos_container: Option<String>,
    #[arg(long, global = true, env = "COSMOS_STATE_CONTAINER")]
    pub cosmos_state_container: Option<String>,
    /// Account key, only for a Cosmos DB emulator; deployments use the managed identity.
    #[arg(long, global = true, env = "COSMOS_KEY", hide_env_values = true)]
    pub cosmos_key: Option<String>,
    /// SQLite file of the embedded store.
    #[arg(long, global = true, env = "PRESENCE_DB")]
    pub presence_db: Option<String>,
    /// NCRONTAB schedule of the timer (read by the Functions host through function.json).
    #[arg(long, global = true, env = "POLL_SCHEDULE")]
    pub poll_schedule: Option<String>,
    /// Seconds a run may take before it stops and returns (below host.json functionTimeout).
    #[arg(long, global = true, env = "RUN_DEADLINE_SECONDS")]
    pub run_deadline_seconds: Option<String>,
    /// Presence calls in flight at once.
    #[arg(long, global = true, env = "PRESENCE_CONCURRENCY")]
    pub presence_concurrency: Option<String>,
    /// Client-side cap on presence calls per 30 seconds.
    #[arg(long, global = true, env = "PRESENCE_CALLS_PER_30S")]
    pub presence_calls_per_30s: Option<String>,
    /// Seconds of membership paging beyond which runs reuse the membership read in the background
    /// during the previous run instead of reading it themselves (0: always reuse).
    #[arg(long, global = true, env = "MEMBERSHIP_INLINE_LIMIT_SECONDS")]
    pub membership_inline_limit_seconds: Option<String>,
    /// Days history is kept.
    #[arg(long, global = true, env = "RETENTION_DAYS")]
    pub retention_days: Option<String>,
    /// Optional: base64 key (32+ bytes) of the pseudonym mode; user ids are then stored as
    /// HMAC-SHA256 pseudonyms. Best kept as a Key Vault reference.
    #[arg(long, global = true, env = "USER_ID_PSEUDONYM_KEY", hide_env_values = true)]
    pub user_id_pseudonym_key: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub groups: Vec<GroupId>,
    pub graph: GraphSettings,
    pub store: StoreSettings,
    pub schedule: String,
    pub run_deadline: Duration,
    /// Membership paging that takes longer than this is done in the background for the next run.
    pub membership_inline_limit: Duration,
    pub retention_days: u32,
    pub subjects: Subjects,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GraphSettings {
    /// Always ends without a slash, e.g. `https://graph.microsoft.com/v1.0`.
    pub base_url: Url,
    pub presence_concurrency: usize,
    pub presence_calls_per_30s: u32,
    /// Timeouts, retry limits and batch sizes; defaults suit production, tests shorten them.
    pub tuning: GraphTuning,
}

/// The Graph client's knobs that are not app settings: production uses the defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphTuning {
    pub connect_timeout: Duration,
    /// One HTTP call, from sending to the last byte of the body.
    pub request_timeout: Duration,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// First backoff step when Graph gives no Retry-After; doubles per attempt, with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// The window `presence_calls_per_30s` applies to (Graph documents 30 s).
    pub presence_window: Duration,
    /// Ids per presence call (Graph accepts at most 650).
    pub presence_batch_size: usize,
    /// Groups whose members are listed at once.
    pub group_concurrency: usize,
    /// Attempts for a group Graph says does not exist (new groups take time to replicate).
    pub not_found_attempts: u32,
}

impl Default for GraphTuning {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_attempts: 6,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            presence_window: Duration::from_secs(30),
            presence_batch_size: 650,
            group_concurrency: 4,
            not_found_attempts: 3,
        }
    }
}

impl GraphSettings {
    /// The token scope for this Graph cloud: its origin plus `/.default`.
    pub fn token_scope(&self) -> String {
        format!("{}/.default", self.base_url.origin().ascii_serialization())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum StoreSettings {
    Sqlite { path: PathBuf },
    Cosmos(CosmosSettings),
}

#[derive(Clone, PartialEq)]
pub struct CosmosSettings {
    pub endpoint: Url,
    pub database: String,
    pub container: String,
    pub state_container: String,
    pub key: Option<Secret>,
}

impl fmt::Debug for CosmosSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CosmosSettings")
            .field("endpoint", &self.endpoint.as_str())
            .field("database", &self.database)
            .field("container", &self.container)
            .field("state_container", &self.state_container)
            .field("key", &self.key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// A value that must never be printed; its `Debug` and `Display` say only that it is set.
#[derive(Clone, PartialEq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// One bad setting: its name, the value given, and what is expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingError {
    pub setting: &'static str,
    pub problem: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.problem)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub struct ConfigError {
    pub errors: Vec<SettingError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for e in &self.errors {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

/// What admin commands (export, erasure) need: the store, not the groups or Graph.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreConfig {
    pub store: StoreSettings,
    pub retention_days: u32,
    pub subjects: Subjects,
}

impl StoreConfig {
    pub fn parse(raw: &RawSettings) -> Result<StoreConfig, ConfigError> {
        let mut errors = Vec::new();
        let store = collect(&mut errors, parse_store(raw));
        let retention_days = collect(
            &mut errors,
            parse_number("RETENTION_DAYS", raw.retention_days.as_deref(), DEFAULT_RETENTION_DAYS, 1..=3_650),
        );
        let subjects = collect(&mut errors, parse_subjects(raw.user_id_pseudonym_key.as_deref()));
        match (store, retention_days, subjects) {
            (Some(store), Some(retention_days), Some(subjects)) if errors.is_empty() => {
                Ok(StoreConfig { store, retention_days, subjects })
            }
            _ => Err(ConfigError { errors }),
        }
    }

    pub fn retention(&self) -> Retention {
        Retention::days(self.retention_days)
    }
}

impl Config {
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig { store: self.store.clone(), retention_days: self.retention_days, subjects: self.subjects.clone() }
    }

    pub fn retention(&self) -> Retention {
        Retention::days(self.retention_days)
    }

    pub fn parse(raw: &RawSettings) -> Result<Config, ConfigError> {
        let mut errors = Vec::new();
        let groups = collect(&mut errors, parse_groups(raw.entra_group_ids.as_deref()));
        let base_url = collect(
            &mut errors,
            // Empty means unset, as for every other setting.
            parse_https_url(
                "GRAPH_BASE_URL",
                raw.graph_base_url.as_deref().filter(|v| !v.trim().is_empty()).unwrap_or(DEFAULT_GRAPH_BASE_URL),
            ),
        );
        let store = collect(&mut errors, parse_store(raw));
        let run_deadline = collect(
            &mut errors,
            parse_number(
                "RUN_DEADLINE_SECONDS",
                raw.run_deadline_seconds.as_deref(),
                DEFAULT_RUN_DEADLINE_SECONDS,
                10..=3_600,
            ),
        );
        let presence_concurrency = collect(
            &mut errors,
            parse_number(
                "PRESENCE_CONCURRENCY",
                raw.presence_concurrency.as_deref(),
                DEFAULT_PRESENCE_CONCURRENCY,
                1..=64,
            ),
        );
        let presence_calls_per_30s = collect(
            &mut errors,
            parse_number(
                "PRESENCE_CALLS_PER_30S",
                raw.presence_calls_per_30s.as_deref(),
                DEFAULT_PRESENCE_CALLS_PER_30S,
                1..=1_500,
            ),
        );
        let membership_inline_limit = collect(
            &mut errors,
            parse_number(
                "MEMBERSHIP_INLINE_LIMIT_SECONDS",
                raw.membership_inline_limit_seconds.as_deref(),
                DEFAULT_MEMBERSHIP_INLINE_LIMIT_SECONDS,
                0..=3_600,
            ),
        );
        let retention_days = collect(
            &mut errors,
            parse_number("RETENTION_DAYS", raw.retention_days.as_deref(), DEFAULT_RETENTION_DAYS, 1..=3_650),
        );
        let schedule = collect(&mut errors, parse_schedule(raw.poll_schedule.as_deref()));
        let subjects = collect(&mut errors, parse_subjects(raw.user_id_pseudonym_key.as_deref()));

        match (
            groups,
            base_url,
            store,
            run_deadline,
            presence_concurrency,
            presence_calls_per_30s,
            membership_inline_limit,
            retention_days,
            schedule,
            subjects,
        ) {
            (
                Some(groups),
                Some(base_url),
                Some(store),
                Some(run_deadline),
                Some(presence_concurrency),
                Some(presence_calls_per_30s),
                Some(membership_inline_limit),
                Some(retention_days),
                Some(schedule),
                Some(subjects),
            ) if errors.is_empty() => Ok(Config {
                groups,
                graph: GraphSettings {
                    base_url,
                    presence_concurrency,
                    presence_calls_per_30s,
                    tuning: GraphTuning::default(),
                },
                store,
                schedule,
                run_deadline: Duration::from_secs(run_deadline),
                membership_inline_limit: Duration::from_secs(membership_inline_limit),
                retention_days,
                subjects,
            }),
            _ => Err(ConfigError { errors }),
        }
    }

    /// What `handler check` prints: every value in use, never a secret.
    pub fn describe(&self) -> String {
        let groups: Vec<String> = self.groups.iter().map(GroupId::to_string).collect();
        let store = match &self.store {
            StoreSettings::Sqlite { path } => format!("embedded SQLite at {}", path.display()),
            StoreSettings::Cosmos(c) => format!(
                "Cosmos DB {} database={} container={} state_container={} auth={}",
                c.endpoint,
                c.database,
                c.container,
                c.state_container,
                if c.key.is_some() { "account key (emulator)" } else { "managed identity" }
            ),
        };
        format!(
            "groups ({}): {}\ngraph: {} (token scope {})\nstore: {}\nschedule: {}\nrun deadline: {} s\n\
             presence: {} calls in flight, at most {} calls / 30 s\nmembership: read in each run while paging takes \
             at most {} s\nretention: {} days\nuser ids stored: {}",
            groups.len(),
            groups.join(", "),
            self.graph.base_url,
            self.graph.token_scope(),
            store,
            self.schedule,
            self.run_deadline.as_secs(),
            self.graph.presence_concurrency,
            self.graph.presence_calls_per_30s,
            self.membership_inline_limit.as_secs(),
            self.retention_days,
            if self.subjects.is_pseudonymous() {
                "as keyed pseudonyms (USER_ID_PSEUDONYM_KEY is set)"
            } else {
                "as Entra object ids"
            },
        )
    }
}

/// The pseudonym mode is on when `USER_ID_PSEUDONYM_KEY` is set; the key is never echoed.
fn parse_subjects(value: Option<&str>) -> Result<Subjects, Vec<SettingError>> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(Subjects::plain()),
        Some(value) => {
            PseudonymKey::parse(value).map(Subjects::pseudonymous).map_err(|e| error("USER_ID_PSEUDONYM_KEY", e))
        }
    }
}

fn collect<T>(errors: &mut Vec<SettingError>, result: Result<T, Vec<SettingError>>) -> Option<T> {
    result.map_err(|e| errors.extend(e)).ok()
}

fn error(setting: &'static str, problem: impl Into<String>) -> Vec<SettingError> {
    vec![SettingError { setting, problem: problem.into() }]
}

/// Parses `ENTRA_GROUP_IDS`: GUIDs separated by commas, semicolons or white space; duplicates
/// are dropped, and every invalid entry is named.
pub fn parse_groups(value: Option<&str>) -> Result<Vec<GroupId>, Vec<SettingError>> {
    const SETTING: &str = "ENTRA_GROUP_IDS";
    let value = value.unwrap_or("");
    let mut groups: Vec<GroupId> = Vec::new();
    let mut errors = Vec::new();
    for entry in value.split(|c: char| c == ',' || c == ';' || c.is_whitespace()).filter(|e| !e.is_empty()) {
        match parse_group_id(entry) {
            Some(id) if !groups.contains(&id) => groups.push(id),
            Some(_) => {}
            None => errors.push(SettingError {
                setting: SETTING,
                problem: format!(
                    "{entry:?} is not a group object id (expected a GUID such as 6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f0a1b2c)"
                ),
            }),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if groups.is_empty() {
        return Err(error(
            SETTING,
            format!(
                "no group ids in {value:?}: expected at least one Entra ID group object id (GUID), separated by commas, semicolons or spaces"
            ),
        ));
    }
    Ok(groups)
}

fn parse_https_url(setting: &'static str, value: &str) -> Result<Url, Vec<SettingError>> {
    let expected = "expected an absolute http(s) URL such as https://graph.microsoft.com/v1.0";
    let mut url =
        Url::parse(value.trim()).map_err(|e| error(setting, format!("{value:?} is not a URL ({e}): {expected}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(error(setting, format!("{value:?} is not an http(s) URL with a host: {expected}")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(error(setting, format!("{value:?} has a query or fragment: {expected}")));
    }
    let trimmed = url.path().trim_end_matches('/').to_string();
    url.set_path(&trimmed);
    Ok(url)
}

fn parse_store(raw: &RawSettings) -> Result<StoreSettings, Vec<SettingError>> {
    let endpoint = raw.cosmos_endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty());
    let Some(endpoint) = endpoint else {
        let path = raw.presence_db.as_deref().map(str::trim).filter(|p| !p.is_empty()).unwrap_or(DEFAULT_PRESENCE_DB);
        return Ok(StoreSettings::Sqlite { path: PathBuf::from(path) });
    };
    let mut errors = Vec::new();
    let endpoint = collect(&mut errors, parse_https_url("COSMOS_ENDPOINT", endpoint));
    let database =
        collect(&mut errors, parse_name("COSMOS_DATABASE", raw.cosmos_database.as_deref(), DEFAULT_COSMOS_DATABASE));
    let container =
        collect(&mut errors, parse_name("COSMOS_CONTAINER", raw.cosmos_container.as_deref(), DEFAULT_COSMOS_CONTAINER));
    let state_container = collect(
        &mut errors,
        parse_name("COSMOS_STATE_CONTAINER", raw.cosmos_state_container.as_deref(), DEFAULT_COSMOS_STATE_CONTAINER),
    );
    let key = raw.cosmos_key.as_deref().map(str::trim).filter(|k| !k.is_empty()).map(|k| Secret(k.to_string()));
    match (endpoint, database, container, state_container) {
        (Some(endpoint), Some(database), Some(container), Some(state_container)) if errors.is_empty() => {
            Ok(StoreSettings::Cosmos(CosmosSettings { endpoint, database, container, state_container, key }))
        }
        _ => Err(errors),
    }
}

/// Cosmos DB database and container names: 1–255 characters, none of `/ \ # ?`, no trailing space.
fn parse_name(setting: &'static str, value: Option<&str>, default: &str) -> Result<String, Vec<SettingError>> {
    let value = value.filter(|v| !v.is_empty()).unwrap_or(default);
    let valid = (1..=255).contains(&value.len())
        && !value.contains(['/', '\\', '#', '?'])
        && !value.ends_with(' ')
        && !value.chars().any(char::is_control);
    if valid {
        Ok(value.to_string())
    } else {
        Err(error(
            setting,
            format!(
                "{value:?} is not a valid Cosmos DB name: expected 1-255 characters without / \\ # ? or a trailing space"
            ),
        ))
    }
}

fn parse_number<T>(
    setting: &'static str,
    value: Option<&str>,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, Vec<SettingError>>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    match value.parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(error(
            setting,
            format!("{value:?} is not a whole number from {} to {} (default {default})", range.start(), range.end()),
        )),
    }
}

/// Checks the shape of an NCRONTAB expression (five or six fields); the host does the rest.
fn parse_schedule(value: Option<&str>) -> Result<String, Vec<SettingError>> {
    let value = value.map(str::trim).filter(|v| !v.is_empty()).unwrap_or(DEFAULT_SCHEDULE);
    let fields = value.split_whitespace().count();
    if (5..=6).contains(&fields) {
        Ok(value.split_whitespace().collect::<Vec<_>>().join(" "))
    } else {
        Err(error(
            "POLL_SCHEDULE",
            format!(
                "{value:?} has {fields} fields: expected an NCRONTAB expression of six fields such as \"{DEFAULT_SCHEDULE}\""
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(groups: &str) -> RawSettings {
        RawSettings { entra_group_ids: Some(groups.to_string()), ..RawSettings::default() }
    }

    const A: &str = "11111111-1111-4111-8111-111111111111";
    const B: &str = "22222222-2222-4222-8222-222222222222";

    #[test]
    fn groups_accept_every_separator_and_drop_duplicates() {
        let config = Config::parse(&raw(&format!(" {A},{B};\n{A}\t{{{B}}} "))).expect("valid");
        assert_eq!(config.groups, vec![parse_group_id(A).unwrap(), parse_group_id(B).unwrap()]);
    }

    #[test]
    fn every_bad_group_is_named() {
        let err = Config::parse(&raw(&format!("{A},not-a-guid;{B} 1234"))).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.errors.len(), 2, "{text}");
        assert!(text.contains("\"not-a-guid\""), "{text}");
        assert!(text.contains("\"1234\""), "{text}");
        assert!(text.contains("ENTRA_GROUP_IDS"), "{text}");
    }

    #[test]
    fn unhyphenated_guids_are_rejected_so_typos_are_caught() {
        let err = Config::parse(&raw("11111111111141118111111111111111")).unwrap_err();
        assert!(err.to_string().contains("is not a group object id"));
    }

    #[test]
    fn empty_and_missing_group_lists_are_errors() {
        for value in [Some(" , ;"), None] {
            let raw = RawSettings { entra_group_ids: value.map(str::to_string), ..RawSettings::default() };
            let err = Config::parse(&raw).unwrap_err();
            assert!(err.to_string().contains("no group ids"), "{err}");
        }
    }

    #[test]
    fn defaults_select_global_graph_and_sqlite() {
        let config = Config::parse(&raw(A)).unwrap();
        assert_eq!(config.graph.base_url.as_str(), DEFAULT_GRAPH_BASE_URL);
        assert_eq!(config.graph.token_scope(), "https://graph.microsoft.com/.default");
        assert_eq!(config.store, StoreSettings::Sqlite { path: PathBuf::from(DEFAULT_PRESENCE_DB) });
        assert_eq!(config.schedule, DEFAULT_SCHEDULE);
        assert_eq!(config.run_deadline, Duration::from_secs(DEFAULT_RUN_DEADLINE_SECONDS));
    }

    #[test]
    fn national_cloud_scope_follows_the_base_url() {
        let mut raw = raw(A);
        raw.graph_base_url = Some("https://graph.microsoft.us/v1.0/".into());
        let config = Config::parse(&raw).unwrap();
        assert_eq!(config.graph.base_url.as_str(), "https://graph.microsoft.us/v1.0");
        assert_eq!(config.graph.token_scope(), "https://graph.microsoft.us/.default");
    }

    #[test]
    fn bad_urls_are_named() {
        for bad in
            ["graph.microsoft.com", "ftp://graph.microsoft.com", "https://graph.microsoft.com/v1.0?x=1", "http://"]
        {
            let mut raw = raw(A);
            raw.graph_base_url = Some(bad.into());
            let err = Config::parse(&raw).unwrap_err();
            assert!(err.to_string().contains(&format!("GRAPH_BASE_URL: {bad:?}")), "{err}");
        }
    }

    #[test]
    fn cosmos_is_selected_by_its_endpoint_and_its_key_never_prints() {
        let mut raw = raw(A);
        raw.cosmos_endpoint = Some("https://acct.documents.azure.com:443/".into());
        raw.cosmos_key = Some("c2VjcmV0LWtleQ==".into());
        let config = Config::parse(&raw).unwrap();
        let StoreSettings::Cosmos(cosmos) = &config.store else { panic!("expected Cosmos") };
        assert_eq!(cosmos.database, DEFAULT_COSMOS_DATABASE);
        assert_eq!(cosmos.container, DEFAULT_COSMOS_CONTAINER);
        for text in [config.describe(), format!("{config:?}")] {
            assert!(!text.contains("c2VjcmV0LWtleQ=="), "{text}");
        }
    }

    #[test]
    fn admin_commands_need_no_groups() {
        let raw = RawSettings { presence_db: Some("/tmp/x.db".into()), ..RawSettings::default() };
        let config = StoreConfig::parse(&raw).unwrap();
        assert_eq!(config.store, StoreSettings::Sqlite { path: PathBuf::from("/tmp/x.db") });
        let raw = RawSettings { retention_days: Some("0".into()), ..RawSettings::default() };
        assert_eq!(StoreConfig::parse(&raw).unwrap_err().errors[0].setting, "RETENTION_DAYS");
    }

    #[test]
    fn all_errors_are_reported_together() {
        let raw = RawSettings {
            entra_group_ids: Some("x".into()),
            graph_base_url: Some("nope".into()),
            cosmos_endpoint: Some("https://a.documents.azure.com".into()),
            cosmos_container: Some("a/b".into()),
            run_deadline_seconds: Some("5".into()),
            presence_concurrency: Some("many".into()),
            presence_calls_per_30s: Some("2000".into()),
            membership_inline_limit_seconds: Some("1.5".into()),
            retention_days: Some("-1".into()),
            poll_schedule: Some("*/5 * *".into()),
            ..RawSettings::default()
        };
        let err = Config::parse(&raw).unwrap_err();
        let settings: Vec<&str> = err.errors.iter().map(|e| e.setting).collect();
        assert_eq!(
            settings,
            [
                "ENTRA_GROUP_IDS",
                "GRAPH_BASE_URL",
                "COSMOS_CONTAINER",
                "RUN_DEADLINE_SECONDS",
                "PRESENCE_CONCURRENCY",
                "PRESENCE_CALLS_PER_30S",
                "MEMBERSHIP_INLINE_LIMIT_SECONDS",
                "RETENTION_DAYS",
                "POLL_SCHEDULE"
            ]
        );
    }
}
