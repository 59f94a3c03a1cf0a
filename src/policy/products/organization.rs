//! The organization a Books or Inventory request acts on, read from its query exactly once.
//!
//! Zoho reads `organization_id` from the query (a servlet-style parameter map: names are
//! percent-decoded, and the first of repeated names may win). So the proxy refuses anything a
//! second reader could see differently: the name twice, the name in another spelling that
//! decodes or folds to it (`organization%5Fid`, `Organization_Id`), or a value that is not a
//! plain id. Pure; no allocation when the query is well formed.

use http::StatusCode;

use super::super::Rejection;

/// The longest organization id accepted (Zoho's are about 10 digits).
const MAX_ID: usize = 64;

/// Whether `id` is a plain organization id: `[A-Za-z0-9_-]`, 1 to 64 bytes.
pub(crate) fn valid_organization_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn bad_query(message: String) -> Rejection {
    Rejection {
        status: StatusCode::BAD_REQUEST,
        code: "PROXY_BAD_QUERY",
        message,
    }
}

/// The parameter name after percent-decoding (`+` as space) and trimming, lower-cased.
fn decoded_name(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).trim().to_ascii_lowercase()
}

/// The `param` value of `query` (`None`: absent). Refuses a repeated parameter, a spelling
/// other than `param` exactly, and a value that is not a plain id.
pub(crate) fn query_organization<'q>(
    query: Option<&'q str>,
    param: &str,
) -> Result<Option<&'q str>, Rejection> {
    let Some(query) = query else {
        return Ok(None);
    };
    let mut found: Option<&'q str> = None;
    for pair in query.split(['&', ';']) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != param {
            // Cheap pre-check: only names that could decode to `param` are decoded.
            if name.len() >= param.len()
                && name.len() <= param.len() * 3 + 8
                && decoded_name(name) == param
            {
                return Err(bad_query(format!(
                    "the query names `{param}` as `{}`; write it exactly `{param}`, once",
                    crate::util::escape(name, 64)
                )));
            }
            continue;
        }
        if found.is_some() {
            return Err(bad_query(format!(
                "`{param}` appears more than once in the query; send it once"
            )));
        }
        if !value.is_empty() && !valid_organization_id(value) {
            return Err(bad_query(format!(
                "`{param}={}` is not an organization id; write the id Zoho shows (letters, digits, `_`, `-`, at most {MAX_ID})",
                crate::util::escape(value, 64)
            )));
        }
        found = Some(value);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "organization_id";

    #[test]
    fn reads_the_one_plain_parameter() {
        assert_eq!(query_organization(None, P), Ok(None));
        assert_eq!(query_organization(Some("page=2"), P), Ok(None));
        assert_eq!(
            query_organization(Some("organization_id=123"), P),
            Ok(Some("123"))
        );
        assert_eq!(
            query_organization(Some("a=1&organization_id=60001&b=2"), P),
            Ok(Some("60001"))
        );
        assert_eq!(
            query_organization(Some("organization_id="), P),
            Ok(Some(""))
        );
        assert_eq!(query_organization(Some("organization_id"), P), Ok(Some("")));
    }

    #[test]
    fn refuses_what_a_second_reader_could_see_differently() {
        for query in [
            "organization_id=1&organization_id=2",
            "organization_id=1&organization_id=1",
            "organization_id=1;organization_id=2",
            "organization_id=1&organization%5Fid=2",
            "organization_id=1&organization%5fid=2",
            "Organization_Id=2",
            "ORGANIZATION_ID=2",
            "organization_id+=2",
            "%6Frganization_id=2",
            "organization_id=1%32",
            "organization_id=1,2",
            "organization_id=..%2F",
            "organization_id= 1",
        ] {
            let err = query_organization(Some(query), P).expect_err(query);
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(err.code, "PROXY_BAD_QUERY", "{query}");
        }
        let long = format!("organization_id={}", "1".repeat(65));
        assert!(query_organization(Some(&long), P).is_err());
    }

    #[test]
    fn decodes_names_like_a_servlet() {
        assert_eq!(decoded_name("organization%5Fid"), "organization_id");
        assert_eq!(decoded_name("Organization_ID+"), "organization_id");
        assert_eq!(decoded_name("%zz"), "%zz");
        assert_eq!(decoded_name("a%"), "a%");
        assert_eq!(decoded_name("a%4"), "a%4");
    }
}
