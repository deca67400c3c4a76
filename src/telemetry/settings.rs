//! Where telemetry goes and how it authenticates: the two App Insights app settings, parsed once.
//!
//! `APPLICATIONINSIGHTS_CONNECTION_STRING` names the resource (instrumentation key, which is an
//! identifier, not a secret) and its ingestion endpoint. `APPLICATIONINSIGHTS_AUTHENTICATION_STRING`
//! (`Authorization=AAD`, optionally with `ClientId=<user-assigned identity>`) asks for Entra ID
//! authentication, which a resource with `DisableLocalAuth: true` requires.

use std::fmt;

use url::Url;

pub const CONNECTION_STRING_ENV: &str = "APPLICATIONINSIGHTS_CONNECTION_STRING";
pub const AUTHENTICATION_STRING_ENV: &str = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING";

/// The ingestion endpoint when the connection string names none (the classic global endpoint).
const DEFAULT_INGESTION_ENDPOINT: &str = "https://dc.services.visualstudio.com/";
/// Entra token audience of the public cloud; sovereign clouds put theirs in `AADAudience`.
const DEFAULT_AAD_AUDIENCE: &str = "https://monitor.azure.com";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error(
        "{CONNECTION_STRING_ENV} has a part {part:?} that is not key=value: expected \
         `InstrumentationKey=<guid>;IngestionEndpoint=https://<region>.in.applicationinsights.azure.com/`"
    )]
    MalformedPart { part: String },
    #[error("{CONNECTION_STRING_ENV} has no InstrumentationKey: copy the whole connection string from the resource")]
    MissingInstrumentationKey,
    #[error("{CONNECTION_STRING_ENV} has IngestionEndpoint {value:?}, which is not an absolute http(s) URL")]
    BadEndpoint { value: String },
    #[error(
        "{CONNECTION_STRING_ENV} has IngestionEndpoint {value:?} over plain http to a non-loopback host: \
         telemetry would travel unencrypted; use https (http is accepted only for 127.0.0.1, ::1 or localhost)"
    )]
    InsecureEndpoint { value: String },
    #[error("{CONNECTION_STRING_ENV} has AADAudience {value:?}, which is not an absolute https URL")]
    BadAudience { value: String },
    /// Values are not echoed: a mistaken setting could hold a secret.
    #[error(
        "{AUTHENTICATION_STRING_ENV} {problem}: expected `Authorization=AAD` or \
         `ClientId=<client id of a user-assigned identity>;Authorization=AAD`"
    )]
    BadAuthentication { problem: String },
}

/// How the exporter proves it may write to the resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authentication {
    /// The instrumentation key in each item is enough (the resource allows local auth).
    InstrumentationKey,
    /// An Entra ID bearer token for `scope`, from the system-assigned identity or, with
    /// `client_id`, from that user-assigned identity.
    Entra { client_id: Option<String>, scope: String },
}

/// Parsed App Insights settings; `None` from [`ExportSettings::parse`] means "do not export".
#[derive(Clone, PartialEq, Eq)]
pub struct ExportSettings {
    /// The connection string as given, which the exporter parses for the instrumentation key.
    pub connection_string: String,
    pub instrumentation_key: String,
    /// `<IngestionEndpoint>/v2.1/track`: the path the current Microsoft SDKs post to, and the only
    /// one that accepts Entra tokens ("v2/track doesn't support Microsoft Entra ID").
    pub track_url: Url,
    pub authentication: Authentication,
}

impl fmt::Debug for ExportSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection string is not secret, but it is long and says nothing `track_url` does not.
        f.debug_struct("ExportSettings")
            .field("instrumentation_key", &self.instrumentation_key)
            .field("track_url", &self.track_url.as_str())
            .field("authentication", &self.authentication)
            .finish()
    }
}

impl ExportSettings {
    /// Reads both app settings from the environment.
    pub fn from_env() -> Result<Option<Self>, SettingsError> {
        let connection = std::env::var(CONNECTION_STRING_ENV).ok();
        let authentication = std::env::var(AUTHENTICATION_STRING_ENV).ok();
        Self::parse(connection.as_deref(), authentication.as_deref())
    }

    /// An unset or blank connection string disables export; anything else must be valid.
    pub fn parse(connection_string: Option<&str>, authentication: Option<&str>) -> Result<Option<Self>, SettingsError> {
        let Some(connection_string) = connection_string.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let parts =
            key_values(connection_string).map_err(|part| SettingsError::MalformedPart { part: part.to_string() })?;
        let get = |key: &str| parts.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| *v);

        let instrumentation_key = get("InstrumentationKey")
            .filter(|v| !v.is_empty())
            .ok_or(SettingsError::MissingInstrumentationKey)?
            .to_string();
        let endpoint = ingestion_endpoint(get("IngestionEndpoint"), get("Location"), get("EndpointSuffix"))?;
        let track_url =
            endpoint.join("v2.1/track").map_err(|_| SettingsError::BadEndpoint { value: endpoint.to_string() })?;
        let authentication = parse_authentication(authentication, get("AADAudience"))?;
        Ok(Some(Self {
            connection_string: connection_string.to_string(),
            instrumentation_key,
            track_url,
            authentication,
        }))
    }
}

/// `k=v;k=v`, tolerating a trailing `;` and spaces. The first `=` splits, so values may hold `=`.
fn key_values(s: &str) -> Result<Vec<(&str, &str)>, &str> {
    s.split(';')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| part.split_once('=').map(|(k, v)| (k.trim(), v.trim())).filter(|(k, _)| !k.is_empty()).ok_or(part))
        .collect()
}

fn ingestion_endpoint(
    explicit: Option<&str>,
    location: Option<&str>,
    suffix: Option<&str>,
) -> Result<Url, SettingsError> {
    let value = match (explicit, suffix) {
        (Some(endpoint), _) => endpoint.to_string(),
        (None, Some(suffix)) => match location {
            Some(location) => format!("https://{location}.dc.{suffix}/"),
            None => format!("https://dc.{suffix}/"),
        },
        (None, None) => DEFAULT_INGESTION_ENDPOINT.to_string(),
    };
    let mut url = Url::parse(&value).map_err(|_| SettingsError::BadEndpoint { value: value.clone() })?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => return Err(SettingsError::BadEndpoint { value }),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err(SettingsError::InsecureEndpoint { value }),
        _ => return Err(SettingsError::BadEndpoint { value }),
    }
    // `join` replaces the last path segment unless the base ends with '/'.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn parse_authentication(value: Option<&str>, audience: Option<&str>) -> Result<Authentication, SettingsError> {
    let Some(raw) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(Authentication::InstrumentationKey);
    };
    let bad = |problem: String| SettingsError::BadAuthentication { problem };
    let parts = key_values(raw).map_err(|_| bad("has a part that is not key=value".into()))?;
    let mut aad = false;
    let mut client_id = None;
    for (key, value) in parts {
        if key.eq_ignore_ascii_case("Authorization") {
            if !value.eq_ignore_ascii_case("AAD") {
                return Err(bad(format!("asks for Authorization={value:?}, which is not supported")));
            }
            aad = true;
        } else if key.eq_ignore_ascii_case("ClientId") && !value.is_empty() {
            client_id = Some(value.to_string());
        } else {
            return Err(bad(format!("has an unsupported key {key:?}")));
        }
    }
    if !aad {
        return Err(bad("has no Authorization=AAD".into()));
    }
    let audience = audience.unwrap_or(DEFAULT_AAD_AUDIENCE);
    match Url::parse(audience) {
        Ok(url) if url.scheme() == "https" => {}
        _ => return Err(SettingsError::BadAudience { value: audience.to_string() }),
    }
    Ok(Authentication::Entra { client_id, scope: format!("{}/.default", audience.trim_end_matches('/')) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0b1f3c2e-8a55-4c49-9d4e-2f61a7c3b0de";

    fn parse(conn: &str, auth: Option<&str>) -> Result<Option<ExportSettings>, SettingsError> {
        ExportSettings::parse(Some(conn), auth)
    }

    #[test]
    fn unset_or_blank_connection_string_disables_export() {
        assert_eq!(ExportSettings::parse(None, Some("Authorization=AAD")), Ok(None));
        assert_eq!(ExportSettings::parse(Some("  "), None), Ok(None));
    }

    #[test]
    fn portal_connection_string_posts_to_v2_1_track_of_its_ingestion_endpoint() {
        let conn = format!(
            "InstrumentationKey={KEY};IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/;\
             LiveEndpoint=https://westeurope.livediagnostics.monitor.azure.com/;ApplicationId=5e1c"
        );
        let settings = parse(&conn, None).unwrap().unwrap();
        assert_eq!(settings.instrumentation_key, KEY);
        assert_eq!(settings.track_url.as_str(), "https://westeurope-5.in.applicationinsights.azure.com/v2.1/track");
        assert_eq!(settings.authentication, Authentication::InstrumentationKey);
    }

    #[test]
    fn endpoint_without_trailing_slash_or_with_a_path_keeps_its_path() {
        let settings = parse(&format!("InstrumentationKey={KEY};IngestionEndpoint=http://127.0.0.1:4000/ai"), None)
            .unwrap()
            .unwrap();
        assert_eq!(settings.track_url.as_str(), "http://127.0.0.1:4000/ai/v2.1/track");
    }

    #[test]
    fn endpoint_defaults_follow_the_connection_string_rules() {
        let settings = parse(&format!("InstrumentationKey={KEY}"), None).unwrap().unwrap();
        assert_eq!(settings.track_url.as_str(), "https://dc.services.visualstudio.com/v2.1/track");
        let settings = parse(
            &format!("InstrumentationKey={KEY};EndpointSuffix=applicationinsights.azure.cn;Location=chinaeast2"),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(settings.track_url.as_str(), "https://chinaeast2.dc.applicationinsights.azure.cn/v2.1/track");
    }

    #[test]
    fn plain_http_is_refused_except_on_loopback() {
        let err = parse(&format!("InstrumentationKey={KEY};IngestionEndpoint=http://collector.example.com/"), None)
            .unwrap_err();
        assert_eq!(err, SettingsError::InsecureEndpoint { value: "http://collector.example.com/".into() });
        assert!(err.to_string().contains("http://collector.example.com/"), "{err}");
        for ok in ["http://localhost:9/", "http://[::1]:9/"] {
            assert!(parse(&format!("InstrumentationKey={KEY};IngestionEndpoint={ok}"), None).is_ok(), "{ok}");
        }
    }

    #[test]
    fn malformed_connection_strings_name_the_problem() {
        assert_eq!(parse("IngestionEndpoint=https://x/", None), Err(SettingsError::MissingInstrumentationKey));
        let err = parse(&format!("InstrumentationKey={KEY};garbage"), None).unwrap_err();
        assert_eq!(err, SettingsError::MalformedPart { part: "garbage".into() });
        let err = parse(&format!("InstrumentationKey={KEY};IngestionEndpoint=not a url"), None).unwrap_err();
        assert!(err.to_string().contains("\"not a url\""), "{err}");
    }

    #[test]
    fn entra_authentication_strings() {
        let conn = format!("InstrumentationKey={KEY};IngestionEndpoint=https://x.in.applicationinsights.azure.com/");
        let system = parse(&conn, Some("Authorization=AAD")).unwrap().unwrap();
        assert_eq!(
            system.authentication,
            Authentication::Entra { client_id: None, scope: "https://monitor.azure.com/.default".into() }
        );
        let user =
            parse(&conn, Some("ClientId=9c1d0e6a-51b3-4f7e-a2a2-1d6d1b1c2f33;Authorization=aad")).unwrap().unwrap();
        assert_eq!(
            user.authentication,
            Authentication::Entra {
                client_id: Some("9c1d0e6a-51b3-4f7e-a2a2-1d6d1b1c2f33".into()),
                scope: "https://monitor.azure.com/.default".into()
            }
        );
        let sovereign = parse(&format!("{conn};AADAudience=https://monitor.azure.us/"), Some("Authorization=AAD"))
            .unwrap()
            .unwrap();
        assert_eq!(
            sovereign.authentication,
            Authentication::Entra { client_id: None, scope: "https://monitor.azure.us/.default".into() }
        );
    }

    #[test]
    fn unknown_authentication_strings_are_refused_with_the_expected_forms() {
        let conn = format!("InstrumentationKey={KEY}");
        let cases = [
            ("Authorization=Basic", "asks for Authorization=\"Basic\""),
            ("ClientId=abc", "has no Authorization=AAD"),
            ("AAD", "not key=value"),
            ("Authorization=AAD;ClientSecret=hunter2", "unsupported key \"ClientSecret\""),
        ];
        for (bad, problem) in cases {
            let err = parse(&conn, Some(bad)).unwrap_err().to_string();
            assert!(err.contains(problem) && err.contains("expected `Authorization=AAD`"), "{err}");
            assert!(!err.contains("hunter2"), "a value that may be secret is echoed: {err}");
        }
    }
}
