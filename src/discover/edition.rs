//! Pure reading of the proxy's own calls' answers: the org's edition → Zoho's concurrency limit
//! (CREDITS.md §3.1, matched by name as Airbyte's connector does, §7), and what an answer's
//! status says (read, token lacks the scope, failed).
//!
//! Must not: do I/O, or know where the answers came from.

use serde_json::Value;

/// Edition names (lower case, without spaces, `_` or `-`) and their limits, the largest first so
/// that a bundle's name is matched by its biggest part (`zohooneenterprise` → 20, `crmplus` → 25).
const EDITIONS: &[(&str, u32)] = &[
    ("ultimate", 25),
    ("crmplus", 25),
    ("enterprise", 20),
    ("zohoone", 20),
    ("professional", 15),
    ("standard", 10),
    ("starter", 10),
    ("free", 5),
];

/// The concurrency limit of an edition named `name` (case-insensitive substring match).
pub fn edition_limit(name: &str) -> Option<u32> {
    let folded: String = name
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect();
    EDITIONS
        .iter()
        .find(|(edition, _)| folded.contains(edition))
        .map(|&(_, limit)| limit)
}

/// What `GET /crm/{version}/org` said about the edition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgFinding {
    /// A known edition (`paid_type`, or `trial_type` during a trial) and its limit.
    Edition {
        /// The name as Zoho wrote it.
        name: String,
        /// Its concurrency limit.
        limit: u32,
    },
    /// No name, or one that matches no edition (`None`: the field was missing).
    Unknown(Option<String>),
}

/// Reads `org[0].license_details`: `paid_type` names the edition; during a trial (`paid_type`
/// missing, free or unknown) `trial_type` does, since a trial counts as its edition.
pub fn org_edition(body: &[u8]) -> OrgFinding {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let license = &value["org"][0]["license_details"];
    let field = |name: &str| {
        license[name]
            .as_str()
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
    };
    let known = |name: Option<String>| {
        let limit = edition_limit(name.as_deref()?)?;
        Some(OrgFinding::Edition { name: name?, limit })
    };
    let paid = known(field("paid_type"));
    let paid_edition = matches!(paid, Some(OrgFinding::Edition { limit, .. }) if limit > 5);
    if paid_edition {
        return paid.unwrap_or(OrgFinding::Unknown(None));
    }
    known(field("trial_type"))
        .or(paid)
        .unwrap_or_else(|| OrgFinding::Unknown(field("paid_type")))
}

/// What the status and error code of an answer to one of the proxy's own calls mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerKind {
    /// 2xx: the body is the answer.
    Read,
    /// The token lacks the call's scope: `401 OAUTH_SCOPE_MISMATCH` or `403`.
    ScopeMissing,
    /// Anything else (a 5xx, a 429, `INVALID_TOKEN`): try again later.
    Failed(String),
}

/// Classifies an answer by its status and Zoho's `code`.
pub fn classify(status: u16, body: &[u8]) -> AnswerKind {
    let code = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned));
    match (status, code.as_deref()) {
        (200..=299, _) => AnswerKind::Read,
        (401, Some("OAUTH_SCOPE_MISMATCH")) | (403, _) => AnswerKind::ScopeMissing,
        (_, Some(code)) => AnswerKind::Failed(format!("HTTP {status} {code}")),
        (_, None) => AnswerKind::Failed(format!("HTTP {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editions_by_name() {
        const CASES: &[(&str, Option<u32>)] = &[
            ("free", Some(5)),
            ("Standard", Some(10)),
            ("starter", Some(10)),
            ("PROFESSIONAL", Some(15)),
            ("enterprise", Some(20)),
            ("zohooneenterprise", Some(20)),
            ("Zoho One", Some(20)),
            ("zoho_one", Some(20)),
            ("ultimate", Some(25)),
            ("CRM Plus", Some(25)),
            ("crmplus", Some(25)),
            ("bigin", None),
            ("", None),
        ];
        for (name, want) in CASES {
            assert_eq!(edition_limit(name), *want, "{name:?}");
        }
    }

    fn org(license: &str) -> Vec<u8> {
        format!(r#"{{"org":[{{"id":"1","license_details":{license}}}]}}"#).into_bytes()
    }

    #[test]
    fn the_edition_comes_from_paid_type_or_the_trial() {
        let edition = |name: &str, limit| OrgFinding::Edition {
            name: name.into(),
            limit,
        };
        let cases: Vec<(&str, Vec<u8>, OrgFinding)> = vec![
            (
                "paid Standard",
                org(r#"{"paid":true,"paid_type":"standard"}"#),
                edition("standard", 10),
            ),
            (
                "paid bundle",
                org(r#"{"paid":true,"paid_type":"zohooneenterprise"}"#),
                edition("zohooneenterprise", 20),
            ),
            (
                "trial of Enterprise",
                org(r#"{"paid":false,"paid_type":null,"trial_type":"Enterprise"}"#),
                edition("Enterprise", 20),
            ),
            (
                "free org on a Professional trial",
                org(r#"{"paid":false,"paid_type":"free","trial_type":"professional"}"#),
                edition("professional", 15),
            ),
            (
                "free",
                org(r#"{"paid":false,"paid_type":"free"}"#),
                edition("free", 5),
            ),
            (
                "unknown name",
                org(r#"{"paid":true,"paid_type":"galactic"}"#),
                OrgFinding::Unknown(Some("galactic".into())),
            ),
            (
                "no license details",
                br#"{"org":[{"id":"1"}]}"#.to_vec(),
                OrgFinding::Unknown(None),
            ),
            ("not JSON", b"<html>".to_vec(), OrgFinding::Unknown(None)),
        ];
        for (case, body, want) in cases {
            assert_eq!(org_edition(&body), want, "{case}");
        }
    }

    #[test]
    fn answers_are_classified() {
        const CASES: &[(u16, &str, &str)] = &[
            (200, "{}", "read"),
            (204, "", "read"),
            (401, r#"{"code":"OAUTH_SCOPE_MISMATCH"}"#, "scope"),
            (403, "", "scope"),
            (401, r#"{"code":"INVALID_TOKEN"}"#, "failed"),
            (429, r#"{"code":"TOO_MANY_REQUESTS"}"#, "failed"),
            (500, "oops", "failed"),
        ];
        for (status, body, want) in CASES {
            let got = match classify(*status, body.as_bytes()) {
                AnswerKind::Read => "read",
                AnswerKind::ScopeMissing => "scope",
                AnswerKind::Failed(_) => "failed",
            };
            assert_eq!(got, *want, "{status} {body}");
        }
    }
}
