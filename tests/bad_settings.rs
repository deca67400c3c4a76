//! Bad settings are refused with one error each that names the setting, quotes the value (never
//! a secret) and says what is expected; good ones are read as given: property tests (proptest)
//! over every app setting at once and over `ENTRA_GROUP_IDS` entry by entry.
//!
//! Each generated value carries its verdict, drawn from the documented rules (README
//! "Configuration"), so a test knows exactly which settings must be named: not "some error".

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use proptest::prelude::*;
use teams_presence::config::{
    Config, DEFAULT_COSMOS_CONTAINER, DEFAULT_COSMOS_DATABASE, DEFAULT_COSMOS_STATE_CONTAINER, DEFAULT_PRESENCE_DB,
    DEFAULT_SCHEDULE, RawSettings, StoreConfig, StoreSettings, parse_groups,
};

/// One setting's value, and whether the configuration must refuse it.
#[derive(Clone, Debug)]
struct Drawn {
    value: Option<String>,
    bad: bool,
}

impl Drawn {
    fn good(value: impl Into<String>) -> Self {
        Self { value: Some(value.into()), bad: false }
    }

    fn bad(value: impl Into<String>) -> Self {
        Self { value: Some(value.into()), bad: true }
    }

    fn unset() -> Self {
        Self { value: None, bad: false }
    }

    /// Set, but empty: the same as unset (the setting's default).
    fn empty() -> Self {
        Self::good("")
    }

    /// The value in use: the given one, or `default` when unset or empty.
    fn or<'a>(&'a self, default: &'a str) -> &'a str {
        self.value.as_deref().map(str::trim).filter(|v| !v.is_empty()).unwrap_or(default)
    }
}

/// A whole number setting with its documented range.
fn number(lo: u64, hi: u64) -> impl Strategy<Value = Drawn> {
    prop_oneof![
        1 => Just(Drawn::unset()),
        1 => Just(Drawn::empty()),
        3 => (lo..=hi).prop_map(|n| Drawn::good(n.to_string())),
        1 => (lo..=hi).prop_map(|n| Drawn::good(format!(" {n} "))),
        1 => (hi + 1..=hi * 1_000 + 1).prop_map(|n| Drawn::bad(n.to_string())),
        // Below the range (where it starts at 0: a negative number).
        1 => (0..lo.max(1)).prop_map(move |n| if lo > 0 { Drawn::bad(n.to_string()) } else { Drawn::bad("-1") }),
        1 => (1..=hi).prop_map(|n| Drawn::bad(format!("-{n}"))),
        1 => (lo..=hi).prop_map(|n| Drawn::bad(format!("{n}.5"))),
        1 => "[a-z]{1,8}".prop_map(Drawn::bad),
    ]
}

fn guid() -> impl Strategy<Value = uuid::Uuid> {
    any::<u128>().prop_map(uuid::Uuid::from_u128)
}

fn group_ids() -> impl Strategy<Value = Drawn> {
    prop_oneof![
        3 => prop::collection::vec(guid(), 1..4)
            .prop_map(|ids| Drawn::good(ids.iter().map(uuid::Uuid::to_string).collect::<Vec<_>>().join(", "))),
        1 => Just(Drawn { value: None, bad: true }),
        1 => Just(Drawn::bad("")),
        1 => Just(Drawn::bad(" , ;")),
        1 => (guid(), "[g-z._]{1,10}").prop_map(|(id, entry)| Drawn::bad(format!("{id};{entry}"))),
    ]
}

fn graph_base_url() -> impl Strategy<Value = Drawn> {
    prop_oneof![
        Just(Drawn::unset()),
        Just(Drawn::empty()),
        Just(Drawn::good("https://graph.microsoft.com/v1.0")),
        Just(Drawn::good("https://graph.microsoft.us/v1.0/")),
        (1024u16..).prop_map(|port| Drawn::good(format!("http://127.0.0.1:{port}/v1.0"))),
        Just(Drawn::bad("graph.microsoft.com/v1.0")),
        Just(Drawn::bad("ftp://graph.microsoft.com/v1.0")),
        Just(Drawn::bad("https://graph.microsoft.com/v1.0?$top=1")),
        Just(Drawn::bad("https://graph.microsoft.com/v1.0#x")),
        Just(Drawn::bad("http://")),
        "[a-z][a-z ]{0,11}".prop_map(Drawn::bad),
    ]
}

fn cosmos_endpoint() -> impl Strategy<Value = Drawn> {
    prop_oneof![
        3 => Just(Drawn::unset()),
        1 => Just(Drawn::empty()),
        2 => Just(Drawn::good("https://acct.documents.azure.com:443/")),
        1 => Just(Drawn::good("https://localhost:8081")),
        1 => Just(Drawn::bad("acct.documents.azure.com")),
        1 => Just(Drawn::bad("https://acct.documents.azure.com/?x=1")),
        1 => "[a-z]{1,10}".prop_map(Drawn::bad),
    ]
}

/// A Cosmos DB database or container name (bad only when the Cosmos store is selected).
fn cosmos_name() -> impl Strategy<Value = Drawn> {
    prop_oneof![
        2 => Just(Drawn::unset()),
        1 => Just(Drawn::empty()),
        3 => "[a-zA-Z0-9_-]{1,40}".prop_map(Drawn::good),
        1 => "[a-z]{0,5}[/\\\\#?][a-z]{0,5}".prop_map(Drawn::bad),
        1 => "[a-z]{1,8} ".prop_map(Drawn::bad),
        1 => "[a-z]{1,4}\u{7}".prop_map(Drawn::bad),
        1 => Just(Drawn::bad("a".repeat(256))),
    ]
}

fn poll_schedule() -> impl Strategy<Value = Drawn> {
    let field = "[0-9*/,-]{1,4}";
    let fields = |n: std::ops::RangeInclusive<usize>| prop::collection::vec(field, n).prop_map(|f| f.join("  "));
    prop_oneof![
        1 => Just(Drawn::unset()),
        1 => Just(Drawn::empty()),
        2 => fields(5..=6).prop_map(Drawn::good),
        1 => fields(1..=4).prop_map(Drawn::bad),
        1 => fields(7..=9).prop_map(Drawn::bad),
    ]
}

/// The pseudonym key: base64 of at least 32 bytes. Bad ones are long enough (12+ characters)
/// that finding one in a message means it was echoed.
fn pseudonym_key() -> impl Strategy<Value = Drawn> {
    prop_oneof![
        2 => Just(Drawn::unset()),
        1 => Just(Drawn::empty()),
        2 => prop::collection::vec(any::<u8>(), 32..64).prop_map(|key| Drawn::good(BASE64.encode(key))),
        1 => prop::collection::vec(any::<u8>(), 9..32).prop_map(|key| Drawn::bad(BASE64.encode(key))),
        1 => "s3cr3t-[A-Za-z0-9+/=]{6,40}".prop_map(Drawn::bad),
    ]
}

/// Every setting the handler reads, drawn.
#[derive(Clone, Debug)]
struct Settings {
    groups: Drawn,
    graph_base_url: Drawn,
    cosmos_endpoint: Drawn,
    cosmos_names: [Drawn; 3],
    cosmos_key: Option<String>,
    presence_db: Option<String>,
    poll_schedule: Drawn,
    /// RUN_DEADLINE_SECONDS, PRESENCE_CONCURRENCY, PRESENCE_CALLS_PER_30S,
    /// MEMBERSHIP_INLINE_LIMIT_SECONDS, RETENTION_DAYS.
    numbers: [Drawn; 5],
    pseudonym_key: Drawn,
}

const COSMOS_NAMES: [(&str, &str); 3] = [
    ("COSMOS_DATABASE", DEFAULT_COSMOS_DATABASE),
    ("COSMOS_CONTAINER", DEFAULT_COSMOS_CONTAINER),
    ("COSMOS_STATE_CONTAINER", DEFAULT_COSMOS_STATE_CONTAINER),
];
/// Name, documented range and default of each number setting (README "Configuration").
const NUMBERS: [(&str, u64, u64, u64); 5] = [
    ("RUN_DEADLINE_SECONDS", 10, 3_600, 240),
    ("PRESENCE_CONCURRENCY", 1, 64, 8),
    ("PRESENCE_CALLS_PER_30S", 1, 1_500, 1_500),
    ("MEMBERSHIP_INLINE_LIMIT_SECONDS", 0, 3_600, 20),
    ("RETENTION_DAYS", 1, 3_650, 90),
];
/// What the store alone needs (export and erasure): `StoreConfig`.
const STORE_SETTINGS: [&str; 7] = [
    "COSMOS_ENDPOINT",
    "COSMOS_DATABASE",
    "COSMOS_CONTAINER",
    "COSMOS_STATE_CONTAINER",
    "PRESENCE_DB",
    "RETENTION_DAYS",
    "USER_ID_PSEUDONYM_KEY",
];

fn settings() -> impl Strategy<Value = Settings> {
    let names = [cosmos_name(), cosmos_name(), cosmos_name()];
    let numbers = NUMBERS.map(|(_, lo, hi, _)| number(lo, hi));
    (
        (group_ids(), graph_base_url(), cosmos_endpoint(), names),
        (prop::option::of("s3cr3t-[A-Za-z0-9+/=]{6,40}"), prop::option::of("\\PC{0,20}"), poll_schedule()),
        (numbers, pseudonym_key()),
    )
        .prop_map(
            |(
                (groups, graph_base_url, cosmos_endpoint, cosmos_names),
                (cosmos_key, presence_db, poll_schedule),
                (numbers, pseudonym_key),
            )| Settings {
                groups,
                graph_base_url,
                cosmos_endpoint,
                cosmos_names,
                cosmos_key,
                presence_db,
                poll_schedule,
                numbers,
                pseudonym_key,
            },
        )
}

impl Settings {
    fn raw(&self) -> RawSettings {
        let [database, container, state] = self.cosmos_names.clone().map(|d| d.value);
        let [deadline, concurrency, calls, inline_limit, retention] = self.numbers.clone().map(|d| d.value);
        RawSettings {
            entra_group_ids: self.groups.value.clone(),
            graph_base_url: self.graph_base_url.value.clone(),
            cosmos_endpoint: self.cosmos_endpoint.value.clone(),
            cosmos_database: database,
            cosmos_container: container,
            cosmos_state_container: state,
            cosmos_key: self.cosmos_key.clone(),
            presence_db: self.presence_db.clone(),
            poll_schedule: self.poll_schedule.value.clone(),
            run_deadline_seconds: deadline,
            presence_concurrency: concurrency,
            presence_calls_per_30s: calls,
            retention_days: retention,
            membership_inline_limit_seconds: inline_limit,
            user_id_pseudonym_key: self.pseudonym_key.value.clone(),
        }
    }

    /// The Cosmos store is selected by a non-empty endpoint; only then are its names read.
    fn cosmos(&self) -> bool {
        !self.cosmos_endpoint.or("").is_empty()
    }

    /// Every setting with its drawn value, as the errors must name them.
    fn all(&self) -> Vec<(&'static str, &Drawn)> {
        let mut all = vec![
            ("ENTRA_GROUP_IDS", &self.groups),
            ("GRAPH_BASE_URL", &self.graph_base_url),
            ("COSMOS_ENDPOINT", &self.cosmos_endpoint),
            ("POLL_SCHEDULE", &self.poll_schedule),
            ("USER_ID_PSEUDONYM_KEY", &self.pseudonym_key),
        ];
        all.extend(COSMOS_NAMES.iter().map(|(name, _)| *name).zip(&self.cosmos_names));
        all.extend(NUMBERS.iter().map(|(name, ..)| *name).zip(&self.numbers));
        all
    }

    /// The settings the configuration must refuse, by name.
    fn bad(&self) -> BTreeSet<&'static str> {
        let cosmos = self.cosmos();
        self.all()
            .into_iter()
            .filter(|(name, drawn)| drawn.bad && (cosmos || !name.starts_with("COSMOS_")))
            .map(|(name, _)| name)
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any mix of good and bad settings: exactly the bad ones are named, each once per problem,
    /// with its value quoted (the pseudonym key and the Cosmos key never) and what is expected;
    /// with none bad, every value is read as given (or its default).
    #[test]
    fn any_settings_parse_or_name_every_bad_one(settings in settings()) {
        let raw = settings.raw();
        let bad = settings.bad();
        let secrets: Vec<&String> =
            [&raw.user_id_pseudonym_key, &raw.cosmos_key].into_iter().flatten().filter(|s| !s.trim().is_empty()).collect();
        match Config::parse(&raw) {
            Ok(config) => {
                prop_assert!(bad.is_empty(), "accepted although {:?} are bad: {:?}", bad, raw);
                let groups: Vec<String> = config.groups.iter().map(ToString::to_string).collect();
                let given: Vec<&str> = settings.groups.or("").split(", ").collect();
                prop_assert_eq!(groups, given);
                let deadline = settings.numbers[0].or("240").parse::<u64>().unwrap();
                prop_assert_eq!(config.run_deadline.as_secs(), deadline);
                let concurrency = settings.numbers[1].or("8").parse::<usize>().unwrap();
                prop_assert_eq!(config.graph.presence_concurrency, concurrency);
                let calls = settings.numbers[2].or("1500").parse::<u32>().unwrap();
                prop_assert_eq!(config.graph.presence_calls_per_30s, calls);
                let inline = settings.numbers[3].or("20").parse::<u64>().unwrap();
                prop_assert_eq!(config.membership_inline_limit.as_secs(), inline);
                prop_assert_eq!(config.retention_days, settings.numbers[4].or("90").parse::<u32>().unwrap());
                let fields: Vec<&str> = settings.poll_schedule.or(DEFAULT_SCHEDULE).split_whitespace().collect();
                prop_assert_eq!(&config.schedule, &fields.join(" "));
                prop_assert_eq!(config.subjects.is_pseudonymous(), !settings.pseudonym_key.or("").is_empty());
                let base = settings.graph_base_url.or("https://graph.microsoft.com/v1.0");
                prop_assert_eq!(config.graph.base_url.as_str(), base.trim_end_matches('/'));
                match &config.store {
                    StoreSettings::Sqlite { path } => {
                        prop_assert!(!settings.cosmos());
                        let given = raw.presence_db.as_deref().map(str::trim).filter(|p| !p.is_empty());
                        prop_assert_eq!(path.to_str(), Some(given.unwrap_or(DEFAULT_PRESENCE_DB)));
                    }
                    StoreSettings::Cosmos(cosmos) => {
                        prop_assert!(settings.cosmos());
                        let names = [&cosmos.database, &cosmos.container, &cosmos.state_container];
                        for ((drawn, (_, default)), name) in settings.cosmos_names.iter().zip(COSMOS_NAMES).zip(names) {
                            prop_assert_eq!(name.as_str(), drawn.value.as_deref().filter(|v| !v.is_empty()).unwrap_or(default));
                        }
                        prop_assert_eq!(cosmos.key.as_ref().map(|k| k.expose()), raw.cosmos_key.as_deref().map(str::trim).filter(|k| !k.is_empty()));
                    }
                }
            }
            Err(e) => {
                let named: BTreeSet<&str> = e.errors.iter().map(|e| e.setting).collect();
                prop_assert_eq!(&named, &bad, "{}", e);
                let text = e.to_string();
                for secret in &secrets {
                    prop_assert!(!text.contains(secret.as_str()), "a secret was echoed: {}", text);
                }
                for error in &e.errors {
                    let line = error.to_string();
                    prop_assert!(text.contains(&format!("\n  - {line}")), "{}", text);
                    prop_assert!(line.starts_with(&format!("{}: ", error.setting)), "{}", line);
                    let drawn = settings.all().into_iter().find(|(name, _)| *name == error.setting).unwrap().1;
                    let value = drawn.value.as_deref().unwrap_or("");
                    // What each says it expected (README "Configuration"), and the value it got.
                    let (quoted, expected) = match error.setting {
                        "USER_ID_PSEUDONYM_KEY" => (None, "expected at least 32 random bytes in base64".to_string()),
                        "ENTRA_GROUP_IDS" => {
                            let entries: Vec<&str> = value.split([',', ';', ' ']).filter(|e| !e.is_empty()).collect();
                            let entry = entries.iter().find(|entry| error.problem.starts_with(&format!("{entry:?} is not a group object id")));
                            match entry {
                                Some(entry) => (Some(entry.to_string()), "expected a GUID such as".to_string()),
                                None => (Some(value.to_string()), "expected at least one Entra ID group object id".to_string()),
                            }
                        }
                        "GRAPH_BASE_URL" | "COSMOS_ENDPOINT" => (Some(value.to_string()), "expected an absolute http(s) URL such as".to_string()),
                        "COSMOS_DATABASE" | "COSMOS_CONTAINER" | "COSMOS_STATE_CONTAINER" => {
                            (Some(value.to_string()), "expected 1-255 characters without / \\ # ? or a trailing space".to_string())
                        }
                        "POLL_SCHEDULE" => (Some(value.trim().to_string()), "expected an NCRONTAB expression of six fields".to_string()),
                        number => {
                            let (_, lo, hi, default) = NUMBERS.iter().find(|(name, ..)| *name == number).unwrap();
                            (Some(value.trim().to_string()), format!("is not a whole number from {lo} to {hi} (default {default})"))
                        }
                    };
                    prop_assert!(error.problem.contains(&expected), "says what is expected ({}): {}", expected, line);
                    if let Some(quoted) = quoted {
                        prop_assert!(error.problem.contains(&format!("{quoted:?}")), "quotes the value {:?}: {}", quoted, line);
                    }
                }
                // One error per bad setting, except the group list, which names each bad entry.
                let per_setting = e.errors.iter().filter(|e| e.setting != "ENTRA_GROUP_IDS").count();
                prop_assert_eq!(per_setting, bad.iter().filter(|s| **s != "ENTRA_GROUP_IDS").count());
            }
        }
        // Export and erasure read only the store's settings: exactly the bad ones among those.
        let store_bad: BTreeSet<&str> = bad.iter().copied().filter(|s| STORE_SETTINGS.contains(s)).collect();
        match StoreConfig::parse(&raw) {
            Ok(_) => prop_assert!(store_bad.is_empty(), "the store settings {:?} were accepted", store_bad),
            Err(e) => prop_assert_eq!(e.errors.iter().map(|e| e.setting).collect::<BTreeSet<_>>(), store_bad),
        }
    }
}

/// One `ENTRA_GROUP_IDS` entry: a group id in a form the handler accepts, or an entry it must
/// name as bad.
#[derive(Clone, Debug)]
enum Entry {
    Id(uuid::Uuid, String),
    Bad(String),
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        2 => guid().prop_map(|id| Entry::Id(id, id.to_string())),
        1 => guid().prop_map(|id| Entry::Id(id, id.to_string().to_uppercase())),
        1 => guid().prop_map(|id| Entry::Id(id, format!("{{{id}}}"))),
        // Near misses: a hyphen lost, no hyphens at all, a digit too many, a letter that is not hex.
        1 => guid().prop_map(|id| Entry::Bad(id.to_string().replacen('-', "", 1))),
        1 => guid().prop_map(|id| Entry::Bad(id.simple().to_string())),
        1 => guid().prop_map(|id| Entry::Bad(format!("{id}0"))),
        1 => guid().prop_map(|id| Entry::Bad(format!("g{}", &id.to_string()[1..]))),
        // Anything else without a separator (separators split entries).
        1 => "[^,;\\s]{1,12}".prop_map(Entry::Bad),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Entries joined by any separator: each bad entry is named (with what is expected), and
    /// nothing else; with none bad, the ids in order of first appearance, duplicates dropped;
    /// with none at all, an error saying at least one is expected.
    #[test]
    fn group_ids_parse_without_duplicates_or_name_each_bad_entry(
        entries in prop::collection::vec(entry(), 0..6),
        separators in prop::collection::vec(prop_oneof![Just(","), Just(";"), Just(" "), Just("\n"), Just(", "), Just(" ;; ")], 6),
    ) {
        let mut text = String::new();
        for (entry, sep) in entries.iter().zip(separators.iter().cycle()) {
            text.push_str(match entry { Entry::Id(_, t) | Entry::Bad(t) => t });
            text.push_str(sep);
        }
        let bad: Vec<&String> = entries.iter().filter_map(|e| match e { Entry::Bad(t) => Some(t), Entry::Id(..) => None }).collect();
        let mut ids: Vec<uuid::Uuid> = Vec::new();
        for entry in &entries {
            if let Entry::Id(id, _) = entry && !ids.contains(id) {
                ids.push(*id);
            }
        }
        match parse_groups(Some(&text)) {
            Ok(groups) => {
                prop_assert!(bad.is_empty(), "accepted {:?}", bad);
                let groups: Vec<String> = groups.iter().map(ToString::to_string).collect();
                let expected: Vec<String> = ids.iter().map(uuid::Uuid::to_string).collect();
                prop_assert_eq!(groups, expected);
            }
            Err(errors) => {
                prop_assert!(errors.iter().all(|e| e.setting == "ENTRA_GROUP_IDS"), "{:?}", errors);
                if bad.is_empty() {
                    prop_assert!(ids.is_empty(), "refused good ids: {:?}", errors);
                    prop_assert_eq!(errors.len(), 1);
                    prop_assert!(errors[0].problem.contains("no group ids"), "{}", errors[0]);
                    prop_assert!(errors[0].problem.contains("expected at least one Entra ID group object id"), "{}", errors[0]);
                } else {
                    // One error per bad entry, in order, each naming it and the expected form.
                    prop_assert_eq!(errors.len(), bad.len(), "{:?}", errors);
                    for (error, entry) in errors.iter().zip(&bad) {
                        prop_assert!(error.problem.starts_with(&format!("{entry:?} is not a group object id")), "{}", error);
                        prop_assert!(error.problem.contains("expected a GUID such as"), "{}", error);
                    }
                }
            }
        }
    }
}
