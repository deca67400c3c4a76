//! The Managed Application notification a receiver accepts, reduced to what the privacy policy
//! lets the publisher keep: plan, version, event and the day.
//!
//! Azure POSTs one JSON object per lifecycle event (learn.microsoft.com/azure/azure-resource-manager/
//! managed-applications/publish-notifications, "Notification schema"): `eventType` (PUT, PATCH,
//! DELETE), `provisioningState`, `applicationId`, `eventTime`, and for a Marketplace offer a
//! `plan` {publisher, product, name, version}, for a service-catalog definition an
//! `applicationDefinitionId`. The ids are read only to recognise a retry (a keyed digest) and are
//! dropped here: nothing downstream of [`InstallEvent`] can see them.

use chrono::{DateTime, NaiveDate, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// Plan name of a service-catalog installation, whose notification carries no plan.
pub const SERVICE_CATALOG_PLAN: &str = "service-catalog";
/// Version when neither the plan nor the endpoint URL names one.
pub const UNKNOWN_VERSION: &str = "unknown";
/// Longest plan name or version kept: Partner Center plan ids are at most 50 characters.
const MAX_LABEL: usize = 50;

/// The documented (eventType, provisioningState) pairs ("Event triggers").
const EVENTS: &[(&str, &str)] = &[
    ("PUT", "Accepted"),
    ("PUT", "Succeeded"),
    ("PUT", "Failed"),
    ("PATCH", "Succeeded"),
    ("DELETE", "Deleting"),
    ("DELETE", "Deleted"),
    ("DELETE", "Failed"),
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error(
        "the body is not a notification: {0}; expected JSON with eventType, provisioningState, applicationId, eventTime"
    )]
    Shape(String),
    #[error(
        "eventType {event_type:?} with provisioningState {state:?} is not a documented notification; expected one of {expected}"
    )]
    UnknownEvent { event_type: String, state: String, expected: String },
    #[error("eventTime {0:?} is not an ISO 8601 UTC time such as 2019-08-14T19:20:08.1707163Z")]
    Time(String),
    #[error("{field} {value:?} is not a plan label: expected 1 to 50 letters, digits, '.', '-' or '_'")]
    Label { field: &'static str, value: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    event_type: String,
    provisioning_state: String,
    application_id: String,
    event_time: String,
    #[serde(default)]
    plan: Option<Plan>,
}

#[derive(Deserialize)]
struct Plan {
    name: String,
    #[serde(default)]
    version: Option<String>,
}

/// What is counted: a plan, a version, an event, a day. Nothing identifies the installation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct CountKey {
    pub plan: String,
    pub version: String,
    /// `eventType/provisioningState`, such as `PUT/Succeeded`.
    pub event: String,
    pub day: NaiveDate,
}

/// A digest that recognises a retried delivery of the same notification: HMAC-SHA256 over the
/// application id, the event and its time, under the receiver's own key. It cannot be turned back
/// into the application id, and two events of one installation give unrelated digests.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Receipt(String);

impl Receipt {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallEvent {
    pub key: CountKey,
    pub receipt: Receipt,
}

impl InstallEvent {
    /// Reads a notification body. `endpoint_version` is the `version` query parameter the
    /// publisher put in a service-catalog definition's endpoint URL (a Marketplace notification
    /// carries its plan's version itself).
    pub fn parse(body: &[u8], endpoint_version: Option<&str>, receipt_key: &[u8]) -> Result<Self, EventError> {
        let n: Notification = serde_json::from_slice(body).map_err(|e| EventError::Shape(e.to_string()))?;
        let event_type = n.event_type.to_ascii_uppercase();
        let Some((event_type, state)) = EVENTS
            .iter()
            .find(|(t, s)| *t == event_type && s.eq_ignore_ascii_case(n.provisioning_state.trim()))
            .copied()
        else {
            return Err(EventError::UnknownEvent {
                event_type: n.event_type,
                state: n.provisioning_state,
                expected: EVENTS.iter().map(|(t, s)| format!("{t}/{s}")).collect::<Vec<_>>().join(", "),
            });
        };
        let at = DateTime::parse_from_rfc3339(n.event_time.trim())
            .map_err(|_| EventError::Time(n.event_time.clone()))?
            .with_timezone(&Utc);
        let (plan, version) = match n.plan {
            Some(plan) => (label("plan.name", &plan.name)?, plan.version),
            None => (SERVICE_CATALOG_PLAN.to_string(), None),
        };
        let version = match version.as_deref().or(endpoint_version) {
            Some(v) => label("version", v)?,
            None => UNKNOWN_VERSION.to_string(),
        };
        let receipt = receipt(receipt_key, &n.application_id, event_type, state, &at);
        let key = CountKey { plan, version, event: format!("{event_type}/{state}"), day: at.date_naive() };
        Ok(Self { key, receipt })
    }
}

fn label(field: &'static str, value: &str) -> Result<String, EventError> {
    let value = value.trim();
    let valid = (1..=MAX_LABEL).contains(&value.len())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if valid { Ok(value.to_string()) } else { Err(EventError::Label { field, value: value.to_string() }) }
}

fn receipt(key: &[u8], application_id: &str, event_type: &str, state: &str, at: &DateTime<Utc>) -> Receipt {
    // Any key length is valid for HMAC, so `new_from_slice` cannot fail here.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    // Resource ids are case-insensitive in Azure: a retry may spell it differently.
    for part in [application_id.trim().to_lowercase().as_str(), event_type, state, &at.to_rfc3339()] {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    Receipt(mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"receipt key";

    fn body(event: &str, state: &str, time: &str, plan: Option<(&str, &str)>) -> Vec<u8> {
        let mut n = serde_json::json!({
            "eventType": event, "provisioningState": state, "eventTime": time,
            "applicationId": "/subscriptions/1/resourceGroups/rg/providers/Microsoft.Solutions/applications/a",
        });
        if let Some((name, version)) = plan {
            n["plan"] = serde_json::json!({ "publisher": "p", "product": "o", "name": name, "version": version });
        }
        n.to_string().into_bytes()
    }

    #[test]
    fn keeps_plan_version_event_and_day_only() {
        let e = InstallEvent::parse(
            &body("PUT", "Succeeded", "2019-08-14T23:59:59.1707163Z", Some(("standard", "1.0.1"))),
            None,
            KEY,
        )
        .unwrap();
        assert_eq!(
            e.key,
            CountKey {
                plan: "standard".into(),
                version: "1.0.1".into(),
                event: "PUT/Succeeded".into(),
                day: NaiveDate::from_ymd_opt(2019, 8, 14).unwrap()
            }
        );
        let sc = InstallEvent::parse(&body("delete", "deleted", "2019-08-14T00:00:00+02:00", None), Some("2.0.0"), KEY)
            .unwrap();
        assert_eq!(
            (sc.key.plan.as_str(), sc.key.version.as_str(), sc.key.event.as_str()),
            ("service-catalog", "2.0.0", "DELETE/Deleted")
        );
        assert_eq!(sc.key.day, NaiveDate::from_ymd_opt(2019, 8, 13).unwrap(), "the UTC day");
    }

    #[test]
    fn a_retry_has_the_same_receipt_and_another_event_another() {
        let a = InstallEvent::parse(&body("PUT", "Succeeded", "2019-08-14T19:20:08Z", None), None, KEY).unwrap();
        let again = InstallEvent::parse(&body("PUT", "Succeeded", "2019-08-14T19:20:08Z", None), None, KEY).unwrap();
        let other = InstallEvent::parse(&body("PUT", "Accepted", "2019-08-14T19:20:08Z", None), None, KEY).unwrap();
        let other_key =
            InstallEvent::parse(&body("PUT", "Succeeded", "2019-08-14T19:20:08Z", None), None, b"x").unwrap();
        assert_eq!(a.receipt, again.receipt);
        assert_ne!(a.receipt, other.receipt);
        assert_ne!(a.receipt, other_key.receipt);
        assert_eq!(a.receipt.as_str().len(), 64);
    }

    #[test]
    fn names_what_is_wrong() {
        let err = InstallEvent::parse(&body("POST", "Succeeded", "2019-08-14T19:20:08Z", None), None, KEY).unwrap_err();
        assert!(err.to_string().contains("PUT/Succeeded") && err.to_string().contains("\"POST\""), "{err}");
        let err = InstallEvent::parse(&body("PUT", "Succeeded", "yesterday", None), None, KEY).unwrap_err();
        assert_eq!(err, EventError::Time("yesterday".into()));
        let err = InstallEvent::parse(&body("PUT", "Succeeded", "2019-08-14T19:20:08Z", Some(("a b", "1"))), None, KEY)
            .unwrap_err();
        assert!(matches!(err, EventError::Label { field: "plan.name", .. }), "{err}");
        assert!(matches!(InstallEvent::parse(b"[]", None, KEY), Err(EventError::Shape(_))));
    }
}
