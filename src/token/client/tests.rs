//! Tests of the accounts client: Zoho's token replies, table by table, the token size cap, and the
//! invalid_client message.

use super::*;

type Expect = Result<u64, &'static str>;
const CASES: &[(&str, u16, &str, bool, Expect)] = &[
    (
        "success",
        200,
        r#"{"access_token":"1000.a.b","expires_in":3600,"api_domain":"https://www.zohoapis.com"}"#,
        false,
        Ok(3600),
    ),
    (
        "legacy ms form",
        200,
        r#"{"access_token":"1000.a.b","expires_in_sec":3600,"expires_in":3600000}"#,
        false,
        Ok(3600),
    ),
    (
        "string expiry",
        200,
        r#"{"access_token":"1000.a.b","expires_in":"120"}"#,
        false,
        Ok(120),
    ),
    (
        "missing expiry",
        200,
        r#"{"access_token":"1000.a.b"}"#,
        false,
        Ok(3600),
    ),
    (
        "zero expiry",
        200,
        r#"{"access_token":"1000.a.b","expires_in":0}"#,
        false,
        Ok(1),
    ),
    (
        "negative expiry",
        200,
        r#"{"access_token":"1000.a.b","expires_in":-5}"#,
        false,
        Ok(1),
    ),
    (
        "huge expiry",
        200,
        r#"{"access_token":"1000.a.b","expires_in":999999999}"#,
        false,
        Ok(3600),
    ),
    (
        "error on 200",
        200,
        r#"{"error":"invalid_client"}"#,
        false,
        Err("invalid_client"),
    ),
    (
        "secret",
        200,
        r#"{"error":"invalid_client_secret"}"#,
        false,
        Err("invalid_client_secret"),
    ),
    (
        "revoked rt",
        200,
        r#"{"error":"invalid_code"}"#,
        false,
        Err("invalid_code"),
    ),
    (
        "used code",
        200,
        r#"{"error":"invalid_code"}"#,
        true,
        Err("invalid_code"),
    ),
    (
        "throttle 200",
        200,
        r#"{"error_description":"You have made too many requests continuously. Please try again after some time.","error":"Access Denied","status":"failure"}"#,
        false,
        Err("access_denied"),
    ),
    (
        "throttle 400",
        400,
        r#"{"error":"Access Denied"}"#,
        false,
        Err("access_denied"),
    ),
    (
        "html",
        200,
        "<html><body>captive portal</body></html>",
        false,
        Err("bad_reply"),
    ),
    (
        "500 html",
        500,
        "<html>oops</html>",
        false,
        Err("bad_reply"),
    ),
    (
        "empty token",
        200,
        r#"{"access_token":""}"#,
        false,
        Err("bad_reply"),
    ),
    ("no fields", 200, r#"{"foo":1}"#, false, Err("bad_reply")),
    (
        "crlf token",
        200,
        "{\"access_token\":\"abc\\r\\nX-Evil: 1\"}",
        false,
        Err("unusable_token"),
    ),
    (
        "other error",
        200,
        r#"{"error":"weird\u0007thing"}"#,
        false,
        Err("error"),
    ),
];

#[test]
fn replies_are_interpreted_as_tabled() {
    for (name, status, body, is_code, expected) in CASES {
        let got = parse_reply(*status, body.as_bytes(), "accounts.example", *is_code)
            .map(|m| m.lifetime.as_secs())
            .map_err(|e| e.label());
        assert_eq!(got, *expected, "case {name}");
    }
}

#[test]
fn a_ten_kilobyte_token_is_refused() {
    let body = format!(r#"{{"access_token":"{}"}}"#, "a".repeat(10 * 1024));
    let got = parse_reply(200, body.as_bytes(), "h", false).map(|_| ());
    assert_eq!(got.map_err(|e| e.label()), Err("unusable_token"));
}

#[test]
fn invalid_client_names_the_host_and_data_center() {
    let e = parse_reply(
        200,
        br#"{"error":"invalid_client"}"#,
        "accounts.zoho.com",
        false,
    )
    .map(|_| ())
    .expect_err("invalid_client is an error");
    let text = e.to_string();
    assert!(
        text.contains("accounts.zoho.com") && text.contains("data center"),
        "{text}"
    );
    assert_eq!(e.class(), FailureClass::Permanent);
}
